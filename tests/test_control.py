"""One runtime's health and readiness routes, external call control, message handlers and
admission at the webhook (in-process state; the multi-instance cases are in test_cluster)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime, AgentRuntimeError
from voicegraph.testing import FakeCarrierREST, TwilioCaller
from voicegraph.testing._simcall import CallRejected
from voicegraph.testing.server import echo_graph, serve_runtime

TOKEN = "control-test-auth-token-0123456789"
SID = "AC" + "0" * 32
NUMBER = "+14155550199"
PUBLIC = "https://agent.example.com"
CONTROL = "control-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {CONTROL}"}


def runtime(api: str | None = None, **kw: Any) -> AgentRuntime:
    iface = CallInterface(
        "twilio", NUMBER, account_sid=SID, auth_token=TOKEN, graph=echo_graph, api_base_url=api
    )
    return AgentRuntime([iface], public_url=PUBLIC, **kw)


def caller(base: str) -> TwilioCaller:
    return TwilioCaller(base, TOKEN, to=NUMBER, public_url=PUBLIC, playback_rate=20)


async def live(call: Any) -> None:
    await call.send_audio(b"\x55" * 800)
    await call.wait_for_audio(0.05)


@pytest.mark.anyio
async def test_health_and_readiness_answer_while_serving() -> None:
    async with serve_runtime(runtime()) as base, httpx.AsyncClient() as client:
        health = await client.get(base + "/healthz")
        ready = await client.get(base + "/readyz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "calls": 0}


@pytest.mark.anyio
async def test_a_draining_runtime_is_not_ready() -> None:
    rt = runtime(drain_timeout=0)
    async with serve_runtime(rt) as base, httpx.AsyncClient() as client:
        rt.draining = True  # what drain() sets first
        assert (await client.get(base + "/readyz")).status_code == 503
        assert (await client.get(base + "/healthz")).status_code == 200


@pytest.mark.anyio
async def test_call_control_is_off_without_a_control_token() -> None:
    async with serve_runtime(runtime()) as base, httpx.AsyncClient() as client:
        resp = await client.post(base + "/calls/CA1/hangup", headers=BEARER)
    assert resp.status_code == 404


@pytest.mark.anyio
async def test_call_control_needs_the_bearer_token() -> None:
    async with serve_runtime(runtime(control_token=CONTROL)) as base:
        async with httpx.AsyncClient() as client:
            none = await client.post(base + "/calls/CA1/hangup")
            wrong = await client.post(
                base + "/calls/CA1/hangup", headers={"Authorization": "Bearer " + "x" * 30}
            )
            unknown = await client.post(base + "/calls/CA1/hangup", headers=BEARER)
    assert none.status_code == wrong.status_code == 401
    assert unknown.status_code == 404


@pytest.mark.anyio
async def test_an_external_transfer_request_transfers_the_call() -> None:
    async with FakeCarrierREST("twilio", SID, TOKEN) as rest:
        rt = runtime(rest.base_url, control_token=CONTROL)
        async with serve_runtime(rt) as base, caller(base).dial() as call:
            await live(call)
            async with httpx.AsyncClient() as client:
                bad = await client.post(
                    f"{base}/calls/{call.call_sid}/transfer", headers=BEARER, json={"to": "12"}
                )
                resp = await client.post(
                    f"{base}/calls/{call.call_sid}/transfer",
                    headers=BEARER,
                    json={"to": "+15557654321"},
                )
            with anyio.fail_after(10):
                while not rest.transfers:  # noqa: ASYNC110  (the fake records, no event)
                    await anyio.sleep(0.02)
    assert bad.status_code == 400
    assert resp.status_code == 202
    assert rest.transfers == [(call.call_sid, "+15557654321")]


@pytest.mark.anyio
async def test_a_published_message_reaches_a_handler_added_by_type() -> None:
    rt = runtime()
    got: list[tuple[str, dict[str, Any]]] = []
    arrived = anyio.Event()

    async def note(runtime: AgentRuntime, call_id: str, message: dict[str, Any]) -> None:
        got.append((call_id, message))
        arrived.set()

    rt.call_handlers["note"] = note
    async with serve_runtime(rt) as base, caller(base).dial() as call:
        await live(call)
        assert await rt.state.publish(call.call_sid, {"type": "note", "text": "hi"})
        with anyio.fail_after(10):
            await arrived.wait()
    assert got == [(call.call_sid, {"type": "note", "text": "hi"})]


@pytest.mark.anyio
async def test_the_webhook_refuses_calls_beyond_max_calls() -> None:
    async with serve_runtime(runtime(max_calls=1)) as base, caller(base).dial() as call:
        await live(call)
        with pytest.raises(CallRejected) as err:
            await caller(base).answer("/call/incoming", "CA" + "2" * 32)
    assert err.value.status == 503


def test_runtime_options_are_checked_at_construction() -> None:
    with pytest.raises(AgentRuntimeError, match="redis://"):
        runtime(state="memcached://localhost:11211")
    with pytest.raises(AgentRuntimeError, match="16 characters"):
        runtime(control_token="short")
    iface = CallInterface(
        "twilio",
        NUMBER,
        account_sid=SID,
        auth_token=TOKEN,
        graph=echo_graph,
        webhook_path="/healthz",
    )
    with pytest.raises(AgentRuntimeError, match="/healthz"):
        AgentRuntime([iface], public_url=PUBLIC)
