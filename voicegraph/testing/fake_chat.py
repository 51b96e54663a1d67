"""FakeChatCompletions: an OpenAI-compatible chat completions server on loopback.

It serves ``POST /v1/chat/completions`` with ``stream: true`` as server-sent events
(``data: {chunk}`` ... ``data: [DONE]``), replies from a script, checks each request the way
OpenAI does (auth, model, message roles and tool-call pairing, tool schemas) and answers
mistakes with OpenAI-style error bodies. Latency (time to first token, tokens per second) and
faults (refused auth, HTTP errors, close mid-stream, stall, malformed chunk) are configurable.

    async with FakeChatCompletions(["Hello there!"]) as fake:
        llm = OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url)
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import anyio
import msgspec

from .fakeserver import FakeServer, HTTPRequest, HTTPResponse

__all__ = ["ChatFault", "ChatReply", "FakeChatCompletions", "ScriptedToolCall"]

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOKEN = re.compile(r"\s*\S+|\s+")


class ScriptedToolCall(msgspec.Struct, frozen=True):
    """A tool call the fake model makes. ``arguments`` is JSON text."""

    name: str
    arguments: str = "{}"
    id: str = ""


class ChatReply(msgspec.Struct, frozen=True):
    """One scripted reply: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()


Script = str | ChatReply | Callable[[list[dict[str, Any]]], "str | ChatReply"]


class ChatFault(msgspec.Struct, frozen=True):
    """A fault applied to the next ``times`` requests.

    ``kind``: ``"status"`` answers HTTP ``status`` with an OpenAI error body;
    ``"close_mid_stream"`` drops the connection after ``after_chunks`` chunks;
    ``"stall"`` stops sending after ``after_chunks`` chunks (keeping the connection open);
    ``"malformed_chunk"`` sends a chunk that is not JSON after ``after_chunks`` chunks."""

    kind: Literal["status", "close_mid_stream", "stall", "malformed_chunk"]
    times: int = 1
    after_chunks: int = 2
    status: int = 503


# ------------------------------------------------------------------ request structs


class _Function(msgspec.Struct):
    name: str
    arguments: str


class _ToolCallIn(msgspec.Struct):
    id: str
    function: _Function
    type: str = "function"


class _Message(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[_ToolCallIn] | None = None
    tool_call_id: str | None = None


class _FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Tool(msgspec.Struct):
    type: str
    function: _FunctionDef


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct):
    """A received request, as recorded in :attr:`FakeChatCompletions.requests`."""

    model: str | None = None
    messages: list[_Message] | None = None
    tools: list[_Tool] | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    authorization: str = ""


_request_decoder = msgspec.json.Decoder(ChatRequest)


class _Reject(Exception):
    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = msgspec.json.encode(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error" if status < 500 else "server_error",
                    "param": param,
                    "code": code,
                }
            }
        )


