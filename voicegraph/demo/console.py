"""What the demo shows while its call runs: the live transcript (caller lines as recognised,
agent lines as heard, tool calls), each turn's latency and each barge-in's clear time."""

from __future__ import annotations

import time
from typing import Any, TextIO

from voicegraph.frames import Frame, TimelineMark

from .agent import FrontDesk, ToolCallRecord

__all__ = ["Console", "Conversation"]


class Console:
    """Writes the live transcript. Caller lines as recognised, agent lines as heard."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str) -> None:
        """Write ``text`` as a line of its own, at once."""
        self.out.write(text + "\n")
        self.out.flush()

    def say(self, who: str, text: str) -> None:
        """Write one line of the transcript: who spoke, then what."""
        self.line(f"  {who:<7} {text}")


class Conversation:
    """What the demo observes of its one call (filled in from the graph and the event bus)."""

    def __init__(self, console: Console, t0: float) -> None:
        self.console = console
        self.t0 = t0
        self.transcript: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []
        self.call: Any = None
        self.timeline: Any = None
        self.agent: FrontDesk | None = None
        self.agent_node: Any = None
        self._decision: float | None = None
        self.barge_ins: list[dict[str, Any]] = []

    def now(self) -> float:
        """Seconds since the caller dialled (the record's ``t``)."""
        return round(time.monotonic() - self.t0, 3)

    def caller(self, text: str) -> None:
        """The caller said ``text`` (as recognised)."""
        self.transcript.append({"t": self.now(), "speaker": "caller", "text": text})
        self.console.say("caller", text)

    def agent_said(self, uid: int, text: str, heard: str) -> None:
        """The agent's utterance ``uid`` is over: it meant ``text``; the caller heard ``heard``."""
        cut = heard != text
        entry = {"t": self.now(), "speaker": "agent", "utterance": uid, "text": text}
        entry.update(heard=heard, interrupted=cut)
        self.transcript.append(entry)
        if cut:
            rest = text[len(heard) :].strip()
            self.console.say("agent", f"{heard} [interrupted; never heard: {rest!r}]")
        else:
            self.console.say("agent", text)

    def tool(self, rec: ToolCallRecord) -> None:
        """The agent ran a tool."""
        self.tools.append(
            {"t": self.now(), "name": rec.name, "arguments": rec.arguments, "result": rec.result}
        )
        self.console.say("tool", f"{rec.name}({rec.arguments}) -> {rec.result}")

    def on_event(self, ev: Frame) -> None:
        """The call's event bus: timeline marks give barge-in clear times and turn latencies."""
        if not isinstance(ev, TimelineMark):
            return
        if ev.stage == "barge_in_decision":
            self._decision = ev.time
        elif ev.stage == "clear_sent" and self._decision is not None:
            ms = 1000 * (ev.time - self._decision)
            self.barge_ins.append({"t": round(self._decision - self.t0, 3), "clear_ms": ms})
            self._decision = None
            self.console.say("", f"[barge-in: playout cleared {ms:.0f} ms after the decision]")
        elif ev.stage == "first_mark_ack" and self.timeline is not None:
            rec = next((r for r in reversed(self.timeline.turns) if r.turn == ev.turn), None)
            ms = rec.durations_ms() if rec is not None else {}
            if ms:
                self.console.say("", _latency_line(ms))


_LABELS = (
    ("stt_final", "STT final"),
    ("agent_first_token", "agent first text"),
    ("tts_first_audio", "TTS first audio"),
    ("first_audio_sent", "first audio sent"),
    ("first_mark_ack", "first audio played"),
)


def _latency_line(ms: dict[str, float]) -> str:
    parts = [f"{label} {ms[k]:.0f}" for k, label in _LABELS if k in ms]
    return "[latency ms after caller stopped: " + ", ".join(parts) + "]"
