"""The simulated Twilio Media Streams caller against a real AgentRuntime on loopback."""

from __future__ import annotations

import wave

import anyio
import numpy as np
import pytest

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime
from voicegraph.testing.server import echo_graph, serve_runtime
from voicegraph.testing.twilio_caller import CallRejected, TwilioCaller

ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"


def runtime() -> AgentRuntime:
    iface = CallInterface("twilio", NUMBER, account_sid=ACCOUNT, auth_token=TOKEN, graph=echo_graph)
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=2)


async def wait_until(cond, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():  # noqa: ASYNC110 - the runtime offers no event for this
            await anyio.sleep(0.01)


def caller(base: str, token: str = TOKEN, rate: float = 4.0) -> TwilioCaller:
    return TwilioCaller(base, token, to=NUMBER, public_url=PUBLIC, playback_rate=rate)


@pytest.mark.anyio
async def test_twilio_caller_hears_its_own_audio_from_an_echo_agent() -> None:
    tone = (np.sin(np.arange(4000) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    async with serve_runtime(runtime()) as base:
        async with caller(base).dial() as call:
            await call.send_audio(tone, sample_rate=8000, speed=0)
            await call.wait_for_audio(0.5, timeout=5)
        assert call.errors == []
    heard = np.frombuffer(call.heard_pcm16(), "<i2")
    assert len(heard) == 4000
    # µ-law round trip keeps the tone within a few percent
    assert np.max(np.abs(heard.astype(int) - tone)) < 300


@pytest.mark.anyio
async def test_twilio_caller_echoes_a_mark_only_after_the_audio_before_it_played() -> None:
    async with serve_runtime(runtime()) as base:
        async with caller(base, rate=2.0).dial() as call:
            await call.send_audio(b"\x00" * 8000, speed=0)  # 1 s of audio, sent at once
            await call.send_dtmf("5")  # the echo agent answers with mark "dtmf-5"
            await call.wait_for_mark("dtmf-5", timeout=5)
            heard_at_mark = call.heard_seconds
    assert heard_at_mark == pytest.approx(1.0)


@pytest.mark.anyio
async def test_twilio_caller_drops_unplayed_audio_on_clear_and_echoes_pending_marks() -> None:
    async with serve_runtime(runtime()) as base:
        async with caller(base, rate=1.0).dial() as call:
            await call.send_audio(b"\x00" * 16000, speed=0)  # 2 s queued for playback
            await call.send_dtmf("1")  # mark "dtmf-1" after the 2 s
            await call.wait_for_audio(0.2, timeout=5)
            await call.send_dtmf("#")  # the echo agent sends clear
            await call.wait_for_mark("dtmf-1", timeout=5)
            heard = call.heard_seconds
    assert call.clears == 1
    assert heard < 1.5


@pytest.mark.anyio
async def test_twilio_caller_records_what_it_heard_to_wav(tmp_path) -> None:
    async with serve_runtime(runtime()) as base:
        async with caller(base).dial() as call:
            await call.send_silence(0.2, speed=0)
            await call.wait_for_audio(0.2, timeout=5)
    path = tmp_path / "heard.wav"
    call.save_wav(path)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnframes()) == (8000, 2, 1600)


@pytest.mark.anyio
async def test_twilio_caller_hangup_ends_the_call_on_the_server() -> None:
    rt = runtime()
    async with serve_runtime(rt) as base:
        async with caller(base).dial() as call:
            await call.send_silence(0.04, speed=0)
            await wait_until(lambda: len(rt.calls) == 1)
            await call.hangup()
            await wait_until(lambda: not rt.calls)
        assert not call.closed_by_server


@pytest.mark.anyio
async def test_twilio_caller_silence_after_the_agent_hung_up_ends_quietly() -> None:
    rt = runtime()
    async with serve_runtime(rt) as base:
        async with caller(base).dial() as call:
            await wait_until(lambda: len(rt.calls) == 1)
            next(iter(rt.calls.values())).stop("the agent hung up")
            await call.send_silence(1.0, speed=2.0)  # the line goes dead meanwhile
            await call.send_silence(0.2)  # and stays quiet afterwards
        assert call.closed and call.closed_by_server


@pytest.mark.anyio
async def test_twilio_caller_with_a_wrong_token_is_rejected() -> None:
    async with serve_runtime(runtime()) as base:
        with pytest.raises(CallRejected) as info:
            async with caller(base, token="wrong").dial():
                pass
    assert info.value.status == 403
