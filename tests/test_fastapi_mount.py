"""An AgentRuntime mounted into a real FastAPI app served by uvicorn, at the root and under a
prefix. Twilio's own SDK signs the webhook and the stream handshake, as Twilio would for the
public URLs; the runtime checks them against its public URL plus the mount's ASGI root_path."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
from twilio.request_validator import RequestValidator

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime, MediaListener
from voicegraph.server.asgi import listen_socket
from voicegraph.testing.server import echo_graph
from voicegraph.testing.twilio_caller import TwilioCall, twilio_webhook_form
from voicegraph.wsio import connect_websocket

SID = "AC" + "0" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"
CALL_SID = "CA" + "1" * 32


def fastapi_app(runtime: AgentRuntime, prefix: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    app.mount(prefix or "/", runtime.app)
    return app


@asynccontextmanager
async def uvicorn_serving(app: Any, lifespan: str = "off") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1:0; yields the base URL."""
    import uvicorn

    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(server.serve, sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{port}"  # the socket listens: requests wait in its backlog
        finally:
            server.should_exit = True
    sock.close()


def runtime(media: MediaListener | None = None) -> AgentRuntime:
    iface = CallInterface("twilio", NUMBER, account_sid=SID, auth_token=TOKEN, graph=echo_graph)
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=5, media=media)


async def post_signed(base: str, prefix: str, signed_prefix: str) -> httpx.Response:
    form = twilio_webhook_form(CALL_SID, SID, "+14155550100", NUMBER)
    signature = RequestValidator(TOKEN).compute_signature(
        PUBLIC + signed_prefix + "/call/incoming", form
    )
    async with httpx.AsyncClient() as client:
        return await client.post(
            base + prefix + "/call/incoming", data=form, headers={"X-Twilio-Signature": signature}
        )


@pytest.mark.anyio
@pytest.mark.parametrize("media", [False, True], ids=["", "media-not-serving"])
@pytest.mark.parametrize("prefix", ["", "/voice"])
async def test_a_call_through_fastapi_under_uvicorn_is_answered_and_streams(
    prefix: str, media: bool
) -> None:
    """With ``media=`` the mounted runtime's media listener does not run (only ``serve()``
    starts it), so the answer names the app's own stream path, which serves the call."""
    listener = MediaListener("127.0.0.1", 0, public_url="wss://media.example.com")
    async with uvicorn_serving(fastapi_app(runtime(listener if media else None), prefix)) as base:
        async with httpx.AsyncClient() as client:
            assert (await client.get(base + "/health")).json() == {"ok": True}
        resp = await post_signed(base, prefix, prefix)
        assert resp.status_code == 200, resp.text
        stream = ET.fromstring(resp.text).find("./Connect/Stream")
        assert stream is not None
        stream_url = stream.get("url", "")
        assert stream_url.startswith("wss://agent.example.com" + prefix + "/")
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        handshake = {
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(stream_url, {})
        }
        local = (
            "ws://127.0.0.1:"
            + base.rsplit(":", 1)[1]
            + stream_url[len("wss://agent.example.com") :]
        )
        async with connect_websocket(local, handshake) as sock:
            call = TwilioCall(sock, call_sid=CALL_SID, account_sid=SID, custom_parameters=params)
            async with call.running():
                await call.send_audio(b"\x10" * 1600)  # 0.2 s, echoed back by the graph
                await call.wait_for_audio(0.2, timeout=10)
    assert call.heard_seconds >= 0.2


@pytest.mark.anyio
async def test_a_webhook_signed_without_the_mount_prefix_is_refused() -> None:
    async with uvicorn_serving(fastapi_app(runtime(), "/voice")) as base:
        resp = await post_signed(base, "/voice", "")
    assert resp.status_code == 403


def fastapi_app_with_lifespan(runtime: AgentRuntime) -> Any:
    """docs/asyncio.md's set-up: the runtime's background work in the app's lifespan."""
    from fastapi import FastAPI

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan():
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/voice", runtime.app)
    return app


async def open_call(base: str) -> Any:
    resp = await post_signed(base, "/voice", "/voice")
    assert resp.status_code == 200, resp.text
    stream = ET.fromstring(resp.text).find("./Connect/Stream")
    assert stream is not None
    stream_url = stream.get("url", "")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    handshake = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(stream_url, {})}
    local = (
        "ws://127.0.0.1:" + base.rsplit(":", 1)[1] + stream_url[len("wss://agent.example.com") :]
    )
    return local, handshake, params


@pytest.mark.anyio
async def test_a_mounted_runtime_runs_its_background_work_in_the_apps_lifespan() -> None:
    from voicegraph.observability import Observability
    from voicegraph.observability.looplag import LoopLag

    lag = LoopLag(interval=0.01)
    iface = CallInterface("twilio", NUMBER, account_sid=SID, auth_token=TOKEN, graph=echo_graph)
    control = "control-token-0123456789"
    mounted = AgentRuntime(
        [iface],
        public_url=PUBLIC,
        control_token=control,
        observability=Observability(loop_lag=lag),
    )
    async with uvicorn_serving(fastapi_app_with_lifespan(mounted), lifespan="on") as base:
        local, handshake, params = await open_call(base)
        async with connect_websocket(local, handshake) as sock:
            call = TwilioCall(sock, call_sid=CALL_SID, account_sid=SID, custom_parameters=params)
            async with call.running():
                await call.send_audio(b"\x10" * 1600)
                await call.wait_for_audio(0.2, timeout=10)
                # a call-control message is handled by the state's channel, which the lifespan runs
                async with httpx.AsyncClient() as client:
                    resp = await client.post(
                        f"{base}/voice/calls/{CALL_SID}/hangup",
                        headers={"Authorization": f"Bearer {control}"},
                    )
                assert resp.status_code == 202
                await call.wait_closed(timeout=10)
    assert call.closed_by_server
    assert lag.samples > 0  # the loop-lag monitor ran


@pytest.mark.anyio
async def test_the_runtimes_lifespan_starts_its_background_work_once() -> None:
    from voicegraph.server.state import MemoryState

    class CountingState(MemoryState):
        runs = 0

        async def run(self, deliver: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            CountingState.runs += 1
            await super().run(deliver, task_status=task_status)

    iface = CallInterface("twilio", NUMBER, account_sid=SID, auth_token=TOKEN, graph=echo_graph)
    mounted = AgentRuntime([iface], public_url=PUBLIC, state=CountingState())
    async with mounted.lifespan(), mounted.lifespan():  # e.g. the ASGI lifespan and FastAPI's
        pass
    async with mounted.lifespan():  # once over, it can run again
        pass
    assert CountingState.runs == 2
