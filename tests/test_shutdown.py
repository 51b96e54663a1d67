"""Graceful shutdown: new calls refused, active calls finish, stragglers ended at the deadline."""

from __future__ import annotations

import os
import signal
from functools import partial

import anyio
import httpx
import pytest
from test_server_twilio import (
    NUMBER,
    PUBLIC,
    SID,
    TOKEN,
    answered,
    call_sid,
    form,
    media_msg,
    receive_json,
    signed_headers,
    start_msg,
    ws_url,
)

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime
from voicegraph.server.signatures import compute_twilio_signature
from voicegraph.testing.server import echo_graph
from voicegraph.wsio import SocketClosed, connect_websocket


def make_runtime(drain_timeout: float) -> AgentRuntime:
    iface = CallInterface("twilio", NUMBER, account_sid=SID, auth_token=TOKEN, graph=echo_graph)
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=drain_timeout)


async def webhook_status(base: str, call: str) -> int:
    data = form(call)
    sig = compute_twilio_signature(PUBLIC + "/call/incoming", data, TOKEN)
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            base + "/call/incoming", data=data, headers={"X-Twilio-Signature": sig}
        )
    return resp.status_code


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    # Polls plain runtime attributes that have no event of their own to wait on.
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def drain_scenario(runtime: AgentRuntime, trigger: object, handle_signals: bool) -> None:
    served = anyio.Event()

    async def serve(*, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        await runtime.serve("127.0.0.1", 0, handle_signals=handle_signals, task_status=task_status)
        served.set()

    async with anyio.create_task_group() as tg:
        [base] = await tg.start(partial(serve))
        params = await answered(base, call_sid(1))
        async with connect_websocket(ws_url(base), signed_headers()) as ws:
            await ws.send(start_msg(call_sid(1), params))
            await wait_until(lambda: runtime.calls)
            trigger()  # type: ignore[operator]
            await wait_until(lambda: runtime.draining)
            assert await webhook_status(base, call_sid(2)) == 503
            await ws.send(media_msg(b"\x55" * 160, 2))
            assert (await receive_json(ws))["event"] == "media"  # the active call still works
            assert not served.is_set()
            await ws.send(
                '{"event":"stop","sequenceNumber":"3","streamSid":"MZ","stop":{"accountSid":"AC","callSid":"CA"}}'
            )
        with anyio.fail_after(10):
            await served.wait()
    assert runtime.calls == {}


@pytest.mark.anyio
async def test_shutdown_refuses_new_calls_and_lets_active_call_finish() -> None:
    runtime = make_runtime(drain_timeout=30)
    await drain_scenario(runtime, runtime.shutdown, handle_signals=False)


@pytest.mark.anyio
async def test_sigterm_drains_like_shutdown() -> None:
    runtime = make_runtime(drain_timeout=30)
    await drain_scenario(
        runtime, partial(os.kill, os.getpid(), signal.SIGTERM), handle_signals=True
    )


@pytest.mark.anyio
async def test_calls_still_active_at_the_drain_deadline_are_ended() -> None:
    runtime = make_runtime(drain_timeout=0.3)
    async with anyio.create_task_group() as tg:
        [base] = await tg.start(partial(runtime.serve, "127.0.0.1", 0, handle_signals=False))
        params = await answered(base, call_sid(1))
        async with connect_websocket(ws_url(base), signed_headers()) as ws:
            await ws.send(start_msg(call_sid(1), params))
            await wait_until(lambda: runtime.calls)
            runtime.shutdown()
            with pytest.raises(SocketClosed):
                while True:
                    await receive_json(ws, timeout=10)
    assert runtime.calls == {}
