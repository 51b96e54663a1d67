"""The agent node: :class:`AgentNode` runs the agent per turn, streams its reply as ``AgentText``,
and writes the history from what the carrier acknowledged as played (word timestamps, or the
played share of the audio), never from a local clock."""

from __future__ import annotations

from typing import Any, Literal

import anyio

from voicegraph.agent import Responder, Turn
from voicegraph.channel import EndOfInput
from voicegraph.dialogue import (
    Dialogue,
    Utterance,
    agent_reply,
    call_decision,
    heard_prefix,
    prefix_of,
)
from voicegraph.frames import (
    DTMF,
    AgentText,
    AnsweredBy,
    EndOfTurn,
    Frame,
    Hangup,
    Interrupt,
    PlayedPosition,
    TimelineMark,
    Transcript,
    WordTimestamps,
)
from voicegraph.node import Actor, In, Out

from .barge_in import FalseInterrupt
from .preemptive import HeldReply
from .turn_policy import Backchannel, EarlyTurn, TurnContinues

__all__ = ["AgentFailing", "AgentNode"]


class AgentFailing(Exception):
    """The agent failed ``turns`` turns in a row (or stalled): the call should end politely."""

    log_traceback = False  # the cause is logged with it; the call's end is the runtime's job

    def __init__(self, turns: int, cause: BaseException) -> None:
        super().__init__(
            f"the agent failed {turns} turn(s) in a row (last: {type(cause).__name__}: {cause}); "
            "ending the call with an apology"
        )
        self.turns = turns


