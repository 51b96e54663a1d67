"""OpenAIChatLLM against FakeChatCompletions: streaming, tool calls, errors, retries, faults."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from voicegraph.llm import LLM, Finish, LLMError, TextDelta, ToolCall
from voicegraph.nodes.llm import OpenAIChatLLM, _http
from voicegraph.testing.fake_chat import ChatFault, ChatReply, FakeChatCompletions, ScriptedToolCall

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=_http.HTTP_ENGINES)
def http_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on each asyncio HTTP client (the process default is patched)."""
    monkeypatch.setattr(_http, "DEFAULT_HTTP_ENGINE", request.param)
    return str(request.param)


USER = [{"role": "user", "content": "What is the status of order 42?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by id",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


def client(fake: FakeChatCompletions, **kw: Any) -> OpenAIChatLLM:
    kw.setdefault("backoff", 0.01)
    return OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url, **kw)


async def collect(llm: LLM, messages: list[dict[str, Any]], tools: Any = None) -> list[Any]:
    return [ev async for ev in llm.stream(messages, tools)]


async def test_text_reply_streams_as_deltas_then_finish_with_usage() -> None:
    async with FakeChatCompletions(["Your order shipped yesterday."]) as fake:
        async with client(fake) as llm:
            events = await collect(llm, USER)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == "Your order shipped yesterday."
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "stop"
    assert events[-1].usage is not None and events[-1].usage["completion_tokens"] > 0


async def test_tool_call_is_assembled_from_argument_deltas() -> None:
    args = json.dumps({"order_id": "42", "include_history": True})
    reply = ChatReply(tool_calls=(ScriptedToolCall("lookup_order", args, id="call_1"),))
    async with FakeChatCompletions([reply]) as fake:
        async with client(fake) as llm:
            events = await collect(llm, USER, TOOLS)
    assert events[-2:] == [
        ToolCall("call_1", "lookup_order", args),
        Finish("tool_calls", events[-1].usage),
    ]


async def test_text_and_parallel_tool_calls_arrive_in_order() -> None:
    reply = ChatReply(
        text="Let me check.",
        tool_calls=(
            ScriptedToolCall("lookup_order", '{"order_id": "1"}', id="a"),
            ScriptedToolCall("lookup_order", '{"order_id": "2"}', id="b"),
        ),
    )
    async with FakeChatCompletions([reply]) as fake:
        async with client(fake) as llm:
            events = await collect(llm, USER, TOOLS)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [c.id for c in calls] == ["a", "b"]
    assert [json.loads(c.arguments)["order_id"] for c in calls] == ["1", "2"]
    text_end = max(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert text_end < events.index(calls[0])


async def test_request_carries_model_messages_tools_and_bearer_key() -> None:
    async with FakeChatCompletions(["ok"], api_key="sk-secret-123") as fake:
        async with client(fake, model="my-model") as llm:
            await collect(llm, USER, TOOLS)
    (req,) = fake.requests
    assert req.model == "my-model"
    assert req.stream is True
    assert req.messages is not None and req.messages[0].content == USER[0]["content"]
    assert req.tools is not None and req.tools[0].function.name == "lookup_order"
    assert req.authorization == "Bearer sk-...13"


async def test_tool_results_round_trip_is_accepted_by_the_fake() -> None:
    history = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id": "42"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
    ]
    async with FakeChatCompletions(["It shipped."]) as fake:
        async with client(fake) as llm:
            events = await collect(llm, history, TOOLS)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It shipped."


async def test_callable_script_sees_the_messages() -> None:
    def echo(messages: list[dict[str, Any]]) -> str:
        return f"You said: {messages[-1]['content']}"

    async with FakeChatCompletions([echo]) as fake:
        async with client(fake) as llm:
            events = await collect(llm, [{"role": "user", "content": "hello"}])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "You said: hello"


async def test_wrong_key_raises_401_without_revealing_the_key() -> None:
    async with FakeChatCompletions(["never"], api_key="right-key") as fake:
        async with OpenAIChatLLM(api_key="wrong-key-xyz", base_url=fake.base_url) as llm:
            with pytest.raises(LLMError) as info:
                await collect(llm, USER)
    assert info.value.status == 401
    assert "Incorrect API key" in info.value.message
    assert "wrong-key-xyz" not in str(info.value)
    assert len(fake.requests) == 1  # auth errors are not retried


async def test_unknown_role_is_rejected_with_the_servers_message() -> None:
    async with FakeChatCompletions(["never"]) as fake:
        async with client(fake) as llm:
            with pytest.raises(LLMError) as info:
                await collect(llm, [{"role": "robot", "content": "hi"}])
    assert info.value.status == 400
    assert "Invalid value: 'robot'" in info.value.message


async def test_tool_message_without_preceding_tool_call_is_rejected() -> None:
    bad = [*USER, {"role": "tool", "tool_call_id": "call_9", "content": "{}"}]
    async with FakeChatCompletions(["never"]) as fake:
        async with client(fake) as llm:
            with pytest.raises(LLMError) as info:
                await collect(llm, bad)
    assert info.value.status == 400
    assert "must be a response to a preceeding message with 'tool_calls'" in info.value.message


async def test_invalid_tool_name_is_rejected() -> None:
    tools = [
        {"type": "function", "function": {"name": "look up", "parameters": {"type": "object"}}}
    ]
    async with FakeChatCompletions(["never"]) as fake:
        async with client(fake) as llm:
            with pytest.raises(LLMError) as info:
                await collect(llm, USER, tools)
    assert info.value.status == 400
    assert "tools[0].function.name" in info.value.message


async def test_unknown_model_gives_404() -> None:
    async with FakeChatCompletions(["never"], models=["gpt-4o-mini"]) as fake:
        async with client(fake, model="gpt-nope") as llm:
            with pytest.raises(LLMError) as info:
                await collect(llm, USER)
    assert info.value.status == 404
    assert "gpt-nope" in info.value.message


async def test_server_error_before_first_byte_is_retried() -> None:
    faults = [ChatFault("status", status=503)]
    async with FakeChatCompletions(["recovered"], faults=faults) as fake:
        async with client(fake, max_retries=2) as llm:
            events = await collect(llm, USER)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "recovered"
    assert len(fake.requests) == 2
    assert llm.metrics.retries == 1


async def test_retries_are_bounded() -> None:
    faults = [ChatFault("status", status=503, times=10)]
    async with FakeChatCompletions(["never"], faults=faults) as fake:
        async with client(fake, max_retries=2) as llm:
            with pytest.raises(LLMError) as info:
                await collect(llm, USER)
    assert info.value.status == 503
    assert len(fake.requests) == 3


async def test_close_mid_stream_raises_and_is_not_retried() -> None:
    faults = [ChatFault("close_mid_stream", after_chunks=3)]
    async with FakeChatCompletions(["one two three four five six"], faults=faults) as fake:
        async with client(fake, max_retries=2) as llm:
            got: list[Any] = []
            with pytest.raises(LLMError, match="broken mid-reply|ended before"):
                async for ev in llm.stream(USER):
                    got.append(ev)
    assert got and all(isinstance(e, TextDelta) for e in got)
    assert len(fake.requests) == 1


async def test_stalled_stream_raises_after_the_read_timeout() -> None:
    faults = [ChatFault("stall", after_chunks=2)]
    async with FakeChatCompletions(["one two three"], faults=faults) as fake:
        async with client(fake, timeout=0.3) as llm:
            with pytest.raises(LLMError, match="stalled"):
                await collect(llm, USER)


async def test_malformed_chunk_raises() -> None:
    faults = [ChatFault("malformed_chunk", after_chunks=2)]
    async with FakeChatCompletions(["one two three"], faults=faults) as fake:
        async with client(fake) as llm:
            with pytest.raises(LLMError, match="malformed"):
                await collect(llm, USER)


async def test_leaving_the_stream_early_closes_the_response() -> None:
    words = " ".join(f"w{i}" for i in range(200))
    async with FakeChatCompletions([words], tokens_per_second=200) as fake:
        async with client(fake) as llm:
            async with aclosing(llm.stream(USER)) as stream:
                async for _ in stream:
                    break
            with anyio.fail_after(5):
                await fake.wait_idle()
    assert (fake.disconnected, fake.completed) == (1, 0)


async def test_time_to_first_token_is_recorded() -> None:
    async with FakeChatCompletions(["hi"], ttfb=0.05) as fake:
        async with client(fake) as llm:
            await collect(llm, USER)
    assert len(llm.metrics.ttft) == 1
    assert llm.metrics.ttft[0] >= 0.05


async def test_exhausted_script_is_reported_not_papered_over() -> None:
    async with FakeChatCompletions([]) as fake:
        async with client(fake, max_retries=0) as llm:
            with pytest.raises(LLMError, match="script exhausted"):
                await collect(llm, USER)


def test_openai_url_without_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIChatLLM()


def test_key_comes_from_env_and_stays_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret")
    llm = OpenAIChatLLM()
    assert "sk-env-secret" not in repr(llm)
    assert "sk-env-secret" not in repr(vars(llm))


def test_client_satisfies_the_llm_protocol() -> None:
    assert isinstance(OpenAIChatLLM(api_key="k", base_url="http://127.0.0.1:1/v1"), LLM)
