"""Recording a call as time-aligned stereo: the caller on the left, the agent on the right.

:class:`CallRecorder` taps the caller's audio as it arrives from the carrier and the agent's
audio as playout sends it to the carrier. Each piece goes on its track at the time it is heard:
caller audio when it arrived (less its own length: it was spoken before it arrived); agent audio
when it reached the carrier, or right after the agent audio before it, since the carrier plays
what it gets in order; a ``Clear`` (barge-in) cuts the agent track at that moment, as the
carrier drops what it had not played. Both tracks share one clock, so a reply sits after the
question it answers by exactly the delay the caller lived through.

When the call ends the recorder hands a :class:`Recording` to its sink: a directory (it writes
``<call id>.wav``) or a callable (sync or async) that gets the :class:`Recording`.
"""

from __future__ import annotations

import inspect
import io
import os
import wave
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np

from voicegraph.channel import EndOfInput
from voicegraph.frames import AudioFormat, AudioFrame, Clear, RecordingReady
from voicegraph.node import Actor, In

__all__ = ["CallRecorder", "Recording", "TrackRecorder", "write_stereo_wav"]


class TrackRecorder:
    """One mono PCM16 track built from pieces placed at the time they were played.

    ``add(t, pcm)`` puts ``pcm`` at ``t`` seconds from the start, or right after the previous
    piece if that ends later (pieces never overlap; a gap is silence). Bounded: audio beyond
    ``max_seconds`` is dropped and counted in :attr:`dropped_seconds`."""

    def __init__(self, sample_rate: int, max_seconds: float = 900.0) -> None:
        self.sample_rate = sample_rate
        self._max = int(max_seconds * sample_rate) * 2
        self._buf = bytearray()
        self._end = 0  # byte offset where the last piece ended
        self.dropped_seconds = 0.0

    def add(self, t: float, pcm: bytes) -> None:
        at = max(self._end, int(max(t, 0.0) * self.sample_rate) * 2)
        room = max(self._max - at, 0)
        if len(pcm) > room:
            self.dropped_seconds += (len(pcm) - room) / 2 / self.sample_rate
            pcm = pcm[:room]
        if not pcm:
            return
        if len(self._buf) < at:
            self._buf.extend(bytes(at - len(self._buf)))
        self._buf[at : at + len(pcm)] = pcm
        self._end = at + len(pcm)

    def cut(self, t: float) -> None:
        """Drop what was placed after ``t`` seconds (audio the listener never heard)."""
        at = int(max(t, 0.0) * self.sample_rate) * 2
        if at < len(self._buf):
            del self._buf[at:]
        self._end = min(self._end, at)

    @property
    def pcm(self) -> bytes:
        return bytes(self._buf)

    @property
    def seconds(self) -> float:
        return len(self._buf) / 2 / self.sample_rate


def stereo_wav_bytes(left: bytes, right: bytes, rate: int) -> bytes:
    """Two mono PCM16 tracks as one 16-bit stereo WAV file (the shorter one padded)."""
    a = np.frombuffer(left, "<i2")
    b = np.frombuffer(right, "<i2")
    n = max(len(a), len(b))
    frames = np.zeros((n, 2), "<i2")
    frames[: len(a), 0] = a
    frames[: len(b), 1] = b
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return out.getvalue()


def write_stereo_wav(path: str | os.PathLike[str], left: bytes, right: bytes, rate: int) -> None:
    """Write two mono PCM16 tracks as one 16-bit stereo WAV (the shorter one padded)."""
    with open(path, "wb") as f:
        f.write(stereo_wav_bytes(left, right, rate))


class Recording:
    """One call's recording: ``caller`` and ``agent`` PCM16 tracks at ``sample_rate``,
    time-aligned from the moment the recorder started."""

    def __init__(self, call_id: str, sample_rate: int, caller: bytes, agent: bytes) -> None:
        self.call_id = call_id
        self.sample_rate = sample_rate
        self.caller = caller
        self.agent = agent

    def __repr__(self) -> str:
        return f"Recording({self.call_id!r}, {self.seconds:.1f}s at {self.sample_rate} Hz)"

    @property
    def seconds(self) -> float:
        return max(len(self.caller), len(self.agent)) / 2 / self.sample_rate

    def wav(self) -> bytes:
        """The recording as a stereo WAV file (caller left, agent right)."""
        return stereo_wav_bytes(self.caller, self.agent, self.sample_rate)


Sink = str | os.PathLike[str] | Callable[[Recording], Any]


class CallRecorder(Actor):
    """Records the call (see module docs). Inputs: ``caller`` (AudioFrame from the carrier),
    ``agent`` (AudioFrame and Clear on their way to the carrier); both drop their oldest frames
    rather than ever slow the call down. ``max_seconds`` bounds each track.

    The recording is handed to ``sink`` when the node stops (end of call), and a
    :class:`~voicegraph.frames.RecordingReady` event is published (its ``url`` is the file's
    path, empty for a callable sink)."""

    def __init__(self, audio_format: AudioFormat, sink: Sink, max_seconds: float = 4 * 3600 + 60):
        super().__init__()
        if not (callable(sink) or isinstance(sink, (str, os.PathLike))):
            raise TypeError("sink must be a directory path or a callable taking a Recording")
        self.format = audio_format
        self.sink = sink
        self.inputs = (
            In("caller", AudioFrame, format=audio_format, policy="drop_oldest", capacity=500),
            In("agent", AudioFrame, Clear, format=audio_format, policy="drop_oldest", capacity=500),
        )
        rate = audio_format.sample_rate
        self.caller = TrackRecorder(rate, max_seconds)
        self.agent = TrackRecorder(rate, max_seconds)
        self.path: str | None = None
        """The file written, once the node stopped (directory sinks)."""
        self._t0: float | None = None

    def _pcm(self, frame: AudioFrame) -> bytes:
        if frame.encoding == "mulaw":
            from .g711 import ulaw_to_pcm16

            return ulaw_to_pcm16(frame.data)
        return frame.data

    async def run(self) -> None:
        self._t0 = anyio.current_time()
        while True:
            try:
                port, frame = await self.inbox.receive()
            except EndOfInput:
                return
            t = anyio.current_time() - self._t0
            if isinstance(frame, Clear):
                self.agent.cut(t)
            elif isinstance(frame, AudioFrame):
                if port == "caller":
                    self.caller.add(t - frame.duration, self._pcm(frame))
                else:
                    self.agent.add(t, self._pcm(frame))

    async def stop(self) -> None:
        if self._t0 is None:
            return  # never ran: nothing to record
        rec = Recording(
            self.call_id or "call", self.format.sample_rate, self.caller.pcm, self.agent.pcm
        )
        try:
            if callable(self.sink):
                result = self.sink(rec)
                if inspect.isawaitable(result):
                    await result
            else:
                path = os.path.join(os.fspath(self.sink), f"{rec.call_id}.wav")
                await anyio.to_thread.run_sync(_write, path, rec)
                self.path = path
        except Exception as exc:  # the call is over; a failing sink must not hide that
            self.log.error("recording not delivered: %s: %s", type(exc).__name__, exc)
            return
        self.publish(
            RecordingReady(
                call_id=rec.call_id, url=self.path or "", duration=rec.seconds, carrier=False
            )
        )


def _write(path: str, rec: Recording) -> None:
    with open(path, "wb") as f:
        f.write(rec.wav())
