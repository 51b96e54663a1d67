"""Realtime mode's conversation keeper: the heard transcript, call control and false
interruptions for a speech-to-speech model.

The model runs the agent's tools itself (``end_call``, ``transfer_call``), so the supervisor
learns about them from the shared :class:`~voicegraph.agent.CallControl` and from
``ending_after()``: the last utterance the model had started when the tool ran. The model's
next reply after the tool output is the goodbye; once playout reports it as played (the
carrier acknowledged it), the supervisor hangs up -- or transfers -- through the carrier's REST
API. If the model says nothing within ``goodbye_timeout`` seconds, it ends the call anyway.

After a false interruption (barge-in that produced no words: a cough), the unheard rest of the
interrupted reply is asked of the model again as a :class:`~voicegraph.frames.Say`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from voicegraph.agent import CallControl
from voicegraph.channel import EndOfInput
from voicegraph.dialogue import heard_prefix
from voicegraph.frames import AgentText, Hangup, Interrupt, PlayedPosition, Say, Transcript
from voicegraph.node import Actor, In, Out

from .barge_in import FalseInterrupt

__all__ = ["RealtimeSupervisor"]


class RealtimeSupervisor(Actor):
    """Keeps realtime mode's transcript true to what was heard and carries out call control.

    Inputs: ``events`` (the model's Transcript of the caller and AgentText of its own speech),
    ``playback`` (PlayedPosition from playout), ``control`` (Interrupt and FalseInterrupt from
    the barge-in controller). Outputs: ``hangup`` (Hangup once an ``end_call`` goodbye was
    heard), ``say`` (Say to the model: the rest of a reply after a false interruption).

    ``control``: the CallControl the model's tools act on. ``ending_after()``: the last
    utterance id the model had started when ``end_call``/``transfer_call`` ran (``None``: use
    the last one seen here). ``transfer(number)``: the carrier's REST transfer (async).
    ``on_false_interrupt``: ``"resume"`` asks the model for the unheard rest, ``"ignore"`` does
    nothing. ``settle_timeout``: how long to wait for the heard position of the interrupted
    reply, which may still be on its way from playout."""

    inputs = (
        In("events", Transcript, AgentText),
        In("playback", PlayedPosition, required=False),
        In("control", Interrupt, FalseInterrupt, required=False),
    )
    outputs = (Out("hangup", Hangup, required=False), Out("say", Say, required=False))

    def __init__(
        self,
        control: CallControl | None,
        goodbye_timeout: float = 8.0,
        transfer: Callable[[str], Awaitable[Any]] | None = None,
        *,
        ending_after: Callable[[], int | None] | None = None,
        on_false_interrupt: str = "resume",
        settle_timeout: float = 0.5,
    ) -> None:
        super().__init__()
        if on_false_interrupt not in ("resume", "ignore"):
            raise ValueError(
                f"on_false_interrupt must be 'resume' or 'ignore' in realtime mode, not "
                f"{on_false_interrupt!r}"
            )
        self.control = control
        self.transfer = transfer
        self.goodbye_timeout = goodbye_timeout
        self.ending_after = ending_after
        self.on_false_interrupt = on_false_interrupt
        self.settle_timeout = settle_timeout
        self.transcript: list[dict[str, Any]] = []
        self.resumed = 0
        """Replies resumed after a false interruption."""
        self._agent: dict[int, dict[str, Any]] = {}
        self._max_uid = 0
        self._ending_after: int | None = None
        self._deadline: float | None = None
        self._finished = False
        self._interrupted_uid = 0
        self._settled: dict[int, anyio.Event] = {}

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                self._check_ending()
                try:
                    item = await self.inbox.receive_until(self._deadline)
                except EndOfInput:
                    break
                if item is None:
                    self.log.warning("no goodbye heard within %ss; ending", self.goodbye_timeout)
                    await self._finish()
                    continue
                await self._on(item[1], tg)
            tg.cancel_scope.cancel()

    async def _on(self, frame: Any, tg: anyio.abc.TaskGroup) -> None:
        if isinstance(frame, Transcript):
            if frame.is_final and frame.text.strip():
                self.transcript.append({"role": "user", "content": frame.text.strip()})
        elif isinstance(frame, AgentText):
            entry = self._agent.get(frame.utterance_id)
            if entry is None:
                entry = {"role": "assistant", "content": "", "full": ""}
                self._agent[frame.utterance_id] = entry
                self.transcript.append(entry)
                self._max_uid = max(self._max_uid, frame.utterance_id)
            entry["full"] += frame.text
            entry["content"] = entry["full"]
        elif isinstance(frame, PlayedPosition):
            await self._played(frame)
        elif isinstance(frame, FalseInterrupt):
            if self.on_false_interrupt == "resume" and self._interrupted_uid:
                tg.start_soon(self._resume, self._interrupted_uid)
            self._interrupted_uid = 0
        elif isinstance(frame, Interrupt):
            self._interrupted_uid = frame.utterance_id or self._max_uid
            self._settled.setdefault(self._interrupted_uid, anyio.Event())

    async def _played(self, pos: PlayedPosition) -> None:
        entry = self._agent.get(pos.utterance_id)
        if entry is not None and not pos.complete:
            entry["content"] = heard_prefix(entry["full"], [], pos.played, pos.sent)
            entry["interrupted"] = True
        settled = self._settled.pop(pos.utterance_id, None)
        if settled is not None:
            settled.set()
        self._check_ending()
        if (
            pos.complete
            and self._ending_after is not None
            and pos.utterance_id > self._ending_after
        ):
            await self._finish()

    async def _resume(self, uid: int) -> None:
        settled = self._settled.get(uid)
        if settled is not None:
            with anyio.move_on_after(self.settle_timeout):
                await settled.wait()
        entry = self._agent.get(uid)
        if entry is None or self._finished or self._ending_after is not None:
            return
        rest = entry["full"][len(entry["content"]) :].strip()
        if not rest:
            return
        self.resumed += 1
        await self.send("say", Say(text=rest))

    def _check_ending(self) -> None:
        c = self.control
        if c is None or self._ending_after is not None or self._finished:
            return
        if c.ending is None and not c.transfer_to:
            return
        mark = self.ending_after() if self.ending_after is not None else None
        self._ending_after = self._max_uid if mark is None else mark
        self._deadline = anyio.current_time() + self.goodbye_timeout

    async def _finish(self) -> None:
        """Transfer (after ``transfer_call``) or hang up (after ``end_call``), once."""
        if self._finished:
            return
        self._finished = True
        self._deadline = None
        c = self.control
        if c is not None and c.transfer_to and self.transfer is not None:
            await self.transfer(c.transfer_to)
            return
        await self.send("hangup", Hangup(reason="agent ended the call"))
