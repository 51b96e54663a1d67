"""Text mode: run an agent with text in and text out -- no audio, no carrier, no clock.

The turn logic is the call's own (:mod:`voicegraph.dialogue`, shared with the
:class:`~voicegraph.nodes.conversation.agent.AgentNode`): the same :class:`~voicegraph.agent.Turn`, tools,
``end_call``/``transfer_call`` and a history that keeps only what the caller heard. Only the
timing is gone: a reply counts as heard in full, unless the caller interrupts it after N words.

    async with TextSession(agent) as s:
        reply = await s.say("a table for two at seven")
        reply.assert_tool_called("book_table", party=2)
        reply.assert_says("booked")
        bye = await s.say("that's all, thanks")
        bye.assert_ended()

Works with any agent: an :class:`~voicegraph.agent.Agent` over a real LLM, over
:class:`~voicegraph.testing.FakeChatCompletions` (``fake.llm()``), or your own ``respond()``.
"""

from __future__ import annotations

import re
import time
from types import TracebackType
from typing import Any

import msgspec

from voicegraph.agent import Responder, Turn
from voicegraph.dialogue import Dialogue, Utterance, agent_reply, call_decision, first_words

__all__ = ["CallEndedError", "TextReply", "TextSession", "ToolCallRecord"]


class CallEndedError(RuntimeError):
    """The session's call is over (the agent hung up or transferred); start a new session."""


class ToolCallRecord(msgspec.Struct, frozen=True):
    """One tool call the agent made in a turn: ``arguments`` and ``result`` decoded from JSON
    (left as text when they are not JSON). ``error``: the tool's error message, if it failed."""

    name: str
    arguments: Any
    result: Any
    call_id: str = ""

    @property
    def error(self) -> str | None:
        if isinstance(self.result, dict) and set(self.result) == {"error"}:
            return str(self.result["error"])
        return None


class TextReply:
    """The agent's answer to one caller turn, with assertion helpers.

    ``text``: the whole reply; ``heard``: what the caller heard of it (shorter when
    interrupted); ``tool_calls``: :class:`ToolCallRecord` s in order; ``ended`` /
    ``transferred_to``: the call-control decision once the reply was heard; ``seconds``: the
    turn's wall-clock time."""

    def __init__(
        self,
        turn: int,
        caller: str,
        text: str,
        heard: str,
        interrupted: bool,
        tool_calls: list[ToolCallRecord],
        ended: bool,
        transferred_to: str | None,
        seconds: float,
    ) -> None:
        self.turn = turn
        self.caller = caller
        self.text = text
        self.heard = heard
        self.interrupted = interrupted
        self.tool_calls = tool_calls
        self.ended = ended
        self.transferred_to = transferred_to
        self.seconds = seconds

    def __repr__(self) -> str:
        tools = [c.name for c in self.tool_calls]
        return f"<TextReply turn={self.turn} text={self.text!r} tools={tools}>"

    # ---------------------------------------------------------------- assertions

    def assert_tool_called(self, name: str, /, **arguments: Any) -> ToolCallRecord:
        """Assert the agent called tool ``name`` with (at least) these ``arguments``; returns
        the first matching call."""
        for call in self.tool_calls:
            args = call.arguments if isinstance(call.arguments, dict) else {}
            if call.name == name and all(args.get(k, _MISSING) == v for k, v in arguments.items()):
                return call
        want = f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
        raise AssertionError(f"turn {self.turn}: no call {want}; calls made: {self._calls()}")

    def assert_no_tool_called(self, name: str | None = None) -> None:
        """Assert no tool (or no tool ``name``) was called."""
        made = [c for c in self.tool_calls if name is None or c.name == name]
        if made:
            raise AssertionError(f"turn {self.turn}: expected no tool call, got {self._calls()}")

    def assert_says(self, *fragments: str, case: bool = False) -> None:
        """Assert the reply contains every fragment (case-insensitive unless ``case``)."""
        text = self.text if case else self.text.lower()
        missing = [f for f in fragments if (f if case else f.lower()) not in text]
        if missing:
            raise AssertionError(f"turn {self.turn}: reply {self.text!r} lacks {missing!r}")

    def assert_matches(self, pattern: str, flags: int = re.IGNORECASE) -> re.Match[str]:
        """Assert the reply matches the regular expression ``pattern`` (searched)."""
        m = re.search(pattern, self.text, flags)
        if m is None:
            raise AssertionError(
                f"turn {self.turn}: reply {self.text!r} does not match {pattern!r}"
            )
        return m

    def assert_ended(self) -> None:
        """Assert the agent ended the call after this reply."""
        if not self.ended:
            raise AssertionError(f"turn {self.turn}: the call did not end; reply {self.text!r}")

    def assert_transferred(self, to: str | None = None) -> None:
        """Assert the agent transferred the call (to ``to``, when given)."""
        if self.transferred_to is None or (to is not None and self.transferred_to != to):
            got = self.transferred_to or "no transfer"
            raise AssertionError(f"turn {self.turn}: expected transfer to {to or 'anyone'}, {got}")

    def assert_continues(self) -> None:
        """Assert the call goes on (no hang-up, no transfer)."""
        if self.ended or self.transferred_to:
            raise AssertionError(f"turn {self.turn}: the call ended ({self.text!r})")

    def _calls(self) -> str:
        return ", ".join(f"{c.name}({c.arguments!r})" for c in self.tool_calls) or "none"


