"""The chat LLM's HTTP client: which library serves which backend, a bounded connection pool
shared by a line's calls, and a runtime that refuses a client its backend cannot run and closes
its agents' pools when it stops."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from e2ekit import interface

from voicegraph import Agent, AgentRuntime
from voicegraph.llm import TextDelta
from voicegraph.nodes.llm import OpenAIChatLLM, _http
from voicegraph.server.warmup import check_clients, close_clients
from voicegraph.testing.fake_chat import FakeChatCompletions

USER = [{"role": "user", "content": "Is the shop open?"}]


async def reply_text(llm: OpenAIChatLLM) -> str:
    return "".join([e.text async for e in llm.stream(USER) if isinstance(e, TextDelta)])


def test_an_unknown_engine_is_refused_naming_both() -> None:
    with pytest.raises(_http.HTTPEngineError, match="'aiohttp' or 'httpx'"):
        OpenAIChatLLM(api_key="k", base_url="http://127.0.0.1:9/v1", engine="requests")


def test_the_environment_variable_is_checked_at_import() -> None:
    with pytest.raises(_http.HTTPEngineError, match="VOICEGRAPH_HTTP_CLIENT='curl'"):
        _http.http_engine_from_env({"VOICEGRAPH_HTTP_CLIENT": "curl"})
    assert _http.http_engine_from_env({}) == "aiohttp"
    assert _http.http_engine_from_env({"VOICEGRAPH_HTTP_CLIENT": "httpx"}) == "httpx"


def test_max_connections_is_bounded() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        OpenAIChatLLM(api_key="k", base_url="http://127.0.0.1:9/v1", max_connections=0)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_trio_streams_a_reply_with_httpx() -> None:
    async with FakeChatCompletions(["We open at nine."]) as fake:
        async with fake.llm() as llm:
            assert await reply_text(llm) == "We open at nine."


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_a_runtime_on_trio_refuses_an_aiohttp_client_before_serving() -> None:
    llm = OpenAIChatLLM(api_key="k", base_url="http://127.0.0.1:9/v1", engine="aiohttp")
    runtime = AgentRuntime(
        [interface("twilio", pipeline="managed", agent=Agent("You answer.", llm))],
        public_url="http://127.0.0.1",
    )
    with pytest.raises(_http.HTTPEngineError, match="engine='httpx'"):
        check_clients(runtime)


@pytest.mark.anyio
@pytest.mark.parametrize("engine", _http.HTTP_ENGINES)
async def test_max_connections_holds_requests_beyond_the_pool(engine: str) -> None:
    async with FakeChatCompletions(["First.", "Second.", "Third."], ttfb=0.2) as fake:
        async with fake.llm(max_connections=1, engine=engine) as llm:
            busiest = 0
            replies: list[str] = []

            async def one() -> None:
                replies.append(await reply_text(llm))

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
                while len(replies) < 3:
                    busiest = max(busiest, fake._active)
                    await anyio.sleep(0.01)
    assert sorted(replies) == ["First.", "Second.", "Third."]
    assert busiest == 1


@pytest.mark.anyio
@pytest.mark.parametrize("engine", _http.HTTP_ENGINES)
async def test_calls_share_the_lines_client_and_the_runtime_closes_it(engine: str) -> None:
    async with FakeChatCompletions(["Yes.", "Until six."]) as fake:
        llm: Any = fake.llm(engine=engine)
        runtime = AgentRuntime(
            [interface("twilio", pipeline="managed", agent=Agent("You answer.", llm))],
            public_url="http://127.0.0.1",
        )
        for iface in runtime.interfaces:  # two calls' agents: copies sharing one client
            first, second = iface.new_agent(), iface.new_agent()
            assert first.llm is second.llm is llm
            assert await reply_text(first.llm) == "Yes."
            assert await reply_text(second.llm) == "Until six."
        assert llm._client is not None
        await close_clients(runtime)
        assert llm._client is None


@pytest.mark.anyio
@pytest.mark.parametrize("engine", _http.HTTP_ENGINES)
async def test_turns_reuse_one_connection(engine: str) -> None:
    """The body's end is read after ``[DONE]``, so the connection goes back to the pool: a
    turn does not pay for a new TCP (and, against the real service, TLS) handshake."""
    async with FakeChatCompletions(["One.", "Two.", "Three."]) as fake:
        async with fake.llm(engine=engine) as llm:
            for expected in ("One.", "Two.", "Three."):
                assert await reply_text(llm) == expected
    assert len(fake.peers) == 3
    assert len(set(fake.peers)) == 1


def test_proxies_come_from_the_environment_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "llm.internal")
    client = _http.StreamingClient(
        headers={}, timeout=1, connect_timeout=1, tls=_http_tls(), max_connections=1
    )
    assert client._proxy("https://api.openai.com/v1/chat/completions") == (
        "http://proxy.internal:3128"
    )
    assert client._proxy("https://llm.internal/v1/chat/completions") is None  # NO_PROXY
    assert client._proxy("http://127.0.0.1:8000/v1/chat/completions") is None  # no HTTP_PROXY
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    # read once per origin: a pool keeps the route it started with, as httpx's client does
    assert client._proxy("http://127.0.0.1:8000/v1/chat/completions") is None
    assert client._proxy("http://127.0.0.1:8001/v1/chat/completions") == (
        "http://proxy.internal:3128"
    )


def _http_tls() -> Any:
    from voicegraph.nodes.llm.openai_chat import _tls_context

    return _tls_context()


_SSE_REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", _http.HTTP_ENGINES)
async def test_a_connection_dropped_before_any_response_is_retried_at_once(engine: str) -> None:
    """The server closes the first connection on receiving the request (as one closing an idle
    kept-alive connection does); the request goes again at once on a new connection, without the
    backoff (an hour here: a wait would hang the test)."""
    import asyncio

    events = (
        b'data: {"choices":[{"index":0,"delta":{"content":"Open."}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    requests: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        requests.append(length)
        if len(requests) > 1:
            writer.write(_SSE_REPLY % (len(events), events))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        llm = OpenAIChatLLM(
            api_key="k", base_url=f"http://127.0.0.1:{port}/v1", engine=engine, backoff=3600
        )
        async with llm:
            with anyio.fail_after(60):
                assert await reply_text(llm) == "Open."
    assert len(requests) == 2
    assert llm.metrics.retries == 1


@pytest.mark.anyio
@pytest.mark.parametrize("engine", _http.HTTP_ENGINES)
async def test_a_redirect_is_not_followed_and_is_reported_as_one(engine: str) -> None:
    """The request carries the API key: neither client follows a 3xx (aiohttp would, to the
    same origin, by default); the error says what to fix."""
    import asyncio

    from voicegraph.llm import LLMError

    paths: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        paths.append(head.split(b" ")[1])
        writer.write(
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /v2/chat/completions\r\n"
            b"content-length: 0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        llm = OpenAIChatLLM(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", engine=engine)
        async with llm:
            with anyio.fail_after(30), pytest.raises(LLMError, match="redirect") as info:
                await reply_text(llm)
    assert info.value.status == 307 and "base_url" in str(info.value)
    assert paths == [b"/v1/chat/completions"]  # asked once, never at the new location


def test_one_client_serves_successive_event_loops() -> None:
    """An LLM that outlives an ``anyio.run`` (a script that runs twice, say) opens a new pool
    on the next loop instead of using sockets of a loop that has gone."""

    async def one(fake: FakeChatCompletions, llm: OpenAIChatLLM) -> str:
        async with fake:
            llm.base_url = fake.base_url
            return await reply_text(llm)

    llm = OpenAIChatLLM(api_key="test-key", base_url="http://127.0.0.1:9/v1", engine="aiohttp")
    first = FakeChatCompletions(["Morning."])
    second = FakeChatCompletions(["Evening."])
    assert anyio.run(one, first, llm) == "Morning."
    assert anyio.run(one, second, llm) == "Evening."
    anyio.run(llm.aclose)
    assert llm._client is None
