"""Running a :class:`~voicegraph.testing.scenario.Scenario` as a call (see that module).

The caller side is the simulated carrier caller; what the agent said, its tool calls and its
call-control decisions are read from the call's own agent node (``graph["agent"]``, a
:class:`~voicegraph.dialogue.Dialogue`), or -- in realtime mode, which has no agent node --
from the realtime supervisor's transcript (the reply's text and what was heard of it), the
model node's ``tool_log`` (the tool calls since the previous reply) and its call control
(``end_call``, ``transfer_call``). Realtime runs do not support ``interrupt_after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from voicegraph.dialogue import first_words

from .scenario import Step, TurnResult, reply_from_dialogue, speech_for
from .textmode import TextReply, ToolCallRecord, _json

QUIET = 0.4
"""Seconds without new agent audio after which a reply counts as played out."""
TICK = 0.05


async def run_call(
    scenario: Any,
    app: Any,
    line: Any,
    playback_rate: float,
    reply_timeout: float,
    seconds_per_char: float,
    judge: Callable[[int, Step, TextReply | None, float | None], TurnResult],
) -> list[TurnResult]:
    iface = line or app.line()
    if iface.pipeline == "realtime" and any(s.interrupt_after is not None for s in scenario.steps):
        raise ValueError(
            "interrupt_after needs the call's agent node (cascading or managed); a realtime "
            "scenario reports what was heard of each reply but cannot interrupt after N words"
        )
    managed = iface.pipeline == "managed"
    options = {} if managed else {"playback_rate": playback_rate}
    caller = app.caller(iface, **options)
    turns: list[TurnResult] = []
    seen_calls = len(app.calls)
    async with caller.dial() as call:
        with anyio.fail_after(reply_timeout):
            while len(app.calls) <= seen_calls:  # noqa: ASYNC110 - the runtime's hook fills it
                await anyio.sleep(TICK)
        server_call = app.calls[-1][0]
        run = (_RelayRun if managed else _MediaRun)(
            call, server_call, reply_timeout, seconds_per_char
        )
        await run.start()
        for step in scenario.steps:
            if step.kind == "hang_up" or call.closed:
                break
            if step.kind == "pause":
                await run.pause(step.seconds)
                continue
            reply, latency = await run.turn(step, len(turns))
            turns.append(judge(len(turns) + 1, step, reply, latency))
            for index, old_step, old_reply in run.take_settled():
                turns[index] = judge(index + 1, old_step, old_reply, turns[index].latency)
            if reply is not None and (reply.ended or reply.transferred_to):
                break
        await run.finish()
        for index, old_step, old_reply in run.take_settled():
            turns[index] = judge(index + 1, old_step, old_reply, turns[index].latency)
    return turns


class _Run:
    def __init__(self, call: Any, server_call: Any, timeout: float, per_char: float) -> None:
        self.call = call
        self.server_call = server_call
        self.timeout = timeout
        self.per_char = per_char
        nodes = server_call.graph
        self.agent = _node(nodes, "agent")
        self.supervisor = _node(nodes, "supervisor")
        self.model = _node(nodes, "model")
        self.tools_seen = 0
        self.pending: tuple[Step, int, str, int] | None = None
        self.settled: list[tuple[int, Step, TextReply | None]] = []

    @property
    def dialogue(self) -> Any:
        return self.agent.dialogue if self.agent is not None else None

    async def start(self) -> None:
        pass

    async def pause(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def turn(self, step: Step, index: int) -> tuple[TextReply | None, float | None]:
        raise NotImplementedError

    def take_settled(self) -> list[tuple[int, Step, TextReply | None]]:
        """Interrupted turns whose heard text is now known, to be judged again."""
        out, self.settled = self.settled, []
        return out

    async def settle_pending(self) -> None:
        if self.pending is None:
            return
        step, uid, caller, index = self.pending
        self.pending = None
        await self._settled(uid)
        self.settled.append((index, step, self.reply(uid, caller, 0.0)))

    def reply(self, uid: int, caller: str, latency: float) -> TextReply | None:
        d = self.dialogue
        if d is not None and uid in d.utterances:
            return reply_from_dialogue(d, uid, caller, latency)
        if self.supervisor is not None:
            said = [e for e in self.supervisor.transcript if e.get("role") == "assistant"]
            if said:
                e = said[-1]
                full = e.get("full", e.get("content", ""))
                control = getattr(self.model, "call_control", None)
                transferred = getattr(control, "transfer_to", None)
                return TextReply(
                    turn=len(said),
                    caller=caller,
                    text=full,
                    heard=e.get("content", ""),
                    interrupted=bool(e.get("interrupted")),
                    tool_calls=self._new_tool_calls(),
                    ended=getattr(control, "ending", None) is not None and not transferred,
                    transferred_to=transferred,
                    seconds=latency,
                )
        return None

    def _new_tool_calls(self) -> list[ToolCallRecord]:
        """Realtime: the model node's tool calls since the previous reply."""
        log = list(getattr(self.model, "tool_log", ()))
        new, self.tools_seen = log[self.tools_seen :], len(log)
        return [
            ToolCallRecord(name=name, arguments=_json(args), result=_json(out))
            for name, args, out in new
        ]

    async def finish(self) -> None:
        await self.settle_pending()

    async def _settled(self, uid: int) -> None:
        d = self.dialogue
        if d is None or uid not in d.utterances:
            return
        with anyio.move_on_after(min(5.0, self.timeout)):
            await d.utterances[uid].settled.wait()


