"""DeepgramSTT asks its inbox for one wake-up per audio batch outside speech, and for every
frame during speech (each is tested for quiet): fewer task switches, the same audio on the wire. On a socket that can
send without waiting (picows, asyncio's default) the audio goes out from the sender's call
while the node waits (its inbox's direct handler), and the node is not woken for it at all."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from enginekit import BOTH_BACKENDS
from test_deepgram import Caller, run_stt, silence, tone, wait_for

from benchmarks.wakeups import counting
from voicegraph import SpeechStarted, SpeechStopped
from voicegraph.testing.fake_deepgram import FakeDeepgram

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


async def play_yielding(c: Caller, frames: list[bytes]) -> None:
    """One frame at a time, letting every ready task run in between (as a socket reader does)."""
    for f in frames:
        await c.play([f])
        await anyio.lowlevel.checkpoint()


async def test_silence_wakes_the_stt_once_per_100_ms_batch_not_per_frame(
    anyio_backend: str,
) -> None:
    steady: list[int] = []
    async with FakeDeepgram(["hello"]) as dg:
        with counting() as counts:

            async def script(c: Caller) -> None:
                # warm up: until the socket is up the keep-alive timer wakes the node anyway
                await play_yielding(c, silence(0.2))
                await wait_for(lambda: any(m.kind == "audio" for m in dg.received))
                before = counts["stt"].wakes
                await play_yielding(c, silence(1.0))  # 50 frames of 20 ms
                steady.append(counts["stt"].wakes - before)

            stt, _, result = await run_stt(dg, script)
        audio = [m.size for m in dg.received if m.kind == "audio"]
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    assert sum(audio) == 160 * 60 and set(audio[:-1]) == {800}  # 100 ms per message, all of it
    assert stt.inbox.ports["audio"].received == 60  # direct takes count as received
    if anyio_backend == "asyncio":
        # the direct handler batches from the sender's call: not one wake per batch either
        assert steady[0] <= 1
    else:
        assert steady[0] <= 11  # ten batches; without wake batching, fifty wakes


async def test_speech_frames_are_each_looked_at_and_go_out_in_batches(anyio_backend: str) -> None:
    during: list[int] = []
    async with FakeDeepgram(["hello"]) as dg:
        with counting() as counts:

            async def script(c: Caller) -> None:
                await play_yielding(c, silence(0.1))
                await c.vad(SpeechStarted())
                await wait_for(lambda: any(m.kind == "audio" for m in dg.received))
                before = counts["stt"].wakes
                for frame in tone(0.2):  # at the carrier's pace, so each frame can wake the node
                    await c.play([frame])
                    await anyio.sleep(0.02)
                during.append(counts["stt"].wakes - before)
                await c.vad(SpeechStopped())

            _, _, result = await run_stt(dg, script)
        audio = [m.size for m in dg.received if m.kind == "audio"]
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    # the silence goes out at the speech start (which overtakes what is still queued), then
    # the loud speech in 100 ms messages
    assert sum(audio) == 160 * 15 and audio[0] <= 800 and audio[1:] == [800, 800]
    if anyio_backend == "asyncio":
        # sent by the direct handler from the sender's call: the node slept through them
        assert during[0] <= 1
    else:
        # trio-websocket cannot send without waiting: woken for each of the ten speech
        # frames, give or take two a busy scheduler coalesces
        assert during[0] >= 8
