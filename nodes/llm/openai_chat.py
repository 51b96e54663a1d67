"""Streaming chat completions against any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama...).

Implements :class:`voicegraph.llm.LLM` over HTTP (aiohttp on asyncio, httpx on Trio; see
:mod:`._http`): ``POST {base_url}/chat/completions`` with ``stream: true``, parsing the
server-sent events (``data: {chunk}`` lines, ending with ``data: [DONE]``) into typed chunks at
the boundary.
"""

from __future__ import annotations

import logging
import math
import os
import random
import ssl
import time
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import msgspec

from voicegraph.llm import (
    Finish,
    LLMError,
    LLMEvent,
    LLMMetrics,
    LLMStalled,
    TextDelta,
    ToolCall,
)

from ..providers.base import Secret
from ._chat_wire import chunk_decoder as _chunk_decoder, error_decoder as _error_decoder
from ._http import HTTPEngineError, Reply, StreamingClient, TransportFailure, check_http_engine

__all__ = ["OpenAIChatLLM"]

log = logging.getLogger("voicegraph.nodes.llm.openai_chat")

OPENAI_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_DRAIN_S = 0.5  # longest wait for a body's end after [DONE]


class _Pending:
    """A tool call being assembled from deltas."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


# ------------------------------------------------------------------------ client


_tls: list[ssl.SSLContext] = []


def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client of the process (httpx's default verification). Each
    call's client would otherwise load the CA bundle again: ~25 ms of CPU that stalls every
    other call on the event loop."""
    if not _tls:
        import httpx

        _tls.append(httpx.create_ssl_context())
    return _tls[0]


