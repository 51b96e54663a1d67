"""Agent and tools: schemas from type hints, validated arguments, tool rounds, call tools."""

from __future__ import annotations

import json
from typing import Literal

import msgspec
import pytest

from voicegraph import Agent, CallControl, Turn, tool
from voicegraph.nodes.llm import OpenAIChatLLM
from voicegraph.testing.fake_chat import ChatReply, FakeChatCompletions, ScriptedToolCall
from voicegraph.tools import Tool, ToolError


@tool
async def lookup_order(order_id: str, include_items: bool = False) -> dict[str, object]:
    """Look up an order by its id.

    Args:
        order_id: The order number, like A-123.
        include_items: Whether to list the items.
    """
    if order_id == "boom":
        raise RuntimeError("database down")
    return {"id": order_id, "status": "shipped"}


@tool
def book_table(party: int, time: Literal["18:00", "19:00"]) -> str:
    """Book a table."""
    if party > 8:
        raise ToolError("we seat at most 8")
    return f"booked {party} at {time}"


def test_schema_comes_from_type_hints_and_docstring() -> None:
    fn = lookup_order.schema()["function"]
    assert fn["name"] == "lookup_order"
    assert fn["description"] == "Look up an order by its id."
    params = fn["parameters"]
    assert params["required"] == ["order_id"]
    assert params["properties"]["order_id"] == {
        "type": "string",
        "description": "The order number, like A-123.",
    }
    assert params["properties"]["include_items"]["type"] == "boolean"
    assert params["additionalProperties"] is False
    assert book_table.schema()["function"]["parameters"]["properties"]["time"] == {
        "enum": ["18:00", "19:00"]
    }


@pytest.mark.anyio
async def test_invoke_validates_arguments_and_runs_sync_and_async_tools() -> None:
    assert json.loads(await lookup_order.invoke('{"order_id": "A-1"}')) == {
        "id": "A-1",
        "status": "shipped",
    }
    assert (
        json.loads(await book_table.invoke('{"party": 2, "time": "19:00"}')) == "booked 2 at 19:00"
    )
    bad = json.loads(await book_table.invoke('{"party": "two", "time": "19:00"}'))
    assert "Expected `int`" in bad["error"] and "$.party" in bad["error"]
    assert "not valid JSON" in json.loads(await book_table.invoke("{nope"))["error"]
    assert (
        "unknown field"
        in json.loads(await book_table.invoke('{"party": 2, "time": "18:00", "x": 1}'))[
            "error"
        ].lower()
    )


@pytest.mark.anyio
async def test_a_raising_tool_returns_an_error_result() -> None:
    assert json.loads(await lookup_order.invoke('{"order_id": "boom"}')) == {
        "error": "lookup_order failed: RuntimeError: database down"
    }
    assert json.loads(await book_table.invoke('{"party": 9, "time": "18:00"}')) == {
        "error": "we seat at most 8"
    }


def test_tools_need_docstrings_and_type_hints() -> None:
    def nodoc(x: int) -> int:
        return x

    def nohint(x):  # type: ignore[no-untyped-def]
        """Doc."""
        return x

    with pytest.raises(ValueError, match="needs a docstring"):
        Tool(nodoc)
    with pytest.raises(TypeError, match="needs a type hint"):
        Tool(nohint)
    assert lookup_order.fn.__name__ == "lookup_order"


async def _collect(agent: Agent, turn: Turn) -> str:
    return "".join([chunk async for chunk in agent.respond(turn)])


@pytest.mark.anyio
async def test_agent_runs_a_tool_and_streams_the_answer() -> None:
    replies = [
        ChatReply(
            text="Let me check. ",
            tool_calls=(ScriptedToolCall("lookup_order", '{"order_id": "A-7"}', "call_1"),),
        ),
        "Your order A-7 has shipped.",
    ]
    async with FakeChatCompletions(replies) as fake:
        agent = Agent(
            "You are a shop.",
            llm=OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url),
            tools=[lookup_order],
        )
        turn = Turn("where is my order A-7", [], CallControl())
        said = await _collect(agent, turn)
    assert said == "Let me check. Your order A-7 has shipped."
    second = fake.requests[1]
    roles = [m.role for m in second.messages]
    assert roles == ["system", "user", "assistant", "tool"]
    assert json.loads(second.messages[3].content) == {"id": "A-7", "status": "shipped"}
    assert [m["role"] for m in turn.messages] == ["assistant", "tool"]
    names = [t.function.name for t in fake.requests[0].tools]
    assert names == ["lookup_order", "end_call", "transfer_call"]


@pytest.mark.anyio
async def test_tool_rounds_are_bounded_and_the_last_round_has_no_tools() -> None:
    loop = ChatReply(tool_calls=(ScriptedToolCall("lookup_order", '{"order_id": "A"}'),))
    async with FakeChatCompletions([loop, loop, "Done."]) as fake:
        agent = Agent(
            "x",
            llm=OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url),
            tools=[lookup_order],
            max_tool_steps=2,
        )
        said = await _collect(agent, Turn("hi", [], CallControl()))
    assert said == "Done."
    assert len(fake.requests) == 3
    assert fake.requests[2].tools in (None, [])


@pytest.mark.anyio
async def test_end_call_tool_sets_the_goodbye_and_stops_the_turn() -> None:
    bye = ChatReply(tool_calls=(ScriptedToolCall("end_call", '{"last_sentence": "Goodbye!"}'),))
    async with FakeChatCompletions([bye]) as fake:
        agent = Agent("x", llm=OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url))
        control = CallControl()
        said = await _collect(agent, Turn("that's all", [], control))
    assert said == "Goodbye!"
    assert control.ending == "Goodbye!"
    assert len(fake.requests) == 1


@pytest.mark.anyio
async def test_transfer_call_validates_the_number() -> None:
    control = CallControl()
    with pytest.raises(ValueError, match="not E.164"):
        control.transfer_call("555-1234")
    control.transfer_call("+15551234567")
    assert control.transfer_to == "+15551234567"
    assert [t.name for t in Agent("x", tools=[]).tools_for(CallControl(can_transfer=False))] == [
        "end_call"
    ]


def test_duplicate_tool_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        Agent("x", tools=[lookup_order, lookup_order])


def test_dtmf_turn_becomes_a_keypad_message() -> None:
    assert Turn("", [], CallControl(), dtmf="5").user_message == {
        "role": "user",
        "content": "[keypad] 5",
    }
    assert msgspec.json.decode(msgspec.json.encode(Turn("hi", [], CallControl()).user_message)) == {
        "role": "user",
        "content": "hi",
    }


@pytest.mark.anyio
async def test_an_unknown_tool_name_is_an_error_result_in_valid_json() -> None:
    from voicegraph.tools import invoke_by_name

    out = json.loads(await invoke_by_name({"book_table": book_table}, 'x"y', "{}"))
    assert out == {"error": "no tool named 'x\"y'; available: book_table"}
