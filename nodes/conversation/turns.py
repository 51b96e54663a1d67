"""End of the caller's turn, fixed rules: :class:`TurnDetector` ends a turn at the STT's endpoint
or after a VAD silence (the adaptive detector is :mod:`.turn_policy`).

Both detectors run the loop of :class:`SilenceTurnLoop`: frames in arrival order, and a silence
deadline that ends the turn when no frame came before it."""

from __future__ import annotations

import time

import anyio

from voicegraph.channel import EndOfInput
from voicegraph.frames import (
    EndOfTurn,
    Frame,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from voicegraph.node import Actor, In, Out

__all__ = ["SilenceTurnLoop", "TurnDetector"]


class SilenceTurnLoop(Actor):
    """The loop of a turn detector: each frame goes to :meth:`on_frame`; when ``_deadline``
    (a set ``anyio.current_time()`` instant, ``None``: none) passes with no frame, the deadline
    is cleared and :meth:`_emit` ends the turn with reason ``"vad_silence"``. Returns at end of
    input (a turn still open then is not emitted)."""

    _deadline: float | None = None

    async def run(self) -> None:
        while True:
            try:
                item = await self.inbox.receive_until(self._deadline)
            except EndOfInput:
                return
            if item is None:
                self._deadline = None
                await self._emit("vad_silence")
                continue
            await self.on_frame(item[1])

    async def on_frame(self, frame: Frame) -> None:
        """Take one frame from ``stt`` or ``vad``; may set ``_deadline`` or call :meth:`_emit`."""
        raise NotImplementedError

    async def _emit(self, reason: str) -> None:
        """End the turn with ``reason`` (nothing if no text was heard)."""
        raise NotImplementedError


class TurnDetector(SilenceTurnLoop):
    """Emits ``EndOfTurn(text)`` when the caller finished speaking.

    A turn ends at the first of: a final transcript flagged ``speech_final`` (STT endpointing);
    the STT's ``EndOfTurn`` (e.g. Deepgram UtteranceEnd); or the VAD reporting silence for
    ``vad_silence`` seconds with text transcribed. ``EndOfTurn.capture_time`` is the end of the
    caller's speech (the VAD's stop decision when there was one)."""

    inputs = (
        In("stt", Transcript, EndOfTurn),
        In("vad", SpeechStarted, SpeechStopped, required=False),
    )
    outputs = (Out("out", EndOfTurn),)

    def __init__(self, vad_silence: float = 0.6) -> None:
        super().__init__()
        self.vad_silence = vad_silence
        self._finals: list[str] = []
        self._interim = ""
        self._speech_end = 0.0
        self._final_time = 0.0
        self._deadline = None
        self._pending_end = ""

    async def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, Transcript):
            if frame.is_final:
                if frame.text.strip():
                    self._finals.append(frame.text.strip())
                self._interim = ""
                self._final_time = time.monotonic()
                if frame.speech_final or (self._pending_end and self._finals):
                    await self._emit(self._pending_end or "speech_final")
            else:
                self._interim = frame.text.strip()
        elif isinstance(frame, EndOfTurn):
            # A control frame overtakes transcripts still queued behind it: with no text yet,
            # end the turn at the next final transcript instead.
            if self._finals:
                await self._emit(frame.reason or "stt")
            else:
                self._pending_end = frame.reason or "stt"
        elif isinstance(frame, SpeechStarted):
            self._deadline = None
            self._pending_end = ""
            self._speech_end = 0.0
        elif isinstance(frame, SpeechStopped):
            self._speech_end = frame.capture_time or time.monotonic()
            self._deadline = anyio.current_time() + self.vad_silence

    async def _emit(self, reason: str) -> None:
        text = " ".join(self._finals) or self._interim
        if not text:
            return
        end = self._speech_end or self._final_time or time.monotonic()
        self._finals, self._interim, self._deadline = [], "", None
        self._speech_end, self._pending_end = 0.0, ""
        await self.send(
            "out",
            EndOfTurn(text=text, reason=reason, capture_time=end, stt_final_time=self._final_time),
        )
