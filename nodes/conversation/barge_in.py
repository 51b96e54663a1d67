"""Barge-in: :class:`BargeIn` decides when the caller interrupts the agent (per ``interruptible``
and ``interrupt_sensitivity``) and emits one :class:`~voicegraph.frames.Interrupt`, fanned out in
edge order to playout (clear the carrier), TTS (cancel the context) and the agent (cancel the
LLM). It also spots false interruptions (speech that yields no words) and says so with a
:class:`FalseInterrupt`."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import anyio

from voicegraph.channel import EndOfInput
from voicegraph.frames import (
    DTMF,
    Frame,
    Interrupt,
    Kind,
    SpeechStarted,
    SpeechStopped,
    TimelineMark,
    Transcript,
)
from voicegraph.node import Actor, In, Out

__all__ = ["BARGE_IN_MIN_WORDS", "BargeIn", "FalseInterrupt", "Interruptible", "Sensitivity"]


Interruptible = Literal["none", "dtmf", "speech", "any"]
Sensitivity = Literal["low", "medium", "high"]

BARGE_IN_MIN_WORDS: dict[str, int] = {"low": 2, "medium": 0, "high": 0}
"""Words the STT must hear (interim or final) before speech interrupts the agent. With 0 the
VAD's speech-start decision interrupts at once; the VAD's own thresholds and minimum speech
durations for each sensitivity are in ``voicegraph.nodes.audio`` (see docs/audio.md)."""


class FalseInterrupt(Frame, frozen=True, kw_only=True):
    """An interruption produced no words within the window: noise or a cough, not a turn."""

    kind: ClassVar[Kind] = Kind.CONTROL
    utterance_id: int = 0


class BargeIn(Actor):
    """Decides when the caller interrupts the agent.

    ``speaking`` is a zero-argument callable telling whether agent audio is playing (playout's
    ``speaking`` state). Speech interrupts when ``interruptible`` is ``"speech"`` or ``"any"``:
    at the VAD's speech start, or -- when the sensitivity asks for words
    (:data:`BARGE_IN_MIN_WORDS`) -- once the STT heard that many. DTMF interrupts when it is
    ``"dtmf"`` or ``"any"``. After an interruption, if no words arrive within ``false_window``
    seconds, a :class:`FalseInterrupt` follows so the agent can resume or re-prompt.
    ``backchannel`` (text -> bool, e.g. ``TurnPolicy.is_backchannel``): transcripts it accepts
    count as no words, so an acknowledgement never meets the word threshold."""

    inputs = (
        In("vad", SpeechStarted, SpeechStopped),
        In("stt", Transcript, required=False),
        In("dtmf", DTMF, required=False),
    )
    outputs = (Out("out", Interrupt, FalseInterrupt),)

    def __init__(
        self,
        speaking: Any,
        interruptible: Interruptible = "any",
        sensitivity: Sensitivity = "medium",
        false_window: float = 1.5,
        backchannel: Any = None,
    ) -> None:
        super().__init__()
        if interruptible not in ("none", "dtmf", "speech", "any"):
            raise ValueError(
                f"interruptible must be none, dtmf, speech or any, not {interruptible!r}"
            )
        if sensitivity not in BARGE_IN_MIN_WORDS:
            raise ValueError(f"sensitivity must be low, medium or high, not {sensitivity!r}")
        self.speaking = speaking
        self.interruptible = interruptible
        self.min_words = BARGE_IN_MIN_WORDS[sensitivity]
        self.false_window = false_window
        self.backchannel = backchannel  # text -> bool: acknowledgements are no interruption
        self.interrupts = 0
        self.false_interrupts = 0
        self._candidate = False
        self._candidate_time = 0.0
        self._false_deadline: float | None = None
        self._fired_at = -1e9

    async def run(self) -> None:
        speech = self.interruptible in ("speech", "any")
        dtmf = self.interruptible in ("dtmf", "any")
        while True:
            try:
                item = await self.inbox.receive_until(self._false_deadline)
            except EndOfInput:
                return
            if item is None:
                self._false_deadline = None
                self.false_interrupts += 1
                self.publish(TimelineMark(turn=-1, stage="false_interruption"))
                await self.send("out", FalseInterrupt())
                continue
            _, frame = item
            if isinstance(frame, SpeechStarted):
                if speech and self.speaking():
                    if self.min_words == 0:
                        await self._fire("speech", frame.capture_time, watch_false=True)
                    else:
                        self._candidate, self._candidate_time = True, frame.capture_time
            elif isinstance(frame, SpeechStopped):
                self._candidate = False
            elif isinstance(frame, Transcript):
                words = len(frame.text.split())
                if words and self.backchannel is not None and self.backchannel(frame.text):
                    words = 0  # "mm-hmm" while the agent speaks: not words that interrupt
                if words:
                    self._false_deadline = None
                if self._candidate and words >= self.min_words and self.speaking():
                    self._candidate = False
                    await self._fire("speech", self._candidate_time, watch_false=False)
            elif isinstance(frame, DTMF):
                if dtmf and self.speaking():
                    await self._fire("dtmf", time.monotonic(), watch_false=False)

    def fired_within(self, seconds: float) -> bool:
        """Whether an interruption fired in the last ``seconds`` (the agent was speaking)."""
        return time.monotonic() - self._fired_at < seconds

    async def _fire(self, reason: str, onset: float, watch_false: bool) -> None:
        self.interrupts += 1
        now = self._fired_at = time.monotonic()
        self.publish(TimelineMark(turn=-1, stage="barge_in_decision", time=now))
        await self.send("out", Interrupt(reason=reason, capture_time=onset or now))
        if watch_false:
            self._false_deadline = anyio.current_time() + self.false_window