class _RelayRun(_Run):
    """Managed mode: prompts and text replies; an interruption reports the heard words."""

    async def turn(self, step: Step, index: int) -> tuple[TextReply | None, float | None]:
        caller = step.text if step.kind == "say" else f"[keypad] {step.text}"
        t0 = time.perf_counter()
        if step.kind == "say":
            await self.call.say(step.text)
        else:
            await self.call.send_dtmf(step.text)
        text = ""
        for _ in step.text if step.kind == "press" else [None]:
            text = await self.call.wait_for_reply(self.timeout)
        latency = time.perf_counter() - t0
        d = self.dialogue
        uid = d.last_uid if d is not None else 0
        if step.interrupt_after is not None and len(text.split()) > step.interrupt_after:
            heard = first_words(text, step.interrupt_after)
            await self.call.interrupt(heard, 1000 * self.per_char * len(heard))
            u = d.utterances.get(uid) if d is not None else None
            with anyio.move_on_after(min(5.0, self.timeout)):
                while u is not None and not u.interrupted:  # noqa: ASYNC110 - no event for it
                    await anyio.sleep(0.005)
        reply = self.reply(uid, caller, latency)
        if reply is not None and reply.ended:
            await self.call.wait_for_end(self.timeout)
        return reply, latency


class _MediaRun(_Run):
    """Media streams: speech-like audio in, agent audio out, played at the caller's rate."""

    async def start(self) -> None:
        # let a greeting play out before the caller speaks, as a person would
        if self.call.format is not None:
            await self._quiet_for(QUIET, first=False)

    async def pause(self, seconds: float) -> None:
        await self.call.send_silence(seconds)

    def _rate(self) -> int:
        return int(self.call.format.sample_rate)

    async def _quiet_for(self, gap: float, first: bool) -> float | None:
        """Send silence until no agent audio arrived for ``gap`` seconds; returns when the
        first new audio was heard (when ``first``), bounded by the reply timeout."""
        heard = self.call.heard_seconds
        first_at: float | None = None
        last_change = time.perf_counter()
        deadline = last_change + self.timeout
        while not self.call.closed:
            await self.call.send_silence(TICK)
            now = time.perf_counter()
            if self.call.heard_seconds != heard:
                heard, last_change = self.call.heard_seconds, now
                first_at = first_at or now
            queued = self.call.playback.queued_seconds if self.call.playback else 0.0
            if (first_at or not first) and not queued and now - last_change >= gap:
                break
            if now > deadline:
                raise TimeoutError(f"no complete reply within {self.timeout:g}s")
        return first_at

    async def turn(self, step: Step, index: int) -> tuple[TextReply | None, float | None]:
        caller = step.text if step.kind == "say" else f"[keypad] {step.text}"
        d = self.dialogue
        before = d.last_uid if d is not None else 0
        heard_before = self.call.heard_seconds
        if step.kind == "say":
            await self.call.send_audio(
                speech_for(step.text, self._rate()), sample_rate=self._rate()
            )
        else:
            await self.call.send_dtmf(step.text)
        t0 = time.perf_counter()
        await self.settle_pending()  # a previous reply this line interrupted
        if step.interrupt_after is not None:
            first_at = await self._heard_words(step.interrupt_after, before, heard_before)
            uid = d.last_uid if d is not None else 0
            self.pending = (step, uid, caller, index)
            return self.reply(uid, caller, (first_at or t0) - t0), (first_at or t0) - t0
        first_at = await self._quiet_for(QUIET, first=True)
        uid = d.last_uid if d is not None else 0
        if uid != before:
            await self._settled(uid)
        latency = (first_at - t0) if first_at is not None else None
        reply = self.reply(uid, caller, latency or 0.0) if uid != before or d is None else None
        if reply is not None and (reply.ended or reply.transferred_to):
            await self.call.wait_closed(self.timeout)
        return reply, latency

    async def _heard_words(self, n: int, before: int, heard_before: float) -> float | None:
        """Send silence until the caller heard about ``n`` words of the new reply."""
        d = self.dialogue
        first_at: float | None = None
        with anyio.fail_after(self.timeout):
            while not self.call.closed:
                await self.call.send_silence(TICK)
                if first_at is None and self.call.heard_seconds > heard_before:
                    first_at = time.perf_counter()
                text = (
                    d.utterances[d.last_uid].text if d is not None and d.last_uid > before else ""
                )
                if not text or first_at is None:
                    continue
                words = first_words(text, n)
                if self.call.heard_seconds - heard_before >= self.per_char * (len(words) + 1):
                    return first_at
        return first_at


def _node(graph: Any, name: str) -> Any:
    from voicegraph.graph import UnknownNode

    try:
        return graph[name]
    except UnknownNode:
        return None
