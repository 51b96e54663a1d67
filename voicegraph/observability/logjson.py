"""Structured logs: one JSON object per log record, carrying the call id, line and node.

:func:`configure_json_logging` installs :class:`JsonFormatter` on the root logger (the CLI's
``--log-format json`` does the same). Every record becomes one line::

    {"ts":"2025-01-01T12:00:00.123Z","level":"INFO","logger":"voicegraph.node.Playout",
     "call_id":"CA123","line":"14155550199","node":"playout","message":"..."}

``call_id`` and ``node`` come from the call's loggers; ``call_id`` and ``line`` also come from
:data:`CALL_CONTEXT`, which the runtime sets around each call, so records that user code
(tools, agents) and libraries log during a call carry them too (:class:`CallContextFilter`
stamps them on the record when it is logged, for handlers that format later). Unknown values are ``null``.
The per-turn timeline record (logger ``voicegraph.timeline``) is written with its own keys
(``turn``, ``ms``) instead of a message, the same keys as its plain-text JSON line.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

__all__ = [
    "CALL_CONTEXT",
    "CallContextFilter",
    "JsonFormatter",
    "call_context",
    "configure_json_logging",
]

CALL_CONTEXT: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "voicegraph_call", default=None
)
"""``(call_id, line)`` of the call whose task is running, else ``None``."""


@contextmanager
def call_context(call_id: str, line: str) -> Iterator[None]:
    """Mark the current task and every task it starts as working for this call."""
    token = CALL_CONTEXT.set((call_id, line))
    try:
        yield
    finally:
        CALL_CONTEXT.reset(token)


_encoder = msgspec.json.Encoder()


class CallContextFilter(logging.Filter):
    """Stamps ``call_id`` and ``line`` from :data:`CALL_CONTEXT` on each record as it is
    logged, so a formatter running later or elsewhere (a queue listener) still has them."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = CALL_CONTEXT.get()
        if ctx is not None:
            # LogRecord takes extra attributes; setattr/getattr keep them out of its declared type
            if not getattr(record, "call_id", None):
                setattr(record, "call_id", ctx[0])  # noqa: B010
            if getattr(record, "call_id", None) == ctx[0]:
                setattr(record, "line", ctx[1])  # noqa: B010
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docs for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = CALL_CONTEXT.get()
        call_id = getattr(record, "call_id", None) or (ctx[0] if ctx else None)
        line = getattr(record, "line", None) or (ctx[1] if ctx and ctx[0] == call_id else None)
        node = getattr(record, "node", None)
        secs = int(record.created)
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
            + f".{int((record.created - secs) * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "call_id": call_id,
            "line": line,
            "node": node,
        }
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out.setdefault(k, v)
        else:
            out["message"] = _strip_prefix(record.getMessage(), call_id, node)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        try:
            return _encoder.encode(out).decode()
        except (TypeError, msgspec.EncodeError):  # a value JSON cannot hold: say so, not fail
            return _encoder.encode({**out, **{k: repr(v) for k, v in out.items()}}).decode()


def _strip_prefix(message: str, call_id: str | None, node: str | None) -> str:
    """Drop the ``[call id] node: `` prefix the call loggers add for plain-text logs."""
    if call_id and message.startswith(f"[{call_id}] "):
        message = message[len(call_id) + 3 :]
        if node and message.startswith(f"{node}: "):
            message = message[len(node) + 2 :]
    return message


def configure_json_logging(level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Log JSON lines to ``stream`` (standard error by default) at ``level``: replaces the root
    logger's handlers with one stream handler using :class:`JsonFormatter`; returns it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CallContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
