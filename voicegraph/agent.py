"""The agent: what decides what to say.

Any object with an async-generator method ``respond(turn)`` that yields text is an agent::

    class Echo:
        async def respond(self, turn: Turn) -> AsyncIterator[str]:
            yield f"You said {turn.text}."

:class:`Agent` is the LLM-backed one: instructions, an :class:`~voicegraph.llm.LLM`, and tools
(``@tool`` functions). Per turn it streams the model's text as it arrives, runs the tools the
model asks for (at most ``max_tool_steps`` rounds; then one last round without tools forces an
answer), and offers the built-in call tools ``end_call`` and ``transfer_call``. A tool that
raises gives the model an error result; it never ends the call.

The conversation node (:mod:`voicegraph.nodes.conversation.agent`) owns the history and records only what
the caller actually heard; ``respond`` gets that history in :attr:`Turn.history`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any, Protocol, runtime_checkable

from .llm import LLM, TextDelta, ToolCall
from .tools import Tool, invoke_by_name, tool

__all__ = ["Agent", "CallControl", "Responder", "Turn"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


class CallControl:
    """What a turn may do to the call besides talking. Set by the conversation node."""

    def __init__(self, can_transfer: bool = True) -> None:
        self.can_transfer = can_transfer
        self.ending: str | None = None
        self.transfer_to: str | None = None

    def end_call(self, last_sentence: str = "") -> None:
        """Say ``last_sentence`` (if any), wait until the caller heard it, then hang up."""
        self.ending = last_sentence

    def transfer_call(self, number: str) -> None:
        """Hand the call to ``number`` (E.164) once the current reply was heard."""
        if not _E164.fullmatch(number):
            raise ValueError(f"transfer number {number!r} is not E.164 (like +15551234567)")
        if not self.can_transfer:
            raise RuntimeError("this carrier connection cannot transfer calls")
        self.transfer_to = number


class Turn:
    """One caller turn, handed to ``respond``.

    ``text``: what the caller said (empty for a keypad-only turn); ``dtmf``: digits pressed;
    ``history``: the conversation so far in OpenAI chat format, holding only what was heard;
    ``call``: :class:`CallControl`; ``messages``: tool-call messages ``respond`` appends, which
    the conversation node adds to the history (they happened, heard or not); ``answered_by``:
    on a call placed with machine detection, ``"human"``, ``"machine"`` or ``"unknown"``
    (``None`` otherwise)."""

    def __init__(
        self,
        text: str,
        history: Sequence[dict[str, Any]],
        call: CallControl,
        dtmf: str = "",
        index: int = 0,
        answered_by: str | None = None,
    ) -> None:
        self.text = text
        self.answered_by = answered_by
        self.dtmf = dtmf
        self.history = list(history)
        self.call = call
        self.index = index
        self.messages: list[dict[str, Any]] = []
        self.utterance_id = 0
        """The timeline turn this reply answers (set by the conversation node)."""
        self.publish: Callable[[Any], None] | None = None
        """Publishes events on the call's bus (set by the conversation node): ``respond``
        reports LLM rounds and tool runs through it for metrics and traces."""
        self.gate: Any = None  # an anyio.Event while the turn is not yet confirmed

    async def confirmed(self) -> None:
        """Wait until the caller's turn is confirmed over. A reply prepared early (see
        voicegraph.nodes.conversation.preemptive) may be thrown away until then: do side effects after this."""
        if self.gate is not None:
            await self.gate.wait()

    @property
    def user_message(self) -> dict[str, Any]:
        if self.dtmf and not self.text:
            return {"role": "user", "content": f"[keypad] {self.dtmf}"}
        return {"role": "user", "content": self.text}


@runtime_checkable
class Responder(Protocol):
    """The agent protocol: ``respond(turn)`` is an async generator of reply text."""

    def respond(self, turn: Turn) -> AsyncIterator[str]: ...


class Agent:
    """An LLM agent with tools.

    ``greeting`` (optional) is what the agent says on connect when the call interface sets none.
    ``max_tool_steps`` bounds tool rounds per turn."""

    def __init__(
        self,
        instructions: str,
        llm: LLM | None = None,
        tools: Sequence[Tool | Any] = (),
        *,
        max_tool_steps: int = 4,
        call_tools: bool = True,
    ) -> None:
        if max_tool_steps < 0:
            raise ValueError("max_tool_steps must be >= 0")
        self.instructions = instructions
        self.llm = llm
        self.tools: list[Tool] = [t if isinstance(t, Tool) else tool(t) for t in tools]
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        self.max_tool_steps = max_tool_steps
        self.call_tools = call_tools

    def __repr__(self) -> str:
        return f"<Agent tools={[t.name for t in self.tools]} llm={type(self.llm).__name__}>"

    def tools_for(self, control: CallControl) -> list[Tool]:
        """The user's tools plus ``end_call``/``transfer_call`` bound to ``control``."""
        if not self.call_tools:
            return list(self.tools)

        def end_call(last_sentence: str = "") -> str:
            """End the phone call. Use when the caller is done or asks to hang up.

            Args:
                last_sentence: A short goodbye to say before hanging up.
            """
            control.end_call(last_sentence)
            return "the call will end after the goodbye"

        def transfer_call(number: str) -> str:
            """Transfer the caller to a human at a phone number.

            Args:
                number: The phone number in E.164 format, e.g. +15551234567.
            """
            control.transfer_call(number)
            return f"transferring to {number}"

        builtin = [Tool(end_call, timeout=5)]
        if control.can_transfer:
            builtin.append(Tool(transfer_call, timeout=5))
        return [*self.tools, *builtin]

    async def respond(self, turn: Turn) -> AsyncIterator[str]:
        """Stream the reply to ``turn``: text as the model produces it; tools run in between."""
        if self.llm is None:
            raise RuntimeError(
                "Agent(llm=None) cannot respond; pass llm=OpenAIChatLLM(...) or use your own respond()"
            )
        tools = self.tools_for(turn.call)
        by_name = {t.name: t for t in tools}
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.instructions},
            *turn.history,
            turn.user_message,
        ]
        schemas = [t.schema() for t in tools] or None
        for step in range(self.max_tool_steps + 1):
            last_round = step == self.max_tool_steps
            calls: list[ToolCall] = []
            said: list[str] = []
            t0, first, outcome = time.monotonic(), 0.0, "cancelled"
            try:
                # aclosing: a cancelled turn closes the model's HTTP stream at once, not at GC
                async with aclosing(
                    self.llm.stream(messages, None if last_round else schemas)
                ) as events:
                    async for ev in events:
                        first = first or time.monotonic()
                        if isinstance(ev, TextDelta):
                            said.append(ev.text)
                            yield ev.text
                        elif isinstance(ev, ToolCall):
                            calls.append(ev)
                outcome = ""
            except Exception:
                outcome = "request_failed"
                raise
            finally:
                if turn.publish is not None:
                    turn.publish(_llm_event(self.llm, turn, t0, first, outcome))
            if not calls:
                break
            await turn.confirmed()  # a preemptive reply runs no tool before confirmation
            call_msg = {
                "role": "assistant",
                "content": "".join(said) or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ],
            }
            messages.append(call_msg)
            turn.messages.append({**call_msg, "content": None})
            for c in calls:
                t0 = time.monotonic()
                result = await invoke_by_name(by_name, c.name, c.arguments)
                if turn.publish is not None:
                    ok = not result.startswith('{"error"')
                    turn.publish(_tool_event(c.name, turn, t0, ok))
                msg = {"role": "tool", "tool_call_id": c.id, "content": result}
                messages.append(msg)
                turn.messages.append(msg)
            if turn.call.ending is not None:
                if turn.call.ending:
                    yield (" " if said else "") + turn.call.ending
                return


def _llm_event(llm: Any, turn: Turn, start: float, first: float, error: str) -> Any:
    from .events import ProviderEvent

    name = getattr(llm, "provider", None) or type(llm).__name__
    return ProviderEvent(
        provider=str(name),
        what="request",
        start=start,
        end=time.monotonic(),
        first=first,
        ok=not error,
        error=error,
        node="agent",
        turn=turn.utterance_id,
    )


def _tool_event(name: str, turn: Turn, start: float, ok: bool) -> Any:
    from .events import ToolEvent

    return ToolEvent(name=name, start=start, end=time.monotonic(), ok=ok, turn=turn.utterance_id)
