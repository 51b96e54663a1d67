"""Recording a call: time-aligned audio tracks, the stereo WAV, and the JSON call record."""

from __future__ import annotations

import os
import wave
from typing import Any

import msgspec
import numpy as np

__all__ = ["CallRecord", "TrackRecorder", "write_stereo_wav"]


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

    @property
    def pcm(self) -> bytes:
        return bytes(self._buf)

    @property
    def seconds(self) -> float:
        return len(self._buf) / 2 / self.sample_rate


def write_stereo_wav(path: str | os.PathLike[str], left: bytes, right: bytes, rate: int) -> None:
    """Write two mono PCM16 tracks as one 16-bit stereo WAV (the shorter one padded)."""
    a = np.frombuffer(left, "<i2")
    b = np.frombuffer(right, "<i2")
    n = max(len(a), len(b))
    frames = np.zeros((n, 2), "<i2")
    frames[: len(a), 0] = a
    frames[: len(b), 1] = b
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


class CallRecord(msgspec.Struct, kw_only=True):
    """Everything the demo knows about its call, written as ``call.json``.

    Times (``t``) are seconds from the moment the caller dialled. ``transcript``: caller turns
    as recognised and agent utterances with what the caller heard of them. ``history``: the
    agent's conversation history (only heard text). ``latency``: per-turn milliseconds from the
    end of the caller's speech to each later stage. ``barge_ins``: when the decision was taken
    and how long until the carrier was told to clear."""

    call_id: str
    carrier: str
    pipeline: str
    reason: str
    duration_s: float
    transcript: list[dict[str, Any]]
    history: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    barge_ins: list[dict[str, Any]]
    latency: list[dict[str, Any]]
    audio: dict[str, Any]
    caller_script: list[str]

    def write(self, path: str | os.PathLike[str]) -> None:
        with open(path, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(self), indent=2))
            f.write(b"\n")
