"""The demo's call record (``call.json``); the audio tracks and the stereo WAV come from the
recorder node's module (:mod:`voicegraph.nodes.audio.recorder`)."""

from __future__ import annotations

import os
from typing import Any

import msgspec

from voicegraph.nodes.audio.recorder import TrackRecorder, write_stereo_wav

__all__ = ["CallRecord", "TrackRecorder", "write_stereo_wav"]


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
