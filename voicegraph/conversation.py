"""Conversation nodes: turn detection, barge-in, and the agent node that keeps only heard text.

* :class:`TurnDetector` -- end of the caller's turn from STT endpointing plus VAD silence.
* :class:`BargeIn` -- decides when the caller interrupts the agent (per ``interruptible`` and
  ``interrupt_sensitivity``) and emits one :class:`~voicegraph.frames.Interrupt`, fanned out in
  edge order to playout (clear the carrier), TTS (cancel the context) and the agent (cancel the
  LLM). It also spots false interruptions (speech that yields no words) and says so.
* :class:`AgentNode` -- runs the agent per turn, streams its reply as ``AgentText``, and writes
  the history from what the carrier acknowledged as played (word timestamps, or the played
  share of the audio), never from a local clock.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import anyio

from .agent import CallControl, Responder, Turn
from .channel import EndOfInput
from .frames import (
    DTMF,
    AgentText,
    EndOfTurn,
    Frame,
    Hangup,
    Interrupt,
    Kind,
    PlayedPosition,
    SpeechStarted,
    SpeechStopped,
    TimelineMark,
    Transcript,
    Word,
    WordTimestamps,
)
from .node import Actor, In, Out

__all__ = [
    "BARGE_IN_MIN_WORDS",
    "AgentNode",
    "BargeIn",
    "CallEnd",
    "FalseInterrupt",
    "TurnDetector",
    "heard_prefix",
]

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


class TurnDetector(Actor):
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
        self._deadline: float | None = None
        self._pending_end = ""

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
            _, frame = item
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


class BargeIn(Actor):
    """Decides when the caller interrupts the agent.

    ``speaking`` is a zero-argument callable telling whether agent audio is playing (playout's
    ``speaking`` state). Speech interrupts when ``interruptible`` is ``"speech"`` or ``"any"``:
    at the VAD's speech start, or -- when the sensitivity asks for words
    (:data:`BARGE_IN_MIN_WORDS`) -- once the STT heard that many. DTMF interrupts when it is
    ``"dtmf"`` or ``"any"``. After an interruption, if no words arrive within ``false_window``
    seconds, a :class:`FalseInterrupt` follows so the agent can resume or re-prompt."""

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
        self.interrupts = 0
        self.false_interrupts = 0
        self._candidate = False
        self._candidate_time = 0.0
        self._false_deadline: float | None = None

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
                if words:
                    self._false_deadline = None
                if self._candidate and words >= self.min_words and self.speaking():
                    self._candidate = False
                    await self._fire("speech", self._candidate_time, watch_false=False)
            elif isinstance(frame, DTMF):
                if dtmf and self.speaking():
                    await self._fire("dtmf", time.monotonic(), watch_false=False)

    async def _fire(self, reason: str, onset: float, watch_false: bool) -> None:
        self.interrupts += 1
        now = time.monotonic()
        self.publish(TimelineMark(turn=-1, stage="barge_in_decision", time=now))
        await self.send("out", Interrupt(reason=reason, capture_time=onset or now))
        if watch_false:
            self._false_deadline = anyio.current_time() + self.false_window


def heard_prefix(
    text: str, words: list[Word], played: float, sent: float, chars_per_second: float = 14.0
) -> str:
    """The prefix of ``text`` the caller heard, given ``played`` seconds acknowledged.

    With word timestamps, the words whose end lies within the played audio; otherwise the played
    share of the utterance's audio (estimated from ``sent`` and the text length), cut back to a
    word boundary."""
    if played <= 0 or not text:
        return ""
    if words:
        n = sum(1 for w in words if w.end <= played + 1e-6)
    else:
        total = max(sent, len(text) / chars_per_second)
        if played >= total:
            return text
        n = len(text[: int(len(text) * played / total)].split())
        if n and not text[: int(len(text) * played / total)].endswith((" ", ".", ",", "!", "?")):
            n -= 1  # the last word was cut in the middle
    return _first_words(text, n)


def _first_words(text: str, n: int) -> str:
    tokens = text.split()
    if n >= len(tokens):
        return text
    if n <= 0:
        return ""
    pos = 0
    for tok in tokens[:n]:
        pos = text.index(tok, pos) + len(tok)
    return text[:pos]


@dataclass
class _Utterance:
    uid: int
    parts: list[str] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    slot: dict[str, Any] | None = None
    control: CallControl | None = None
    done: bool = False
    interrupted: bool = False
    resolved: bool = False
    heard: str = ""
    settled: anyio.Event = field(default_factory=anyio.Event)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()


class AgentNode(Actor):
    """Runs the agent for each caller turn and keeps the history true to what was heard.

    Inputs: ``turns`` (EndOfTurn from the turn detector; final Transcript in managed mode; DTMF),
    ``control`` (Interrupt, FalseInterrupt), ``playback`` (PlayedPosition from playout,
    WordTimestamps from the TTS). Outputs: ``text`` (AgentText to TTS or ConversationRelay) and
    ``hangup`` (Hangup to the carrier once a goodbye was heard).

    ``acknowledged``: whether playback acknowledgements arrive (True with playout; False in
    managed mode, where a reply counts as heard unless the carrier reports an interruption with
    the heard text). ``on_false_interrupt``: ``"resume"`` re-speaks the unheard rest of the
    interrupted reply, ``"reprompt"`` says ``reprompt``, ``"ignore"`` stays quiet."""

    inputs = (
        In("turns", EndOfTurn, Transcript, DTMF),
        In("control", Interrupt, FalseInterrupt, required=False),
        In("playback", PlayedPosition, WordTimestamps, required=False),
    )
    outputs = (Out("text", AgentText), Out("hangup", Hangup, required=False))

    def __init__(
        self,
        agent: Responder,
        greeting: str | None = None,
        *,
        acknowledged: bool = True,
        on_false_interrupt: Literal["resume", "reprompt", "ignore"] = "resume",
        reprompt: str = "Sorry, go ahead.",
        transfer: Any = None,
        max_history: int = 200,
        settle_timeout: float = 0.5,
    ) -> None:
        super().__init__()
        if not hasattr(agent, "respond"):
            raise TypeError(f"agent {agent!r} has no respond(turn) method")
        self.agent = agent
        self.greeting = greeting
        self.acknowledged = acknowledged
        self.on_false_interrupt = on_false_interrupt
        self.reprompt = reprompt
        self.transfer = transfer
        self.max_history = max_history
        self.settle_timeout = settle_timeout
        self.history: list[dict[str, Any]] = []
        self.turns = 0
        self._next_uid = 0
        self._utts: dict[int, _Utterance] = {}
        self._current: _Utterance | None = None
        self._reply_scope: anyio.CancelScope | None = None
        self._last_interrupted: _Utterance | None = None
        self._ended = False

    # -- history

    def llm_history(self) -> list[dict[str, Any]]:
        """History for the model: resolved messages only, empty assistant slots dropped."""
        out = []
        for m in self.history:
            if m.get("role") == "assistant" and "_utterance" in m:
                if m.get("content"):
                    out.append({"role": "assistant", "content": m["content"]})
            else:
                out.append(m)
        return out[-self.max_history :]

    def _resolve(self, u: _Utterance, heard: str, override: bool = False) -> None:
        if u.resolved and not override:
            return
        u.resolved, u.heard = True, heard
        u.settled.set()
        if u.slot is not None:
            u.slot["content"] = heard
            u.slot["interrupted"] = u.interrupted

    # -- run

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.greeting:
                await self._speak(self.greeting)
            while True:
                try:
                    port, frame = await self.inbox.receive()
                except EndOfInput:
                    break
                await self._on(frame)
            tg.cancel_scope.cancel()

    async def _on(self, frame: Frame) -> None:
        if isinstance(frame, (EndOfTurn, Transcript, DTMF)):
            text = frame.text if not isinstance(frame, DTMF) else ""
            if isinstance(frame, Transcript) and not frame.is_final:
                return
            if not text.strip() and not isinstance(frame, DTMF):
                return
            self._last_interrupted = None
            await self._cut_generation()
            self._start_reply(frame)
        elif isinstance(frame, FalseInterrupt):
            u, self._last_interrupted = self._last_interrupted, None
            if u is not None and self.on_false_interrupt != "ignore":
                self._tg.start_soon(self._false_interrupt, u)
        elif isinstance(frame, Interrupt):
            heard = getattr(frame, "heard", None)  # ConversationRelay says what was heard
            u = await self._interrupt_current(reason=frame.reason)
            if heard is not None:
                # the carrier's report beats the provisional "all heard" of a finished reply
                target = u or (self._utts.get(self._next_uid) if self._next_uid else None)
                if target is not None:
                    target.interrupted = True
                    self._resolve(target, _prefix_of(target.text, heard), override=True)
        elif isinstance(frame, WordTimestamps):
            u = self._utts.get(frame.utterance_id)
            if u is not None:
                u.words.extend(frame.words)
        elif isinstance(frame, PlayedPosition):
            await self._played(frame)

    async def _cut_generation(self) -> None:
        """A new turn while the agent is still generating: stop generating; what was already
        sent still plays (no barge-in happened), so close the utterance for the TTS."""
        u = self._current
        if u is None or u.done:
            return
        if self._reply_scope is not None:
            self._reply_scope.cancel()
        u.done = True
        await self.send("text", AgentText(text="", utterance_id=u.uid, last=True))

    async def _interrupt_current(self, reason: str) -> _Utterance | None:
        u = self._current
        if u is None:
            return None
        if self._reply_scope is not None:
            self._reply_scope.cancel()
        u.interrupted = True
        self._current = None
        self._last_interrupted = u
        if not self.acknowledged and not u.resolved:
            # No playback acks here: nothing tells us more than the carrier's own report.
            self._resolve(u, "")
        if self.log.isEnabledFor(10):
            self.log.debug("utterance %d interrupted (%s)", u.uid, reason)
        return u

    def _new_utterance(self) -> _Utterance:
        self._next_uid += 1
        u = _Utterance(self._next_uid)
        u.slot = {"role": "assistant", "content": None, "_utterance": u.uid}
        self._utts[u.uid] = u
        if len(self._utts) > 64:  # bounded: forget the oldest resolved utterances
            for uid in [k for k, v in self._utts.items() if v.resolved][: len(self._utts) - 64]:
                del self._utts[uid]
        return u

    async def _speak(self, text: str, end_call: bool = False) -> None:
        u = self._new_utterance()
        u.parts.append(text)
        self.history.append(u.slot)  # type: ignore[arg-type]
        self._current = u
        u.control = CallControl(can_transfer=self.transfer is not None)
        if end_call:
            u.control.ending = text
        await self.send(
            "text", AgentText(text=text, utterance_id=u.uid, last=True, end_call=end_call)
        )
        u.done = True
        if not self.acknowledged:
            self._resolve(u, u.text)
            await self._after_heard(u)

    def _start_reply(self, frame: Frame) -> None:
        self.turns += 1
        u = self._new_utterance()
        if isinstance(frame, EndOfTurn):
            self.publish(
                TimelineMark(turn=u.uid, stage="caller_speech_end", time=frame.capture_time)
            )
            if frame.stt_final_time:
                self.publish(TimelineMark(turn=u.uid, stage="stt_final", time=frame.stt_final_time))
        text = getattr(frame, "text", "")
        dtmf = frame.digit if isinstance(frame, DTMF) else ""
        control = CallControl(can_transfer=self.transfer is not None)
        u.control = control
        turn = Turn(text, [], control, dtmf=dtmf, index=self.turns)
        unsettled = [v for v in self._utts.values() if v.interrupted and not v.resolved]
        before = self.llm_history()
        self.history.append(turn.user_message)
        self.history.append(u.slot)  # type: ignore[arg-type]
        if len(self.history) > 2 * self.max_history:
            # bounded: the model never sees more than max_history messages, so keep twice that
            del self.history[: len(self.history) - 2 * self.max_history]
        self._current = u
        scope = anyio.CancelScope()
        self._reply_scope = scope
        self._tg.start_soon(self._reply, turn, u, scope, unsettled, before)

    async def _reply(
        self,
        turn: Turn,
        u: _Utterance,
        scope: anyio.CancelScope,
        unsettled: list[_Utterance],
        before: list[dict[str, Any]],
    ) -> None:
        first = True
        try:
            with scope:
                if unsettled:
                    # The heard position of an interrupted reply may still be on its way from
                    # playout (the new turn's control frame overtook it): wait for it, bounded.
                    with anyio.move_on_after(self.settle_timeout):
                        for v in unsettled:
                            await v.settled.wait()
                    before = self.llm_history()[:-1]
                    before = before[:-1] if before and before[-1] == turn.user_message else before
                turn.history = before
                try:
                    async with aclosing(self.agent.respond(turn)) as chunks:  # type: ignore[type-var]
                        async for chunk in chunks:
                            if not chunk:
                                continue
                            if first:
                                first = False
                                self.publish(TimelineMark(turn=u.uid, stage="agent_first_token"))
                            u.parts.append(chunk)
                            await self.send("text", AgentText(text=chunk, utterance_id=u.uid))
                except Exception as exc:
                    # An agent failure is this turn's problem, not the call's: apologise.
                    self.log.error(
                        "agent failed on turn %d: %s: %s", turn.index, type(exc).__name__, exc
                    )
                    apology = " Sorry, something went wrong on my side."
                    u.parts.append(apology)
                    await self.send("text", AgentText(text=apology, utterance_id=u.uid))
                ending = u.control.ending is not None if u.control else False
                await self.send(
                    "text", AgentText(text="", utterance_id=u.uid, last=True, end_call=ending)
                )
                u.done = True
        finally:
            # tool-call messages happened whether or not the reply was heard; they go before the
            # assistant's (heard) text in the history
            if turn.messages:
                at = next((i for i, m in enumerate(self.history) if m is u.slot), len(self.history))
                self.history[at:at] = turn.messages
        if not scope.cancelled_caught and not self.acknowledged:
            self._resolve(u, u.text)
            await self._after_heard(u)

    async def _played(self, pos: PlayedPosition) -> None:
        u = self._utts.get(pos.utterance_id)
        if u is None:
            return
        if pos.complete:
            self._resolve(u, u.text)
            if not u.interrupted:
                await self._after_heard(u)
        else:
            self._resolve(u, heard_prefix(u.text, u.words, pos.played, pos.sent))

    async def _after_heard(self, u: _Utterance) -> None:
        if self._current is u:
            self._current = None
        c = u.control
        if c is None or self._ended:
            return
        if c.transfer_to and self.transfer is not None:
            self._ended = True
            await self.transfer(c.transfer_to)
        elif c.ending is not None:
            self._ended = True
            await self.send("hangup", Hangup(reason="agent ended the call"))

    async def _false_interrupt(self, u: _Utterance) -> None:
        with anyio.move_on_after(self.settle_timeout):
            await u.settled.wait()  # the heard position may still be queued behind this frame
        if self._current is not None:
            return
        if self.on_false_interrupt == "reprompt":
            await self._speak(self.reprompt)
            return
        rest = u.text[len(u.heard) :].strip() if u.resolved else u.text
        if rest:
            await self._speak(rest)


def _prefix_of(text: str, heard: str) -> str:
    """The prefix of ``text`` matching what a carrier reported as heard (it may normalise)."""
    heard = heard.strip()
    if not heard or text.startswith(heard):
        return heard
    return _first_words(text, len(heard.split()))


def timeline_of(events: list[Frame]) -> dict[int, dict[str, float]]:
    """Group published ``TimelineMark`` s by turn: ``{turn: {stage: time}}`` (first time wins)."""
    out: dict[int, dict[str, float]] = {}
    for ev in events:
        if isinstance(ev, TimelineMark):
            out.setdefault(ev.turn, {}).setdefault(ev.stage, ev.time)
    return out


class CallEnd(Actor):
    """Ends the call on a ``Hangup``: from the caller's side (``caller``: the carrier says the
    caller left) it just stops the call; from the agent's side (``agent``: the goodbye was
    heard) it first ends the call through ``hangup`` (the carrier's REST API), if given."""

    inputs = (In("caller", Hangup, required=False), In("agent", Hangup, required=False))

    def __init__(self, hangup: Any = None) -> None:
        super().__init__()
        self.hangup = hangup

    async def handle(self, port: str, frame: Frame) -> None:
        reason = getattr(frame, "reason", "") or port
        if port == "agent" and self.hangup is not None:
            try:
                await self.hangup()
            except Exception as exc:
                self.log.error("REST hang-up failed: %s", exc)
        if self.call is not None:
            self.call.stop(f"hangup: {reason}")