class FakeChatCompletions(FakeServer):
    """A scripted OpenAI-compatible chat endpoint on ``127.0.0.1`` (ephemeral port).

    ``replies`` are used in order, one per accepted request: a string (text reply), a
    :class:`ChatReply`, or a callable taking the request's messages (OpenAI format) and
    returning either. When the script runs out the fake answers HTTP 500 saying so.
    ``api_key`` is the only key accepted (``None``: no auth check). ``models`` restricts the
    accepted model names (``None``: any). ``ttfb`` delays the first chunk; ``tokens_per_second``
    paces the following ones (``None``: as fast as possible). ``faults`` apply in order, each
    to its next ``times`` requests.

    Use as ``async with``; :attr:`base_url` ends in ``/v1``. Every request is recorded in
    :attr:`requests` (accepted or not); :attr:`errors` lists the error messages sent back.
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
    ) -> None:
        super().__init__()
        self.replies = list(replies)
        self.api_key = api_key
        self.models = tuple(models) if models is not None else None
        self.ttfb = ttfb
        self.tokens_per_second = tokens_per_second
        self.faults = list(faults)
        self.requests: list[ChatRequest] = []
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
        rid = f"chatcmpl-fake{next(self._ids)}"
        created = int(time.time())
        model = req.model or ""

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            choices = (
                [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            )
            body = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return b"data: " + msgspec.json.encode(body) + b"\n\n"

        chunks: list[bytes] = [chunk({"role": "assistant", "content": ""})]
        tokens = _TOKEN.findall(reply.text)
        chunks += [chunk({"content": t}) for t in tokens]
        for i, call in enumerate(reply.tool_calls):
            call_id = call.id or f"call_fake{next(self._ids)}"
            head = {"index": i, "id": call_id, "type": "function"}
            head["function"] = {"name": call.name, "arguments": ""}
            chunks.append(chunk({"tool_calls": [head]}))
            args = call.arguments
            for j in range(0, len(args), 8):
                piece = {"index": i, "function": {"arguments": args[j : j + 8]}}
                chunks.append(chunk({"tool_calls": [piece]}))
        chunks.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        if req.stream_options is not None and req.stream_options.include_usage:
            prompt = sum(len(str(m.content or "").split()) for m in req.messages or ())
            completion = len(tokens) + sum(len(c.arguments) // 4 + 1 for c in reply.tool_calls)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            chunks.append(chunk(None, usage=usage))
        chunks.append(b"data: [DONE]\n\n")

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


def _redact(auth: str) -> str:
    """Keep the scheme and a hint of the key so tests can check it was sent, not the key."""
    if not auth:
        return ""
    scheme, _, key = auth.partition(" ")
    return f"{scheme} {key[:3]}...{len(key)}" if key else scheme


def _validate(req: ChatRequest, models: tuple[str, ...] | None) -> None:
    if not req.model:
        raise _Reject(400, "you must provide a model parameter", "model")
    if models is not None and req.model not in models:
        raise _Reject(
            404,
            f"The model `{req.model}` does not exist or you do not have access to it.",
            "model",
            "model_not_found",
        )
    if not req.stream:
        raise _Reject(400, "FakeChatCompletions serves only stream=true requests", "stream")
    messages = req.messages
    if messages is None:
        raise _Reject(400, "Missing required parameter: 'messages'.", "messages")
    if not messages:
        raise _Reject(400, "[] is too short - 'messages'", "messages", "empty_array")
    open_calls: dict[str, int] = {}
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise _Reject(
                400,
                f"Invalid value: '{m.role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                f"messages[{i}].role",
                "invalid_value",
            )
        if m.role == "tool":
            if m.tool_call_id is None:
                raise _Reject(
                    400,
                    "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
                    "'tool_call_id'.",
                    f"messages.[{i}].tool_call_id",
                )
            if m.tool_call_id not in open_calls:
                raise _Reject(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            del open_calls[m.tool_call_id]
            continue
        if open_calls:
            first = min(open_calls.values())
            raise _Reject(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(open_calls)}",
                f"messages.[{first}].role",
            )
        if m.role == "assistant" and m.tool_calls:
            for call in m.tool_calls:
                open_calls[call.id] = i
        elif m.content is None:
            raise _Reject(
                400,
                "Invalid value for 'content': expected a string, got null.",
                f"messages.[{i}].content",
            )
    if open_calls:
        raise _Reject(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(open_calls)}",
            f"messages.[{min(open_calls.values())}].role",
        )
    for i, tool in enumerate(req.tools or ()):
        if tool.type != "function":
            raise _Reject(
                400,
                f"Invalid value: '{tool.type}'. Supported values are: 'function' and 'custom'.",
                f"tools[{i}].type",
                "invalid_value",
            )
        if not _TOOL_NAME.match(tool.function.name):
            raise _Reject(
                400,
                f"Invalid 'tools[{i}].function.name': string does not match pattern. Expected "
                "a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                f"tools[{i}].function.name",
                "invalid_value",
            )
        params = tool.function.parameters
        if params is not None and params.get("type") != "object":
            raise _Reject(
                400,
                f"Invalid schema for function '{tool.function.name}': schema must be a JSON "
                f"Schema of 'type: \"object\"', got 'type: \"{params.get('type')}\"'.",
                f"tools[{i}].function.parameters",
                "invalid_function_parameters",
            )
