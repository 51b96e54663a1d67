"""AgentRuntime against the simulated carriers of voicegraph.testing (real HTTP + WebSocket)."""

from __future__ import annotations

import pytest

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.server import echo_graph, serve_runtime
from voicegraph.testing.twilio_caller import TwilioCaller

SID = "AC" + "0" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"


def runtime(**kw: object) -> AgentRuntime:
    iface = CallInterface(
        "twilio", NUMBER, account_sid=SID, auth_token=TOKEN, graph=echo_graph, **kw
    )  # type: ignore[arg-type]
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=5)


def caller(base: str, token: str = TOKEN) -> TwilioCaller:
    return TwilioCaller(
        base, token, account_sid=SID, to=NUMBER, public_url=PUBLIC, playback_rate=20
    )


@pytest.mark.anyio
async def test_caller_hears_its_own_audio_back() -> None:
    spoken = bytes(range(256)) * 10  # 0.32 s of µ-law
    async with serve_runtime(runtime()) as base, caller(base).dial() as call:
        await call.send_audio(spoken, speed=0)
        await call.wait_for_audio(len(spoken) / 8000)
        assert call.heard[: len(spoken)] == spoken


@pytest.mark.anyio
async def test_mark_sent_by_the_agent_is_echoed_by_the_caller() -> None:
    async with serve_runtime(runtime()) as base, caller(base).dial() as call:
        await call.send_dtmf("4")
        await call.wait_for_mark("dtmf-4")


@pytest.mark.anyio
async def test_caller_with_wrong_token_is_rejected_with_403() -> None:
    from voicegraph.testing._simcall import CallRejected

    async with serve_runtime(runtime()) as base:
        with pytest.raises(CallRejected) as info:
            async with caller(base, token="wrong").dial():
                pass
    assert info.value.status == 403


@pytest.mark.anyio
async def test_max_duration_ends_the_simulated_call_via_rest() -> None:
    async with FakeCarrierREST("twilio", SID, TOKEN) as rest:
        rt = runtime(max_call_duration_seconds=0.5, api_base_url=rest.base_url)
        async with serve_runtime(rt) as base, caller(base).dial() as call:
            await call.wait_closed(timeout=10)
    assert rest.hangups == [call.call_sid]
