"""Per-turn latency timelines, assembled from the ``TimelineMark`` events nodes publish.

Stages of a turn, keyed by the agent utterance that answers it (``TimelineMark.turn``), all
``time.monotonic()`` seconds:

==================== ======================================================== ===============
stage                what happened                                            published by
==================== ======================================================== ===============
caller_speech_end    the VAD decided the caller stopped speaking              agent node
stt_final            the last final transcript of the turn arrived            agent node
agent_first_token    the agent produced its first text                        agent node
tts_first_audio      the TTS produced the reply's first audio                 TTS node
first_audio_sent     playout sent the reply's first audio to the carrier      playout
first_mark_ack       the carrier acknowledged the reply's first chunk played  playout
==================== ======================================================== ===============

Barge-ins are recorded too: ``barge_in_decision`` (barge-in controller) and ``clear_sent``
(playout), keyed ``-1``. :class:`TurnTimeline` groups them, computes the stage-to-stage
durations, logs one JSON line per completed turn (logger ``voicegraph.timeline``), hands each
completed turn to its :attr:`~TurnTimeline.listeners` (metrics, traces) and keeps the last turns
for inspection; the benchmarks read the same records.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from .frames import Frame, TimelineMark

__all__ = ["STAGES", "TurnRecord", "TurnTimeline"]

STAGES = (
    "caller_speech_end",
    "stt_final",
    "agent_first_token",
    "tts_first_audio",
    "first_audio_sent",
    "first_mark_ack",
)

logger = logging.getLogger("voicegraph.timeline")


class TurnRecord(msgspec.Struct):
    """One turn: stage times (monotonic seconds) and derived millisecond durations."""

    call_id: str
    turn: int
    stages: dict[str, float]

    def durations_ms(self) -> dict[str, float]:
        """Milliseconds from ``caller_speech_end`` to every later stage present, plus
        ``voice_to_voice`` (speech end to first audio sent) when both are known."""
        t0 = self.stages.get("caller_speech_end")
        if t0 is None:
            return {}
        out = {s: 1000 * (t - t0) for s, t in self.stages.items() if s != "caller_speech_end"}
        if "first_audio_sent" in self.stages:
            out["voice_to_voice"] = out["first_audio_sent"]
        return out

    def intervals(self) -> list[tuple[str, float, float]]:
        """Each stage's own interval ``(stage, start, end)`` in monotonic seconds, for the
        stages after the first one present: it starts when every earlier stage was done (the
        latest earlier time) and ends at the stage's time, never before its start (an STT
        final can arrive before the VAD decides the speech ended)."""
        out: list[tuple[str, float, float]] = []
        ready: float | None = None
        for stage in STAGES:
            t = self.stages.get(stage)
            if t is None:
                continue
            if ready is not None:
                out.append((stage, ready, max(t, ready)))
            ready = t if ready is None else max(ready, t)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "turn": self.turn, "ms": self.durations_ms()}


class TurnTimeline:
    """Collects a call's timeline marks. ``attach(call)`` subscribes to its event bus.

    A turn is complete (logged, kept in :attr:`turns`) when its ``first_mark_ack`` arrives, or
    when a later turn starts. Barge-in marks go to :attr:`barge_ins` as
    ``(decision_time, clear_sent_time or None)``. Bounded: at most ``keep`` of each."""

    def __init__(self, call_id: str, keep: int = 256) -> None:
        self.call_id = call_id
        self.turns: deque[TurnRecord] = deque(maxlen=keep)
        self.barge_ins: deque[list[float | None]] = deque(maxlen=keep)
        self._open: dict[int, dict[str, float]] = {}
        self.listeners: list[Callable[[TurnRecord], None]] = []
        """Called with each completed turn (metrics and traces subscribe here)."""

    @classmethod
    def attach(cls, call: Any, keep: int = 256) -> TurnTimeline:
        tl = cls(call.call_id, keep)
        call.subscribe(tl.on_event)
        return tl

    def on_event(self, ev: Frame) -> None:
        if not isinstance(ev, TimelineMark) or ev.turn == 0:
            return  # turn 0: a mark no turn can claim (e.g. an STT's own finals)
        if ev.turn < 0:
            if ev.stage == "barge_in_decision":
                self.barge_ins.append([ev.time, None])
            elif ev.stage == "clear_sent" and self.barge_ins and self.barge_ins[-1][1] is None:
                self.barge_ins[-1][1] = ev.time
            return
        stages = self._open.get(ev.turn)
        if stages is None:
            for older in [t for t in self._open if t < ev.turn]:
                self._close(older)
            stages = self._open[ev.turn] = {}
        stages.setdefault(ev.stage, ev.time)
        if ev.stage == "first_mark_ack":
            self._close(ev.turn)

    def _close(self, turn: int) -> None:
        stages = self._open.pop(turn, None)
        if not stages:
            return
        rec = TurnRecord(self.call_id, turn, stages)
        self.turns.append(rec)
        if logger.isEnabledFor(logging.INFO):
            fields = rec.as_dict()
            # json_fields: the JSON log format writes these as the record's own keys
            logger.info(
                "%s",
                msgspec.json.encode(fields).decode(),
                extra={"call_id": self.call_id, "json_fields": fields},
            )
        for listener in self.listeners:
            listener(rec)

    def flush(self) -> None:
        """Close every open turn (at the end of a call)."""
        for turn in sorted(self._open):
            self._close(turn)


def timeline_of(events: list[Frame]) -> dict[int, dict[str, float]]:
    """Group published ``TimelineMark`` s by turn: ``{turn: {stage: time}}`` (first time wins)."""
    out: dict[int, dict[str, float]] = {}
    for ev in events:
        if isinstance(ev, TimelineMark):
            out.setdefault(ev.turn, {}).setdefault(ev.stage, ev.time)
    return out
