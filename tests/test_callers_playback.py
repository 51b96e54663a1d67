"""The simulated carriers' playback buffer: real-time drain, marks in order, clear, bounds."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from voicegraph.frames import AudioFormat
from voicegraph.testing._playback import Playback
from voicegraph.testing._simcall import local_target
from voicegraph.testing.wav import read_wav, to_wire, wire_to_pcm16, write_wav

ULAW = AudioFormat("mulaw", 8000)


class Marks:
    def __init__(self, playback_ref: list[Playback]) -> None:
        self.reached: list[tuple[str, float]] = []
        self.ref = playback_ref

    async def __call__(self, name: str) -> None:
        self.reached.append((name, self.ref[0].heard_seconds))


async def playing(rate: float = 50.0, **kw: float) -> tuple[Playback, Marks]:
    ref: list[Playback] = []
    marks = Marks(ref)
    pb = Playback(ULAW, marks, rate=rate, **kw)
    ref.append(pb)
    return pb, marks


@pytest.mark.anyio
async def test_marks_are_reached_in_order_after_the_audio_queued_before_them() -> None:
    pb, marks = await playing()
    pb.add_audio(b"\x01" * 800)
    pb.add_mark("a")
    pb.add_audio(b"\x02" * 400)
    pb.add_mark("b")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pb.run)
        with anyio.fail_after(5):
            while len(marks.reached) < 2:
                await pb.wait_changed()
        tg.cancel_scope.cancel()
    assert marks.reached == [("a", 0.1), ("b", 0.15)]
    assert pb.heard == b"\x01" * 800 + b"\x02" * 400


@pytest.mark.anyio
async def test_a_mark_with_nothing_queued_is_reached_at_once() -> None:
    pb, marks = await playing()
    pb.add_mark("now")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pb.run)
        with anyio.fail_after(5):
            while not marks.reached:
                await pb.wait_changed()
        tg.cancel_scope.cancel()
    assert marks.reached == [("now", 0.0)]


def test_clear_drops_unplayed_audio_and_returns_pending_marks_in_order() -> None:
    pb = Playback(ULAW, lambda name: anyio.lowlevel.checkpoint())
    pb.add_audio(b"\x00" * 1600)
    pb.add_mark("x")
    pb.add_audio(b"\x00" * 160)
    pb.add_mark("y")
    assert pb.clear() == ["x", "y"]
    assert pb.queued_seconds == 0.0
    assert pb.heard == b""


def test_audio_beyond_the_buffer_limit_is_dropped_and_counted() -> None:
    pb = Playback(ULAW, lambda name: anyio.lowlevel.checkpoint(), max_seconds=0.1)
    pb.add_audio(b"\x00" * 1000)
    assert (pb.queued_seconds, pb.dropped_bytes) == (0.1, 200)


def test_stream_urls_on_the_public_host_are_reached_through_the_local_server() -> None:
    assert (
        local_target(
            "wss://agent.example.com/call/stream",
            "http://127.0.0.1:8123",
            "https://agent.example.com",
        )
        == "ws://127.0.0.1:8123/call/stream"
    )
    assert local_target("wss://elsewhere.example/s", "http://127.0.0.1:1", None) == (
        "wss://elsewhere.example/s"
    )


# ----------------------------------------------------------------------- caller audio


def test_wav_files_round_trip(tmp_path) -> None:
    pcm = np.arange(-500, 500, dtype="<i2").tobytes()
    write_wav(tmp_path / "a.wav", pcm, 16000)
    assert read_wav(tmp_path / "a.wav") == (pcm, 16000)


def test_a_16k_wav_becomes_8k_mulaw_for_a_twilio_stream(tmp_path) -> None:
    tone = (np.sin(np.arange(16000) * 2 * np.pi * 300 / 16000) * 10000).astype("<i2")
    write_wav(tmp_path / "tone.wav", tone.tobytes(), 16000)
    wire = to_wire(tmp_path / "tone.wav", ULAW)
    assert len(wire) == 8000
    back = np.frombuffer(wire_to_pcm16(wire, ULAW), "<i2")
    expected = (np.sin(np.arange(8000) * 2 * np.pi * 300 / 8000) * 10000).astype(int)
    assert np.max(np.abs(back[100:-100] - expected[100:-100])) < 800


def test_float_arrays_are_scaled_to_pcm16() -> None:
    wire = to_wire(np.array([0.0, 0.5, -1.0]), AudioFormat("pcm16", 16000))
    assert np.frombuffer(wire, "<i2").tolist() == [0, 16384, -32767]


def test_odd_length_pcm_bytes_are_refused_with_a_fix() -> None:
    with pytest.raises(ValueError, match="pass even-length audio"):
        to_wire(b"\x00\x01\x02", AudioFormat("pcm16", 16000))
