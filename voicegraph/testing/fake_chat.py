"""FakeChatCompletions: an OpenAI-compatible chat completions server on loopback.

It serves ``POST /v1/chat/completions`` with ``stream: true`` as server-sent events
(``data: {chunk}`` ... ``data: [DONE]``), replies from a script, checks each request the way
OpenAI does (auth, model, message roles and tool-call pairing, tool schemas) and answers
mistakes with OpenAI-style error bodies. Latency (time to first token, tokens per second) and
faults (refused auth, HTTP errors, close mid-stream, stall, malformed chunk) are configurable.
This module is the server and its script; the wire (request schema and checks, error bodies,
the chunk stream) is in ``_chat_protocol.py``.

    async with FakeChatCompletions(["Hello there!"]) as fake:
        llm = OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url)
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import msgspec

from ._chat_protocol import (
    ChatFault,
    ChatReply,
    ChatRequest,
    Script,
    ScriptedToolCall,
    _redact,
    _Reject,
    _request_decoder,
    _sse_chunks,
    _validate,
)
from .fakeserver import Engine, FakeServer, HTTPRequest, HTTPResponse

__all__ = ["ChatFault", "ChatReply", "ChatRequest", "FakeChatCompletions", "ScriptedToolCall"]


class FakeChatCompletions(FakeServer):
    """A scripted OpenAI-compatible chat endpoint on ``127.0.0.1`` (ephemeral port).

    ``replies`` are used in order, one per accepted request: a string (text reply), a
    :class:`ChatReply`, or a callable taking the request's messages (OpenAI format) and
    returning either. When the script runs out the fake answers HTTP 500 saying so.
    ``api_key`` is the only key accepted (``None``: no auth check). ``models`` restricts the
    accepted model names (``None``: any). ``ttfb`` delays the first chunk; ``tokens_per_second``
    paces the following ones (``None``: as fast as possible). ``faults`` apply in order, each
    to its next ``times`` requests. ``engine``: ``"hypercorn"`` or ``"asyncio"`` (the lean
    HTTP engine, asyncio only; see :mod:`voicegraph.testing.fakeserver`).

    Use as ``async with``; :attr:`base_url` ends in ``/v1``. Every request is recorded in
    :attr:`requests` (accepted or not); :attr:`errors` lists the error messages sent back;
    :attr:`peers` the client address of each request (a new port is a new connection).
    """

    def __init__(
        self,
        replies: Sequence[Script] = (),
        *,
        api_key: str | None = "test-key",
        models: Sequence[str] | None = None,
        ttfb: float = 0.0,
        tokens_per_second: float | None = None,
        faults: Sequence[ChatFault] = (),
        engine: Engine = "hypercorn",
    ) -> None:
        super().__init__(engine=engine)
        self.replies = list(replies)
        self.api_key = api_key
        self.models = tuple(models) if models is not None else None
        self.ttfb = ttfb
        self.tokens_per_second = tokens_per_second
        self.faults = list(faults)
        self.requests: list[ChatRequest] = []
        self.peers: list[tuple[str, int] | None] = []
        self.errors: list[str] = []
        self.completed = 0
        """Streams that ran to ``data: [DONE]``."""
        self.disconnected = 0
        """Streams that ended before ``data: [DONE]`` (the client left, or a fault)."""
        self.base_url = ""
        self._next = 0
        self._ids = itertools.count(1)
        self._active = 0
        self._idle: anyio.Event | None = None

    # ------------------------------------------------------------------ serving

    async def __aenter__(self) -> FakeChatCompletions:
        await super().__aenter__()
        self.base_url = f"{self.http_url}/v1"
        return self

    async def http(self, request: HTTPRequest, response: HTTPResponse) -> None:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            await response.send_json(
                404,
                _Reject(404, f"Invalid URL ({request.method} {request.path})").body,
            )
            return
        self.peers.append(request.client)
        try:
            req, reply, fault = self._accept(request.body, request.headers.get("authorization", ""))
        except _Reject as rej:
            self.errors.append(str(rej))
            await response.send_json(rej.status, rej.body)
            return
        await response.start(
            200, {"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        finished = False
        self._active += 1
        try:
            finished = await self._stream(req, reply, fault, response)
        finally:
            self._active -= 1
            if finished:
                self.completed += 1
            else:
                self.disconnected += 1
            if not self._active and self._idle is not None:
                self._idle.set()
                self._idle = None

    def llm(self, model: str = "gpt-4o-mini", **options: Any) -> Any:
        """An :class:`~voicegraph.nodes.OpenAIChatLLM` talking to this fake (use it inside the
        ``async with``; ``options`` go to the client)."""
        from voicegraph.nodes.llm.openai_chat import OpenAIChatLLM

        return OpenAIChatLLM(model, api_key=self.api_key, base_url=self.base_url, **options)

    async def wait_idle(self) -> None:
        """Wait until no stream is being served (e.g. after a client closed one early)."""
        while self._active:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def _stream(
        self, req: ChatRequest, reply: ChatReply, fault: ChatFault | None, response: HTTPResponse
    ) -> bool:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await response.wait_disconnected()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            async for data in self._sse(req, reply, fault):
                await response.write(data)
            tg.cancel_scope.cancel()
            return True
        return False  # the client left

    # ------------------------------------------------------------- validation

    def _accept(self, raw: bytes, auth: str) -> tuple[ChatRequest, ChatReply, ChatFault | None]:
        try:
            req = _request_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            self.requests.append(ChatRequest(authorization=_redact(auth)))
            raise _Reject(400, f"Invalid request body: {exc}") from None
        except msgspec.DecodeError:
            self.requests.append(ChatRequest(authorization=_redact(auth)))
            raise _Reject(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
            ) from None
        req.authorization = _redact(auth)
        self.requests.append(req)
        if self.api_key is not None:
            if not auth:
                raise _Reject(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
            if auth != f"Bearer {self.api_key}":
                raise _Reject(401, "Incorrect API key provided.", code="invalid_api_key")
        fault = self._take_fault()
        if fault is not None and fault.kind == "status":
            raise _Reject(fault.status, f"Injected fault: HTTP {fault.status}")
        _validate(req, self.models)
        return req, self._reply(req), fault

    def _take_fault(self) -> ChatFault | None:
        while self.faults:
            fault = self.faults[0]
            if fault.times <= 0:
                self.faults.pop(0)
                continue
            self.faults[0] = msgspec.structs.replace(fault, times=fault.times - 1)
            return fault
        return None

    def _reply(self, req: ChatRequest) -> ChatReply:
        if self._next >= len(self.replies):
            raise _Reject(
                500, f"FakeChatCompletions script exhausted after {len(self.replies)} replies"
            )
        item = self.replies[self._next]
        self._next += 1
        if callable(item):
            item = item(msgspec.to_builtins(req.messages or []))
        if isinstance(item, str):
            return ChatReply(text=item)
        if isinstance(item, ChatReply):
            return item
        raise TypeError(f"a scripted reply must be str or ChatReply, got {type(item).__name__}")

    # -------------------------------------------------------------- streaming

    async def _sse(
        self, req: ChatRequest, reply: ChatReply, fault: ChatFault | None
    ) -> AsyncIterator[bytes]:
        chunks = _sse_chunks(req, reply, self._ids)
        interval = 1.0 / self.tokens_per_second if self.tokens_per_second else 0.0
        if self.ttfb:
            await anyio.sleep(self.ttfb)
        for n, data in enumerate(chunks):
            if fault is not None and n == fault.after_chunks:
                if fault.kind == "close_mid_stream":
                    # An exception after the response started makes the server drop the
                    # connection without the final chunk, as a crashed upstream would.
                    raise _InjectedClose("injected fault: close mid-stream")
                if fault.kind == "stall":
                    await anyio.sleep_forever()
                if fault.kind == "malformed_chunk":
                    yield b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
            if n > 1 and interval:
                await anyio.sleep(interval)
            yield data


class _InjectedClose(Exception):
    pass
