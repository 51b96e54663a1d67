"""The LLM interface the agent uses: one streaming call per turn, in OpenAI chat format.

``LLM.stream(messages, tools)`` is an async generator of :data:`LLMEvent` s: text deltas as they
arrive, then each complete :class:`ToolCall` (arguments assembled from the stream), then one
:class:`Finish`. Breaking out of the iteration or cancelling the consuming task ends the request
and closes its HTTP response promptly. Implementations live in ``voicegraph.nodes.llm``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from typing import Any, Protocol, runtime_checkable

import msgspec

__all__ = [
    "LLM",
    "Finish",
    "LLMError",
    "LLMEvent",
    "LLMMetrics",
    "LLMStalled",
    "TextDelta",
    "ToolCall",
]


class TextDelta(msgspec.Struct, frozen=True):
    """A piece of the assistant's reply text."""

    text: str


class ToolCall(msgspec.Struct, frozen=True):
    """A complete tool call. ``arguments`` is JSON text, as the model produced it."""

    id: str
    name: str
    arguments: str


class Finish(msgspec.Struct, frozen=True):
    """End of one reply: the finish reason (``stop``, ``tool_calls``, ``length``...) and token
    usage when the server reported it."""

    reason: str
    usage: dict[str, int] | None = None


LLMEvent = TextDelta | ToolCall | Finish


class LLMError(Exception):
    """A model request failed. ``status`` is the HTTP status (``None`` when no response came
    back) and ``message`` the server's own error message. Never carries credentials."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(f"HTTP {status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.retryable = retryable


class LLMStalled(LLMError):
    """The model did not start answering within its first-token timeout, also when asked again.

    ``ends_call``: the conversation node ends the call with an apology rather than apologising
    and waiting for another turn that would stall the same way."""

    ends_call = True

    def __init__(self, message: str) -> None:
        super().__init__(message, None, False)


class LLMMetrics:
    """Counters and time to first token (seconds) of an LLM client's recent requests."""

    __slots__ = ("errors", "requests", "retries", "ttft")

    def __init__(self, keep: int = 256) -> None:
        self.requests = 0
        self.retries = 0
        self.errors = 0
        self.ttft: deque[float] = deque(maxlen=keep)
        """Time from sending the request to the first content (text or tool call) delta."""

    @property
    def last_ttft(self) -> float | None:
        return self.ttft[-1] if self.ttft else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "errors": self.errors,
            "last_ttft": self.last_ttft,
        }


@runtime_checkable
class LLM(Protocol):
    """A streaming chat model."""

    def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        """Stream one reply to ``messages`` (OpenAI chat format), offering ``tools``
        (``{"type": "function", "function": {name, description, parameters}}``).

        Raises :class:`LLMError` on failure. Cancellation or leaving the iteration early closes
        the request."""
        ...
