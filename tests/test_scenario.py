"""Scenarios: one script, run in text mode and as calls through the fakes."""

from __future__ import annotations

import pytest

from voicegraph import Agent, tool
from voicegraph.testing import (
    ChatReply,
    FakeChatCompletions,
    FakeProviders,
    Scenario,
    ScriptedToolCall,
    serve_app,
)
from voicegraph.testing.fake_openai_realtime import RealtimeReply

pytestmark = pytest.mark.anyio


@tool
def book_table(party: int, time: str) -> str:
    """Book a table.

    Args:
        party: Number of people.
        time: Time, HH:MM.
    """
    return f"booked {party} at {time}"


LONG = "We have a lovely terrace and a quiet room at the back of the house."
CHAT = [
    ChatReply(tool_calls=(ScriptedToolCall("book_table", '{"party": 2, "time": "19:00"}'),)),
    "Booked for two at seven.",
    LONG,
    "Four it is.",
    ChatReply(tool_calls=(ScriptedToolCall("end_call", '{"last_sentence": "Goodbye!"}'),)),
]


def booking() -> Scenario:
    return (
        Scenario("booking")
        .say(
            "a table for two at seven", expect=lambda r: r.assert_tool_called("book_table", party=2)
        )
        .pause(0.2)
        .say("tell me about the rooms", interrupt_after=4)
        .say("make it four", expect=lambda r: r.assert_says("four"))
        .say("that's all", expect=lambda r: r.assert_ended())
    )


async def test_a_scenario_runs_in_text_mode_turn_by_turn() -> None:
    async with FakeChatCompletions(CHAT) as fake:
        result = await booking().run_text(Agent("x", fake.llm(), tools=[book_table]))
    assert result.passed, result.report()
    assert [t.caller for t in result.turns] == booking().lines()
    assert result.turns[1].reply is not None and result.turns[1].reply.heard == "We have a lovely"
    assert all(t.latency is not None and t.latency >= 0 for t in result.turns)


async def test_a_failed_check_fails_its_turn_and_the_report_says_why() -> None:
    script = Scenario("wrong").say("hi", expect=lambda r: r.assert_says("goodbye"))
    async with FakeChatCompletions(["Hello!"]) as fake:
        result = await script.run_text(Agent("x", fake.llm()))
    assert not result.passed
    assert "lacks ['goodbye']" in result.failures[0].error
    assert "FAIL" in result.report()


async def test_hang_up_stops_the_script() -> None:
    script = Scenario().say("hi").hang_up().say("never said")
    async with FakeChatCompletions(["Hello!"]) as fake:
        result = await script.run_text(Agent("x", fake.llm()))
    assert [t.caller for t in result.turns] == ["hi"]


async def test_repeated_runs_report_a_pass_rate() -> None:
    answers = iter(["Yes, we are open.", "No idea.", "Yes, open till ten."])
    script = Scenario().say("are you open?", expect=lambda r: r.assert_says("open"))
    async with FakeChatCompletions([lambda _messages: next(answers)] * 3) as fake:
        rate = await Scenario.pass_rate(lambda: script.run_text(Agent("x", fake.llm())), runs=3)
    assert (rate.runs, rate.passed) == (3, 2)
    assert rate.rate == pytest.approx(2 / 3)


async def test_the_same_script_runs_as_a_managed_call() -> None:
    script = booking()
    async with FakeProviders(lines=script.lines(), chat=CHAT) as fakes:
        agent = Agent("x", fakes.llm(), tools=[book_table])
        async with serve_app(fakes.line(agent, pipeline="managed")) as app:
            result = await script.run_call(app)
    assert result.passed, result.report()
    assert result.mode == "call:managed/twilio"
    assert result.turns[1].reply is not None and result.turns[1].reply.heard == "We have a lovely"


@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_the_same_script_runs_as_a_cascading_call(carrier: str) -> None:
    script = booking()
    async with FakeProviders(lines=script.lines(), chat=CHAT) as fakes:
        agent = Agent("x", fakes.llm(), tools=[book_table])
        async with serve_app(fakes.line(agent, telephony=carrier)) as app:
            result = await script.run_call(app)
    assert result.passed, result.report()
    interrupted = result.turns[1].reply
    assert interrupted is not None and interrupted.interrupted
    assert LONG.startswith(interrupted.heard) and interrupted.heard != LONG
    assert all(t.latency is not None for t in result.turns)


REALTIME = [
    RealtimeReply(tool="book_table", arguments='{"party": 2, "time": "19:00"}'),
    "Booked for two at seven.",
    "Four it is.",
    RealtimeReply(tool="end_call", arguments='{"last_sentence": "Goodbye!"}'),
    "Goodbye!",
]


def realtime_booking() -> Scenario:
    return (
        Scenario("booking")
        .say(
            "a table for two at seven",
            expect=lambda r: (
                r.assert_tool_called("book_table", party=2, time="19:00"),
                r.assert_says("booked for two"),
            ),
        )
        .say("make it four", expect=lambda r: r.assert_says("four"))
        .say("that's all", expect=lambda r: r.assert_ended())
    )


async def test_a_script_runs_as_a_realtime_call_with_its_tool_calls_and_hang_up() -> None:
    script = realtime_booking()
    async with FakeProviders(lines=script.lines(), realtime=REALTIME) as fakes:
        agent = Agent("x", tools=[book_table])
        async with serve_app(fakes.line(agent, pipeline="realtime")) as app:
            result = await script.run_call(app)
    assert result.passed, result.report()
    assert result.mode == "call:realtime/twilio"
    first = result.turns[0].reply
    assert first is not None and [c.name for c in first.tool_calls] == ["book_table"]
    assert first.tool_calls[0].result == "booked 2 at 19:00"
    assert result.turns[2].reply is not None and result.turns[2].reply.ended


async def test_a_realtime_scenario_refuses_an_interruption_after_n_words() -> None:
    script = Scenario().say("tell me about the rooms", interrupt_after=4)
    async with FakeProviders(lines=script.lines(), realtime=[LONG]) as fakes:
        async with serve_app(fakes.line(Agent("x"), pipeline="realtime")) as app:
            with pytest.raises(ValueError, match="interrupt_after needs"):
                await script.run_call(app)