_MISSING = object()


class TextSession:
    """One conversation with ``agent`` in text (see module docs).

    ``greeting``: said first, as the call interface's greeting is. ``can_transfer``: whether
    the simulated connection can transfer (offers ``transfer_call``). ``max_history``: as for
    the call. Use as ``async with``; the session is over once the agent hung up or transferred.
    """

    def __init__(
        self,
        agent: Responder,
        *,
        greeting: str | None = None,
        can_transfer: bool = True,
        max_history: int = 200,
    ) -> None:
        if not hasattr(agent, "respond"):
            raise TypeError(f"agent {agent!r} has no respond(turn) method")
        self.agent = agent
        self.greeting = greeting
        self.dialogue = Dialogue(max_history, can_transfer=can_transfer)
        self.replies: list[TextReply] = []
        self.ended = False
        self.transferred_to: str | None = None

    async def __aenter__(self) -> TextSession:
        if self.greeting:
            u = self.dialogue.speak(self.greeting)
            self.dialogue.resolve(u, u.text)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to close: the session holds no connection of its own."""

    @property
    def history(self) -> list[dict[str, Any]]:
        """The conversation as the model will see it: only what the caller heard."""
        return self.dialogue.llm_history()

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """Every tool call of the session, in order."""
        return [c for r in self.replies for c in r.tool_calls]

    async def say(self, text: str, *, interrupt_after: int | None = None) -> TextReply:
        """The caller says ``text``; returns the agent's reply once it is complete.

        ``interrupt_after``: the caller barges in after hearing that many words of the reply,
        so the history keeps only those words and a goodbye or transfer does not happen (as on
        a call, where an interrupted reply was not heard)."""
        if not text.strip():
            raise ValueError("say() needs some text; use press() for keypad input")
        return await self._turn(text, "", interrupt_after)

    async def press(self, digits: str, *, interrupt_after: int | None = None) -> TextReply:
        """The caller presses keys (``0-9``, ``*``, ``#``, ``A-D``): one keypad turn."""
        if not digits or any(d not in "0123456789*#ABCD" for d in digits):
            raise ValueError(f"DTMF digits {digits!r}: use 0-9, *, # or A-D")
        return await self._turn("", digits, interrupt_after)

    async def _turn(self, text: str, dtmf: str, interrupt_after: int | None) -> TextReply:
        if self.ended or self.transferred_to is not None:
            raise CallEndedError(
                "the agent already ended this call; open a new TextSession for another call"
            )
        if interrupt_after is not None and interrupt_after < 0:
            raise ValueError("interrupt_after must be >= 0 words")
        start = time.perf_counter()
        turn, u = self.dialogue.open_turn(text, dtmf)

        async def emit(chunk: str) -> None:
            u.parts.append(chunk)

        try:
            await agent_reply(self.agent, turn, emit)
        finally:
            self.dialogue.add_tool_messages(turn, u)
        u.done = True
        heard = u.text
        if interrupt_after is not None and len(u.text.split()) > interrupt_after:
            u.interrupted = True
            heard = first_words(u.text, interrupt_after)
        self.dialogue.resolve(u, heard)
        reply = self._reply(turn, u, text or f"[keypad] {dtmf}", start)
        self.replies.append(reply)
        return reply

    def _reply(self, turn: Turn, u: Utterance, caller: str, start: float) -> TextReply:
        decision = None if u.interrupted else call_decision(u.control, self.dialogue.can_transfer)
        if decision is not None and decision.action == "transfer":
            self.transferred_to = decision.target
        elif decision is not None:
            self.ended = True
        return TextReply(
            turn=turn.index,
            caller=caller,
            text=u.text,
            heard=u.heard,
            interrupted=u.interrupted,
            tool_calls=tool_calls_of(turn.messages),
            ended=decision is not None and decision.action == "end",
            transferred_to=decision.target if decision and decision.action == "transfer" else None,
            seconds=time.perf_counter() - start,
        )


def tool_calls_of(messages: list[dict[str, Any]]) -> list[ToolCallRecord]:
    """The tool calls in a turn's messages (assistant ``tool_calls`` paired with results)."""
    results = {m.get("tool_call_id"): m.get("content") for m in messages if m.get("role") == "tool"}
    out = []
    for m in messages:
        for c in m.get("tool_calls") or ():
            fn = c.get("function", {})
            out.append(
                ToolCallRecord(
                    name=fn.get("name", ""),
                    arguments=_json(fn.get("arguments", "")),
                    result=_json(results.get(c.get("id"))),
                    call_id=c.get("id", ""),
                )
            )
    return out


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
