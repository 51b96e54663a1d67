"""The OpenAI chat completions wire as FakeChatCompletions speaks it: the scripted replies and
faults, the request schema and the checks OpenAI applies to it (auth aside), the OpenAI-style
error bodies, and the streamed reply as server-sent events."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import msgspec

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
    """A received request, as recorded in :attr:`~voicegraph.testing.FakeChatCompletions.requests`."""

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


def _sse_chunks(req: ChatRequest, reply: ChatReply, ids: Iterator[int]) -> list[bytes]:
    """The ``data:`` events of one streamed reply, in OpenAI's order: the role chunk, a chunk
    per token, each tool call's head then its arguments in 8-character pieces, the finish
    chunk, the usage chunk when ``stream_options.include_usage`` asked for it, ``[DONE]``.
    ``ids`` numbers the completion and the tool calls that have no scripted id."""
    rid = f"chatcmpl-fake{next(ids)}"
    created = int(time.time())
    model = req.model or ""

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
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
        call_id = call.id or f"call_fake{next(ids)}"
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
    return chunks


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
