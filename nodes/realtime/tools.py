"""Tools of an OpenAI Realtime node: the schemas the model is offered, and running calls.

:func:`tool_schema` accepts a function tool in the Realtime (flat) or chat-completions (nested
``function``) shape. :func:`run_tool` runs the node's own ``tool_handler`` for one call under a
timeout; whatever goes wrong becomes a JSON error the model can read, never an exception that
would end the call. :class:`ToolRunner` runs those calls beside the node, a bounded number at
once, for as long as the node runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import msgspec

from voicegraph.events import ToolEvent
from voicegraph.frames import Frame

from . import messages as m

__all__ = ["ToolHandler", "ToolRunner", "error_json", "is_error", "run_tool", "tool_schema"]

Logger = logging.Logger | logging.LoggerAdapter[Any]

ToolHandler = Callable[[str, str], Awaitable[str]]
"""``tool_handler(name, arguments_json) -> output``: runs one tool call inside the node."""


def tool_schema(spec: Mapping[str, Any]) -> m.Tool:
    """``spec`` (an OpenAI function schema, flat or nested) as a Realtime tool. Raises
    ``ValueError`` for a spec without a name."""
    fn = spec.get("function", spec)
    if not isinstance(fn, Mapping) or not fn.get("name"):
        raise ValueError(
            "each tool must be an OpenAI function schema with a name, e.g. "
            "{'type': 'function', 'name': 'lookup', 'parameters': {...}}"
        )
    return m.Tool(
        name=str(fn["name"]),
        description=str(fn.get("description") or ""),
        parameters=dict(fn.get("parameters") or {"type": "object", "properties": {}}),
    )


def error_json(message: str) -> str:
    """A tool output telling the model the call failed (``{"error": message}``)."""
    return msgspec.json.encode({"error": message}).decode()


def is_error(output: str) -> bool:
    """Whether ``output`` is one made by :func:`error_json`."""
    return output.startswith('{"error"')


async def run_tool(
    handler: ToolHandler,
    name: str,
    arguments: str,
    timeout: float,
    log: Logger,
) -> str:
    """The output of ``handler(name, arguments)``, or an :func:`error_json` when it fails,
    returns something other than a string or takes longer than ``timeout`` seconds (it is
    cancelled then). Cancellation of the caller propagates."""
    try:
        with anyio.fail_after(timeout):
            output = await handler(name, arguments)
        if not isinstance(output, str):
            raise TypeError(f"tool handler returned {type(output).__name__}, not str")
    except TimeoutError:
        log.warning("tool %s timed out after %ss", name, timeout)
        return error_json(f"tool {name} timed out")
    except Exception as exc:
        log.warning("tool %s failed: %s: %s", name, type(exc).__name__, exc)
        return error_json(f"tool {name} failed: {type(exc).__name__}")
    return output


class ToolRunner:
    """Runs tool calls with the node's ``handler`` in a task group that lives as long as the
    node's run (:meth:`serve`): at most ``max_calls`` at once, each under ``timeout``. Each
    call's output goes to ``deliver(call_id, output)`` and a :class:`~voicegraph.events.ToolEvent`
    to ``publish``. Calls still running when the node's run ends are cancelled."""

    __slots__ = ("deliver", "handler", "max_calls", "publish", "running", "timeout", "_tg")

    def __init__(
        self,
        handler: ToolHandler | None,
        timeout: float,
        max_calls: int,
        deliver: Callable[[str, str], Awaitable[None]],
        publish: Callable[[Frame], None],
    ) -> None:
        self.handler = handler
        self.timeout = timeout
        self.max_calls = max_calls
        self.deliver = deliver
        self.publish = publish
        self.running = 0
        """Calls running now."""
        self._tg: anyio.abc.TaskGroup | None = None

    async def serve(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body`` (the node's run) with room for tool calls beside it. Its own error is
        re-raised bare, not as an exception group, so the call reports e.g.
        ``ProviderUnavailable`` itself."""
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await body()
            except Exception as exc:
                error = exc
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error

    def start(self, call_id: str, name: str, arguments: str, log: Logger) -> bool:
        """Start call ``call_id`` of ``name``; False when ``max_calls`` already run (or the
        node is not running), and nothing was started."""
        if self.running >= self.max_calls or self._tg is None:
            return False
        self._tg.start_soon(self._run, call_id, name, arguments, log)
        return True

    async def _run(self, call_id: str, name: str, arguments: str, log: Logger) -> None:
        assert self.handler is not None
        self.running += 1
        t0 = time.monotonic()
        try:
            output = await run_tool(self.handler, name, arguments, self.timeout, log)
        finally:
            self.running -= 1
        self.publish(ToolEvent(name=name, start=t0, end=time.monotonic(), ok=not is_error(output)))
        await self.deliver(call_id, output)