class AgentNode(Actor):
    """Runs the agent for each caller turn and keeps the history true to what was heard.

    Inputs: ``turns`` (EndOfTurn from the turn detector; final Transcript in managed mode; DTMF),
    ``control`` (Interrupt, FalseInterrupt), ``playback`` (PlayedPosition from playout,
    WordTimestamps from the TTS). Outputs: ``text`` (AgentText to TTS or ConversationRelay) and
    ``hangup`` (Hangup to the carrier once a goodbye was heard).

    ``max_failed_turns`` (default 2): after this many consecutive turns on which the agent
    raised (each answered with a spoken "sorry"), or at once when the error says ``ends_call``
    (a model that stalled even when asked twice), the node raises :class:`AgentFailing` and the
    runtime ends the call with its apology and a hang-up.

    ``acknowledged``: whether playback acknowledgements arrive (True with playout; False in
    managed mode, where a reply counts as heard unless the carrier reports an interruption with
    the heard text). ``on_false_interrupt``: ``"resume"`` re-speaks the unheard rest of the
    interrupted reply, ``"reprompt"`` says ``reprompt``, ``"ignore"`` stays quiet.

    The history itself is a :class:`~voicegraph.dialogue.Dialogue` (shared with text mode);
    this node adds the timing: frames in, text out, heard positions from playout."""

    inputs = (
        In("turns", EndOfTurn, Transcript, DTMF, EarlyTurn, TurnContinues, Backchannel),
        In("control", Interrupt, FalseInterrupt, AnsweredBy, required=False),
        In("playback", PlayedPosition, WordTimestamps, required=False),
    )
    outputs = (Out("text", AgentText), Out("hangup", Hangup, required=False))
    hold_greeting = False
    """Set on a placed call with machine detection: the greeting waits for the verdict
    (:class:`~voicegraph.frames.AnsweredBy`); a machine gets none and no replies."""

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
        max_failed_turns: int = 2,
    ) -> None:
        super().__init__()
        if max_failed_turns < 1:
            raise ValueError("max_failed_turns must be at least 1")
        self.max_failed_turns = max_failed_turns
        self.failed_turns = 0
        """Consecutive turns on which the agent raised (reset by a turn that succeeds)."""
        if not hasattr(agent, "respond"):
            raise TypeError(f"agent {agent!r} has no respond(turn) method")
        self.agent = agent
        self.greeting = greeting
        self.acknowledged = acknowledged
        self.on_false_interrupt = on_false_interrupt
        self.reprompt = reprompt
        self.transfer = transfer
        self.settle_timeout = settle_timeout
        self.dialogue = Dialogue(max_history, can_transfer=transfer is not None)
        self._current: Utterance | None = None
        self._reply_scope: anyio.CancelScope | None = None
        self._last_interrupted: Utterance | None = None
        self._ended = False
        self.answered_by: str | None = None
        self._held: HeldReply | None = None
        self.preempted = 0
        """Replies prepared early (EarlyTurn); ``preempt_used`` of them were played."""
        self.preempt_used = 0

    # -- history

    @property
    def history(self) -> list[dict[str, Any]]:
        """The whole history, assistant slots holding what was heard."""
        return self.dialogue.history

    @property
    def turns(self) -> int:
        return self.dialogue.turns

    def llm_history(self) -> list[dict[str, Any]]:
        """History for the model: resolved messages only, empty assistant slots dropped."""
        return self.dialogue.llm_history()

    # -- run

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.greeting and not self.hold_greeting:
                await self._speak(self.greeting)
            while True:
                try:
                    port, frame = await self.inbox.receive()
                except EndOfInput:
                    break
                await self._on(frame)
            tg.cancel_scope.cancel()

    async def _on(self, frame: Frame) -> None:
        if isinstance(frame, AnsweredBy):
            if self.answered_by is None:
                self.answered_by = frame.result
                if frame.result != "machine" and self.greeting and self.hold_greeting:
                    await self._speak(self.greeting)
        elif self.answered_by == "machine":
            return  # the answering-machine policy speaks; the agent stays out of it
        elif isinstance(frame, (EndOfTurn, Transcript, DTMF)):
            text = frame.text if not isinstance(frame, DTMF) else ""
            if isinstance(frame, Transcript) and not frame.is_final:
                return
            if not text.strip() and not isinstance(frame, DTMF):
                return
            self._last_interrupted = None
            held, self._held = self._held, None
            await self._cut_generation()
            if held is not None and isinstance(frame, EndOfTurn) and held.matches(text):
                self.preempt_used += 1
                held.release(frame)
                return
            if held is not None:
                held.cancel()
            self._start_reply(frame)
        elif isinstance(frame, (EarlyTurn, TurnContinues)):
            if self._held is not None:
                self._held.cancel()
                self._held = None
            if isinstance(frame, EarlyTurn) and frame.text.strip():
                self.preempted += 1
                self._held = self._start_reply(frame, held=True)
        elif isinstance(frame, Backchannel):
            self._backchannel(frame.text)
        elif isinstance(frame, FalseInterrupt):
            u, self._last_interrupted = self._last_interrupted, None
            if u is not None and self.on_false_interrupt != "ignore":
                self._tg.start_soon(self._false_interrupt, u)
        elif isinstance(frame, Interrupt):
            heard = getattr(frame, "heard", None)  # ConversationRelay says what was heard
            u = await self._interrupt_current(reason=frame.reason)
            if heard is not None:
                # the carrier's report beats the provisional "all heard" of a finished reply
                d = self.dialogue
                target = u or (d.utterances.get(d.last_uid) if d.last_uid else None)
                if target is not None:
                    target.interrupted = True
                    d.resolve(target, prefix_of(target.text, heard), override=True)
        elif isinstance(frame, WordTimestamps):
            u = self.dialogue.utterances.get(frame.utterance_id)
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

    async def _interrupt_current(self, reason: str) -> Utterance | None:
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
            self.dialogue.resolve(u, "")
        if self.log.isEnabledFor(10):
            self.log.debug("utterance %d interrupted (%s)", u.uid, reason)
        return u

    async def _speak(self, text: str, end_call: bool = False) -> None:
        u = self.dialogue.speak(text, end_call=end_call)
        self._current = u
        await self.send(
            "text", AgentText(text=text, utterance_id=u.uid, last=True, end_call=end_call)
        )
        u.done = True
        if not self.acknowledged:
            self.dialogue.resolve(u, u.text)
            await self._after_heard(u)

    def _start_reply(self, frame: Frame, held: bool = False) -> HeldReply | None:
        unsettled = self.dialogue.unsettled()
        text = getattr(frame, "text", "")
        dtmf = frame.digit if isinstance(frame, DTMF) else ""
        turn, u = self.dialogue.prepare_turn(text, dtmf)
        turn.utterance_id, turn.publish = u.uid, self.publish  # tool and LLM events per turn
        turn.answered_by = self.answered_by
        scope = anyio.CancelScope()

        def commit(confirmed: Frame) -> None:
            self.dialogue.commit_turn(turn, u)
            if isinstance(confirmed, EndOfTurn):
                t = confirmed.capture_time
                self.publish(TimelineMark(turn=u.uid, stage="caller_speech_end", time=t))
                if confirmed.stt_final_time:
                    t = confirmed.stt_final_time
                    self.publish(TimelineMark(turn=u.uid, stage="stt_final", time=t))
            self._current = u
            self._reply_scope = scope

        if held:
            u.gate = turn.gate = anyio.Event()
        else:
            commit(frame)
        self._tg.start_soon(self._reply, turn, u, scope, unsettled)
        return HeldReply(text, u.gate, scope, commit) if u.gate is not None else None

    async def _reply(
        self, turn: Turn, u: Utterance, scope: anyio.CancelScope, unsettled: list[Utterance]
    ) -> None:
        first = True

        async def emit(chunk: str) -> None:
            nonlocal first
            if first:
                first = False
                await self._confirmed(u)
                self.publish(TimelineMark(turn=u.uid, stage="agent_first_token"))
            u.parts.append(chunk)
            await self.send("text", AgentText(text=chunk, utterance_id=u.uid))

        try:
            with scope:
                if unsettled:
                    # The heard position of an interrupted reply may still be on its way from
                    # playout (the new turn's control frame overtook it): wait for it, bounded.
                    with anyio.move_on_after(self.settle_timeout):
                        for v in unsettled:
                            await v.settled.wait()
                    turn.history = self.dialogue.history_before(turn)

                def give_up(exc: Exception) -> bool:
                    # A model that stalled twice, or fails turn after turn, will not get better:
                    # end the call (the runtime apologises and hangs up) instead of looping.
                    self.failed_turns += 1
                    return bool(getattr(exc, "ends_call", False)) or (
                        self.failed_turns >= self.max_failed_turns
                    )

                try:
                    ok = await agent_reply(self.agent, turn, emit, self.log, give_up=give_up)
                except Exception as exc:
                    raise AgentFailing(self.failed_turns, exc) from exc
                if ok:
                    self.failed_turns = 0
                else:
                    self.publish(TimelineMark(turn=-1, stage="apology"))
                ending = u.control.ending is not None if u.control else False
                await self._confirmed(u)
                await self.send(
                    "text", AgentText(text="", utterance_id=u.uid, last=True, end_call=ending)
                )
                u.done = True
        finally:
            # tool-call messages happened whether or not the reply was heard
            self.dialogue.add_tool_messages(turn, u)
            if u.gate is not None and not u.gate.is_set():
                self.dialogue.discard(u)  # a preemptive reply that never became the turn's
        if not scope.cancelled_caught and not self.acknowledged:
            self.dialogue.resolve(u, u.text)
            await self._after_heard(u)

    async def _confirmed(self, u: Utterance) -> None:
        """A preemptive reply says nothing until its turn is confirmed (voicegraph.nodes.conversation.preemptive)."""
        if u.gate is not None:
            await u.gate.wait()

    def _backchannel(self, text: str) -> None:
        """The caller acknowledged while the agent spoke: keep it in the history as said, and
        if the acknowledgement's voice stopped the reply, say the unheard rest at once."""
        self.dialogue.backchannel(text)
        u, self._last_interrupted = self._last_interrupted, None
        if u is not None and self.on_false_interrupt == "resume":
            self._tg.start_soon(self._false_interrupt, u)

    async def _played(self, pos: PlayedPosition) -> None:
        u = self.dialogue.utterances.get(pos.utterance_id)
        if u is None:
            return
        if pos.complete:
            self.dialogue.resolve(u, u.text)
            if not u.interrupted:
                await self._after_heard(u)
        else:
            self.dialogue.resolve(u, heard_prefix(u.text, u.words, pos.played, pos.sent))

    async def _after_heard(self, u: Utterance) -> None:
        if self._current is u:
            self._current = None
        if self._ended:
            return
        decision = call_decision(u.control, self.transfer is not None)
        if decision is None:
            return
        self._ended = True
        if decision.action == "transfer":
            await self.transfer(decision.target)
        else:
            await self.send("hangup", Hangup(reason="agent ended the call"))

    async def _false_interrupt(self, u: Utterance) -> None:
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
