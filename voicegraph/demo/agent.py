"""The demo's front desk: an LLM-free agent that books restaurant tables.

It is written with the same API as any agent: an object with an async-generator
``respond(turn)``, typed ``@tool`` functions invoked with validated JSON arguments, and
``turn.call.end_call(...)`` to hang up once the goodbye was heard. Intents are matched by
keywords in what the speech recogniser heard, so the demo needs no model and no network.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from voicegraph.agent import Turn
from voicegraph.tools import Tool, ToolError, tool

__all__ = ["GRAMMAR", "GREETING", "FrontDesk", "ToolCallRecord"]

GREETING = "Thanks for calling the Blue Door restaurant. How can I help you?"

GRAMMAR = """#JSGF V1.0;
grammar frontdesk;
public <say> = <book> | <change> | <done>;
<num> = one | two | three | four | five | six | seven | eight | nine | ten;
<book> = [i would like to] book a table for <num> [people] [at <num>];
<change> = [wait] [no] make it <num> [people];
<done> = that's all [thank you] | thank you | goodbye;
"""
"""What the demo's speech recogniser listens for (JSGF). pocketsphinx's general model does
poorly on 8 kHz telephone audio; a grammar of the front desk's requests keeps it usable."""

_NUMBERS = {
    w: n
    for n, w in enumerate(
        ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"), 1
    )
}
_MAX_PARTY = 12


class ToolCallRecord(msgspec.Struct, frozen=True):
    """One tool invocation: its name, JSON arguments and JSON result."""

    name: str
    arguments: str
    result: str


def _numbers(text: str) -> list[int]:
    out = []
    for tok in re.findall(r"[a-z0-9']+", text.lower()):
        if tok.isdigit():
            out.append(int(tok))
        elif tok in _NUMBERS:
            out.append(_NUMBERS[tok])
    return out


def _has(text: str, *words: str) -> bool:
    padded = " " + " ".join(re.findall(r"[a-z0-9']+", text.lower())) + " "
    return any(f" {w} " in padded for w in words)


class FrontDesk:
    """Books one table per call and changes its party size, then says goodbye.

    ``on_tool(record)`` is called after every tool invocation (the demo prints it).
    :attr:`tool_calls` keeps them all; :attr:`booking` is the current booking, if any."""

    def __init__(self, on_tool: Callable[[ToolCallRecord], None] | None = None) -> None:
        self.on_tool = on_tool
        self.tool_calls: list[ToolCallRecord] = []
        self.booking: dict[str, Any] | None = None
        self._codes = 0

        @tool
        def book_table(party_size: int, time: str = "19:30") -> dict[str, Any]:
            """Book a table for tonight.

            Args:
                party_size: How many people (1 to 12).
                time: The time, 24-hour HH:MM.
            """
            if not 1 <= party_size <= _MAX_PARTY:
                raise ToolError(f"we seat parties of 1 to {_MAX_PARTY}, not {party_size}")
            self._codes += 1
            self.booking = {
                "code": f"BD-{100 + self._codes}",
                "party_size": party_size,
                "time": time,
            }
            return dict(self.booking)

        @tool
        def change_party_size(code: str, party_size: int) -> dict[str, Any]:
            """Change how many people a booking is for.

            Args:
                code: The booking's confirmation code.
                party_size: The new number of people (1 to 12).
            """
            if self.booking is None or self.booking["code"] != code:
                raise ToolError(f"no booking {code!r}")
            if not 1 <= party_size <= _MAX_PARTY:
                raise ToolError(f"we seat parties of 1 to {_MAX_PARTY}, not {party_size}")
            self.booking["party_size"] = party_size
            return dict(self.booking)

        self.tools: list[Tool] = [book_table, change_party_size]
        self._by_name = {t.name: t for t in self.tools}

    def __repr__(self) -> str:
        return f"<FrontDesk booking={self.booking!r}>"

    async def _call(self, name: str, **arguments: Any) -> dict[str, Any]:
        args = msgspec.json.encode(arguments).decode()
        result = await self._by_name[name].invoke(args)
        record = ToolCallRecord(name, args, result)
        self.tool_calls.append(record)
        if self.on_tool is not None:
            self.on_tool(record)
        value = msgspec.json.decode(result)
        if isinstance(value, dict) and "error" in value:
            raise ToolError(str(value["error"]))
        return value  # type: ignore[no-any-return]

    async def respond(self, turn: Turn) -> AsyncIterator[str]:
        """One reply: book, change the party size, or say goodbye, by keywords."""
        text = turn.text
        numbers = [n for n in _numbers(text) if 1 <= n <= _MAX_PARTY]
        if _has(text, "that's", "all", "thank", "goodbye", "bye"):
            goodbye = "You're welcome. See you tonight, goodbye!"
            turn.call.end_call(goodbye)
            yield goodbye
            return
        if self.booking is not None and numbers and _has(text, "make", "wait", "change", "people"):
            try:
                b = await self._call(
                    "change_party_size", code=self.booking["code"], party_size=numbers[0]
                )
            except ToolError as exc:
                yield f"Sorry, I could not change that: {exc}."
                return
            yield f"No problem, the table is now for {_spoken(b['party_size'])}. "
            yield "Anything else?"
            return
        if _has(text, "book", "table", "like") or (numbers and self.booking is None):
            yield "Let me check. "
            if not numbers:
                # said aloud, so the caller can correct it; the history keeps what was heard
                yield "I did not catch how many, so I am booking for two. "
            try:
                b = await self._call("book_table", party_size=numbers[0] if numbers else 2)
            except ToolError as exc:
                yield f"Sorry, I could not book that: {exc}."
                return
            yield f"Done: a table for {_spoken(b['party_size'])} tonight at seven thirty. "
            yield f"Your confirmation code is {' '.join(b['code'].replace('-', ''))}. "
            yield "We hold tables for fifteen minutes, parking is free after six, "
            yield "and the kitchen is open until eleven."
            return
        yield "Sorry, I did not catch that. I can book you a table for tonight; "
        yield "just tell me how many people are coming."


def _spoken(n: int) -> str:
    return f"{n} people" if n != 1 else "one person"
