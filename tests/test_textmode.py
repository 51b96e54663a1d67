"""Text mode: the call's turn logic (tools, call control, heard-only history) without audio."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voicegraph import Agent, tool
from voicegraph.agent import Turn
from voicegraph.testing import (
    CallEndedError,
    ChatReply,
    FakeChatCompletions,
    ScriptedToolCall,
    TextSession,
)

pytestmark = pytest.mark.anyio

BOOKINGS: list[tuple[int, str]] = []


@tool
def book_table(party: int, time: str) -> dict[str, object]:
    """Book a table.

    Args:
        party: Number of people.
        time: Time, HH:MM.
    """
    BOOKINGS.append((party, time))
    return {"booked": True, "party": party}


def call(name: str, arguments: str) -> ChatReply:
    return ChatReply(tool_calls=(ScriptedToolCall(name, arguments),))


async def test_a_reply_reports_its_text_and_the_tool_calls_with_arguments_and_results() -> None:
    BOOKINGS.clear()
    script = [call("book_table", '{"party": 2, "time": "19:00"}'), "Booked for two at seven."]
    async with FakeChatCompletions(script) as fake:
        agent = Agent("You take bookings.", fake.llm(), tools=[book_table])
        async with TextSession(agent) as s:
            reply = await s.say("a table for two at seven")
    assert reply.text == "Booked for two at seven."
    (record,) = reply.tool_calls
    assert (record.name, record.arguments) == ("book_table", {"party": 2, "time": "19:00"})
    assert record.result == {"booked": True, "party": 2}
    assert BOOKINGS == [(2, "19:00")]
    reply.assert_tool_called("book_table", party=2)
    reply.assert_says("booked", "seven")
    reply.assert_continues()


async def test_assertion_helpers_fail_with_what_happened_instead() -> None:
    async with FakeChatCompletions(
        [call("book_table", '{"party": 2, "time": "19:00"}'), "Done."]
    ) as fake:
        async with TextSession(Agent("x", fake.llm(), tools=[book_table])) as s:
            reply = await s.say("two at seven")
    with pytest.raises(AssertionError, match=r"no call book_table\(party=4\).*party': 2"):
        reply.assert_tool_called("book_table", party=4)
    with pytest.raises(AssertionError, match="lacks"):
        reply.assert_says("tomorrow")
    with pytest.raises(AssertionError, match="did not end"):
        reply.assert_ended()
    with pytest.raises(AssertionError, match="expected no tool call"):
        reply.assert_no_tool_called()


async def test_end_call_ends_the_session_after_the_goodbye() -> None:
    script = [call("end_call", '{"last_sentence": "Goodbye!"}')]
    async with FakeChatCompletions(script) as fake:
        async with TextSession(Agent("x", fake.llm())) as s:
            bye = await s.say("that's all")
            bye.assert_ended()
            assert bye.text == "Goodbye!"
            with pytest.raises(CallEndedError):
                await s.say("hello?")
    assert s.ended


async def test_transfer_call_is_reported_with_its_number() -> None:
    script = [call("transfer_call", '{"number": "+15551234567"}'), "Putting you through."]
    async with FakeChatCompletions(script) as fake:
        async with TextSession(Agent("x", fake.llm())) as s:
            reply = await s.say("a human please")
    reply.assert_transferred("+15551234567")
    assert s.transferred_to == "+15551234567"


async def test_a_session_that_cannot_transfer_does_not_offer_transfer_call() -> None:
    async with FakeChatCompletions(["No."]) as fake:
        async with TextSession(Agent("x", fake.llm()), can_transfer=False) as s:
            await s.say("a human please")
        offered = [t.function.name for t in fake.requests[0].tools or ()]
    assert offered == ["end_call"]


async def test_an_interruption_keeps_only_the_heard_words_in_the_history() -> None:
    long = "We have a lovely terrace and a quiet room at the back."
    async with FakeChatCompletions([long, "Four it is."]) as fake:
        async with TextSession(Agent("x", fake.llm())) as s:
            cut = await s.say("tell me about the rooms", interrupt_after=4)
            await s.say("make it four")
        second = [(m.role, m.content) for m in fake.requests[1].messages or ()]
    assert cut.interrupted and cut.heard == "We have a lovely"
    assert ("assistant", "We have a lovely") in second
    assert ("assistant", long) not in second


async def test_an_interrupted_goodbye_does_not_hang_up() -> None:
    script = [call("end_call", '{"last_sentence": "Goodbye and thanks for calling!"}')]
    async with FakeChatCompletions(script) as fake:
        async with TextSession(Agent("x", fake.llm())) as s:
            reply = await s.say("bye", interrupt_after=1)
    reply.assert_continues()
    assert not s.ended


async def test_a_greeting_is_in_the_history_the_model_sees() -> None:
    async with FakeChatCompletions(["Sure."]) as fake:
        async with TextSession(Agent("x", fake.llm()), greeting="Luigi's, hello.") as s:
            await s.say("hi")
        messages = [(m.role, m.content) for m in fake.requests[0].messages or ()]
    assert messages[1:] == [("assistant", "Luigi's, hello."), ("user", "hi")]


async def test_keypad_input_is_a_turn() -> None:
    async with FakeChatCompletions(["You pressed one."]) as fake:
        async with TextSession(Agent("x", fake.llm())) as s:
            reply = await s.press("1")
        last = (fake.requests[0].messages or [])[-1]
    assert reply.text == "You pressed one."
    assert last.content == "[keypad] 1"


async def test_an_agent_that_fails_apologises_as_on_a_call() -> None:
    class Broken:
        async def respond(self, turn: Turn) -> AsyncIterator[str]:
            raise RuntimeError("database down")
            yield ""  # pragma: no cover

    async with TextSession(Broken()) as s:
        reply = await s.say("hello")
    reply.assert_says("something went wrong")


async def test_any_responder_runs_in_text_mode() -> None:
    class Echo:
        async def respond(self, turn: Turn) -> AsyncIterator[str]:
            yield f"You said {turn.text}, after {len(turn.history)} messages."

    async with TextSession(Echo()) as s:
        await s.say("one")
        reply = await s.say("two")
    assert reply.text == "You said two, after 2 messages."
