"""The simulated ConversationRelay and Plivo callers against a real AgentRuntime on loopback."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime
from voicegraph.testing.plivo_caller import PlivoCaller
from voicegraph.testing.relay_caller import RelayCaller
from voicegraph.testing.server import echo_graph, serve_runtime

PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"
TWILIO_TOKEN = "twilio-test-token"
PLIVO_TOKEN = "plivo-test-token"


def relay_runtime() -> AgentRuntime:
    iface = CallInterface(
        "twilio",
        NUMBER,
        account_sid="AC" + "0" * 32,
        auth_token=TWILIO_TOKEN,
        pipeline="managed",
        graph=echo_graph,
        greeting="Hello",
    )
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=2)


def plivo_runtime(**kw: object) -> AgentRuntime:
    iface = CallInterface(
        "plivo",
        NUMBER,
        auth_id="MA" + "X" * 18,
        auth_token=PLIVO_TOKEN,
        graph=echo_graph,
        **kw,  # type: ignore[arg-type]
    )
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=2)


def relay_caller(base: str) -> RelayCaller:
    return RelayCaller(base, TWILIO_TOKEN, to=NUMBER, public_url=PUBLIC)


def plivo_caller(base: str, rate: float = 4.0) -> PlivoCaller:
    return PlivoCaller(
        base, PLIVO_TOKEN, to=NUMBER.lstrip("+"), public_url=PUBLIC, playback_rate=rate
    )


# ------------------------------------------------------------------ ConversationRelay


@pytest.mark.anyio
async def test_relay_caller_follows_the_twiml_and_keeps_its_attributes() -> None:
    async with serve_runtime(relay_runtime()) as base:
        async with relay_caller(base).dial() as call:
            assert call.attributes["welcomeGreeting"] == "Hello"
            assert call.attributes["url"].startswith("wss://agent.example.com/")


@pytest.mark.anyio
async def test_relay_caller_gets_one_reply_per_turn_from_fragmented_prompts() -> None:
    async with serve_runtime(relay_runtime()) as base:
        async with relay_caller(base).dial() as call:
            await call.say("What are your opening hours?", fragments=3)
            reply = await call.wait_for_reply(timeout=5)
        assert call.errors == []
    assert reply == "What are your opening hours?"
    assert call.tokens[-1].last


@pytest.mark.anyio
async def test_relay_caller_dtmf_reaches_the_agent() -> None:
    async with serve_runtime(relay_runtime()) as base:
        async with relay_caller(base).dial() as call:
            await call.send_dtmf("7")
            assert await call.wait_for_reply(timeout=5) == "you pressed 7"


# ---------------------------------------------------------------------------- Plivo


@pytest.mark.anyio
async def test_plivo_caller_hears_its_l16_audio_back_exactly() -> None:
    ramp = (np.arange(3200) * 7 % 20000 - 10000).astype(np.int16)
    async with serve_runtime(plivo_runtime()) as base:
        async with plivo_caller(base).dial() as call:
            assert call.format.sample_rate == 16000
            await call.send_audio(ramp, speed=0)
            await call.wait_for_audio(0.2, timeout=5)
        assert call.errors == []
    assert np.array_equal(np.frombuffer(call.heard_pcm16(), "<i2"), ramp)


@pytest.mark.anyio
async def test_plivo_caller_acks_a_checkpoint_after_playing_the_audio_before_it() -> None:
    async with serve_runtime(plivo_runtime()) as base:
        async with plivo_caller(base, rate=2.0).dial() as call:
            await call.send_silence(0.5, speed=0)
            await call.send_dtmf("3")  # echo agent: checkpoint "dtmf-3"
            await call.wait_for_mark("dtmf-3", timeout=5)
            assert call.heard_seconds == pytest.approx(0.5)


@pytest.mark.anyio
async def test_plivo_caller_forgets_pending_checkpoints_on_clear_audio() -> None:
    async with serve_runtime(plivo_runtime()) as base:
        async with plivo_caller(base, rate=1.0).dial() as call:
            await call.send_silence(2.0, speed=0)
            await call.send_dtmf("4")
            await call.wait_for_audio(0.1, timeout=5)
            await call.send_dtmf("#")  # echo agent: clearAudio
            with pytest.raises(TimeoutError):
                await call.wait_for_mark("dtmf-4", timeout=0.5)
    assert call.clears == 1
    assert call.heard_seconds < 1.5


@pytest.mark.anyio
async def test_plivo_caller_speaks_mulaw_when_the_stream_asks_for_it() -> None:
    async with serve_runtime(plivo_runtime(plivo_content_type="audio/x-mulaw;rate=8000")) as base:
        async with plivo_caller(base).dial() as call:
            assert call.format.encoding == "mulaw"
            await call.send_audio(b"\x55" * 800, speed=0)
            await call.wait_for_audio(0.1, timeout=5)
    assert call.heard == b"\x55" * 800


@pytest.mark.anyio
async def test_plivo_caller_silence_after_the_agent_hung_up_ends_quietly() -> None:
    rt = plivo_runtime()
    async with serve_runtime(rt) as base:
        async with plivo_caller(base).dial() as call:
            with anyio.fail_after(5):
                while not rt.calls:  # noqa: ASYNC110 - the runtime offers no event for this
                    await anyio.sleep(0.01)
            next(iter(rt.calls.values())).stop("the agent hung up")
            await call.send_silence(1.0, speed=2.0)
        assert call.closed and call.closed_by_server