class OpenAIChatLLM:
    """A streaming chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``api_key`` defaults to ``$OPENAI_API_KEY``; it is required for OpenAI's own URL and optional
    elsewhere (a local vLLM or Ollama needs none). It is sent only in the ``Authorization``
    header, never logged or shown in errors or ``repr``.

    ``timeout`` bounds connecting and each wait for the next chunk (a stalled stream raises
    :class:`~voicegraph.llm.LLMError`). ``first_token_timeout`` (default 10 s; ``None``: off)
    is the liveness watchdog: a request whose first event has not arrived by then is abandoned
    and sent once more (nothing was said yet, so the retry repeats nothing); a second stall
    raises :class:`~voicegraph.llm.LLMStalled`, which ends the call with an apology. Failures before the response starts (connection errors,
    408/409/429/5xx) are retried up to ``max_retries`` times with jittered exponential backoff
    (a connection dropped before any response is retried once at once: most often it is a pooled
    connection the server had just closed);
    once a reply has started streaming, a failure raises instead, because a retry would repeat
    text the caller may already have heard. ``max_reply_chars`` bounds one reply.

    The HTTP connection pool is kept between turns; call :meth:`aclose` (or use
    ``async with``) when done.
    """

    provider = "openai-chat"

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        api_key: str | None = None,
        base_url: str = OPENAI_BASE_URL,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        temperature: float | None = None,
        max_tokens: int | None = None,
        include_usage: bool = True,
        max_reply_chars: int = 100_000,
        extra_body: dict[str, Any] | None = None,
        first_token_timeout: float | None = 10.0,
        max_connections: int = 1000,
        engine: str | None = None,
    ) -> None:
        if not model:
            raise ValueError("OpenAIChatLLM needs a model name, e.g. model='gpt-4o-mini'")
        if max_retries < 0 or max_retries > 10:
            raise ValueError(f"max_retries must be between 0 and 10, got {max_retries}")
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        base = base_url.rstrip("/")
        if not key and base == OPENAI_BASE_URL:
            raise ValueError(
                "OpenAIChatLLM needs an API key for api.openai.com: pass api_key= or set "
                "OPENAI_API_KEY"
            )
        self.model = model
        self.base_url = base
        self._key = Secret(key, "argument" if api_key else "$OPENAI_API_KEY") if key else None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.include_usage = include_usage
        self.max_reply_chars = max_reply_chars
        self.extra_body = dict(extra_body or {})
        if first_token_timeout is not None and first_token_timeout <= 0:
            raise ValueError("first_token_timeout must be above 0 seconds (or None: off)")
        self.first_token_timeout = first_token_timeout
        if not 1 <= max_connections <= 100_000:
            raise ValueError(f"max_connections must be between 1 and 100000, got {max_connections}")
        self.max_connections = max_connections
        self.engine = None if engine is None else check_http_engine(engine)
        self.metrics = LLMMetrics()
        self._client: StreamingClient | None = None

    def __repr__(self) -> str:
        return f"OpenAIChatLLM(model={self.model!r}, base_url={self.base_url!r})"

    def check_backend(self, backend: str) -> None:
        """Raise :class:`~voicegraph.nodes.llm._http.HTTPEngineError` if ``engine`` cannot run on
        ``backend`` (``"asyncio"`` or ``"trio"``); the runtime calls this before serving."""
        if backend == "trio" and self.engine == "aiohttp":
            raise HTTPEngineError(
                "OpenAIChatLLM(engine='aiohttp') runs on asyncio only; on Trio pass "
                "engine='httpx' or leave engine unset"
            )

    async def __aenter__(self) -> OpenAIChatLLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. The client can still be used afterwards (it reopens)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> StreamingClient:
        if self._client is None:
            headers = {"Accept": "text/event-stream"}
            if self._key:
                headers["Authorization"] = f"Bearer {self._key.reveal()}"
            self._client = StreamingClient(
                headers=headers,
                timeout=self.timeout,
                connect_timeout=self.connect_timeout,
                tls=_tls_context(),
                max_connections=self.max_connections,
                engine=self.engine,
            )
        return self._client

    def _body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> bytes:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if tools:
            body["tools"] = tools
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra_body)
        return msgspec.json.encode(body)

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        """Stream one reply. Yields text deltas as they come, then every complete tool call,
        then one :class:`~voicegraph.llm.Finish`.

        Raises :class:`~voicegraph.llm.LLMError` with the HTTP status and the server's message.
        Cancelling, or leaving the ``async for`` early (and closing the generator), closes the
        HTTP response at once."""
        body = self._body(messages, tools)
        url = f"{self.base_url}/chat/completions"
        client = self._http()
        self.metrics.requests += 1
        attempt = 0
        stalls = 0
        while True:
            sent = time.monotonic()
            try:
                async with AsyncExitStack() as stack:
                    # The first event is awaited under the watchdog, outside any yield.
                    with anyio.move_on_after(self.first_token_timeout or math.inf) as watch:
                        response = await stack.enter_async_context(
                            client.post(url, body, {"Content-Type": "application/json"})
                        )
                        if response.status != 200:
                            raise await _http_error(response)
                        events = self._events(response, sent)
                        stack.push_async_callback(events.aclose)
                        first = await anext(events, None)
                    if watch.cancelled_caught:
                        stalls += 1
                        if stalls > 1:
                            self.metrics.errors += 1
                            raise LLMStalled(
                                f"no first token from {self.base_url} within "
                                f"{self.first_token_timeout:g}s, twice; check the service status"
                            )
                        log.warning(
                            "chat request got no first token within %gs; sending it once more",
                            self.first_token_timeout,
                        )
                        continue
                    if first is None:
                        return
                    yield first
                    async for event in events:
                        yield event
                    return
            except LLMError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    self.metrics.errors += 1
                    raise
                delay = self._backoff(attempt)
            except TransportFailure as exc:
                # Only reached before the response started: _events converts its own errors.
                if attempt >= self.max_retries:
                    self.metrics.errors += 1
                    raise LLMError(
                        f"cannot reach {self.base_url}: {exc} after {attempt + 1} attempt(s)"
                    ) from None
                # A connection dropped before any response is most often a pooled one the server
                # had just closed: the first retry goes at once, on a new connection.
                delay = 0.0 if attempt == 0 and not exc.timeout else self._backoff(attempt)
            attempt += 1
            self.metrics.retries += 1
            log.warning("chat request failed; retry %d/%d", attempt, self.max_retries)
            await anyio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return float(self.backoff * 2.0**attempt * (0.5 + random.random() / 2))

    async def _events(self, response: Reply, sent: float) -> AsyncGenerator[LLMEvent, None]:
        pending: dict[int, _Pending] = {}
        finish_reason = ""
        usage: dict[str, int] | None = None
        first = True
        chars = 0
        done = False
        lines = response.lines()
        try:
            async for line in lines:
                if not line.startswith("data:"):
                    continue  # SSE comments, event names and keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = _chunk_decoder.decode(data)
                except msgspec.DecodeError as exc:
                    raise LLMError(f"malformed stream chunk from server: {exc}", 200) from None
                if chunk.usage is not None:
                    usage = {
                        "prompt_tokens": chunk.usage.prompt_tokens,
                        "completion_tokens": chunk.usage.completion_tokens,
                        "total_tokens": chunk.usage.total_tokens,
                    }
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue  # n > 1 is not requested; ignore stray alternatives
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
                    delta = choice.delta
                    if delta is None:
                        continue
                    if first and (delta.content or delta.tool_calls):
                        first = False
                        self.metrics.ttft.append(time.monotonic() - sent)
                    if delta.content:
                        chars += len(delta.content)
                        if chars > self.max_reply_chars:
                            raise LLMError(
                                f"reply exceeds max_reply_chars={self.max_reply_chars}", 200
                            )
                        yield TextDelta(delta.content)
                    for tc in delta.tool_calls or ():
                        p = pending.get(tc.index)
                        if p is None:
                            if len(pending) >= 64:
                                raise LLMError("more than 64 tool calls in one reply", 200)
                            p = pending[tc.index] = _Pending()
                        if tc.id:
                            p.id = tc.id
                        if tc.function is not None:
                            if tc.function.name:
                                p.name += tc.function.name
                            if tc.function.arguments:
                                chars += len(tc.function.arguments)
                                if chars > self.max_reply_chars:
                                    raise LLMError(
                                        f"reply exceeds max_reply_chars={self.max_reply_chars}",
                                        200,
                                    )
                                p.arguments.append(tc.function.arguments)
        except TransportFailure as exc:
            if exc.timeout:
                raise LLMError(f"stream stalled: no data for {self.timeout:g}s", 200) from None
            raise LLMError(f"stream broken mid-reply: {exc}", 200) from None
        if not done and not finish_reason:
            raise LLMError("stream ended before the reply was complete", 200)
        for index in sorted(pending):
            p = pending[index]
            if not p.name:
                raise LLMError("server sent a tool call without a function name", 200)
            yield ToolCall(p.id or f"call_{index}", p.name, "".join(p.arguments) or "{}")
        yield Finish(finish_reason or "stop", usage)
        if done:
            await _drain(lines)


async def _drain(lines: AsyncGenerator[str, None]) -> None:
    """Read what follows ``[DONE]`` (the body's end: the last chunk of a chunked response), so
    that the connection goes back to the pool rather than being closed with the body unread;
    a server that keeps the stream open past ``[DONE]`` costs at most :data:`_DRAIN_S`."""
    with anyio.move_on_after(_DRAIN_S):
        try:
            async for _ in lines:
                pass
        except TransportFailure:
            pass  # the reply was complete; the pool drops this connection
    await lines.aclose()


async def _http_error(response: Reply) -> LLMError:
    status = response.status
    if 300 <= status < 400:
        return LLMError(
            f"the service answered with a redirect (HTTP {status}), not followed: the request "
            "carries the API key; point base_url at the service itself",
            status,
            False,
        )
    raw = await response.read(65536)
    message = ""
    try:
        message = _error_decoder.decode(raw).error.message
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = raw[:300].decode("utf-8", "replace").strip()
    return LLMError(message or response.reason or "request failed", status, status in _RETRY_STATUS)
