"""Tools: plain typed Python functions the agent may call.

``@tool`` turns a function (sync or async) into a :class:`Tool` whose JSON schema comes from the
type hints and the docstring (first paragraph = description; an ``Args:`` section gives parameter
descriptions). Arguments from the model are validated against the same types with msgspec before
the function runs; a validation failure or an exception inside the tool becomes an error result
for the model (``{"error": ...}``), never a crash of the call.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, get_type_hints

import anyio
import msgspec

__all__ = ["Tool", "ToolError", "invoke_by_name", "tool"]


class ToolError(Exception):
    """Raise inside a tool to give the model a clean error message (no traceback)."""


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    head, _, rest = doc.partition("\n\n")
    params: dict[str, str] = {}
    m = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, flags=re.M)
    if m:
        for line in m.group(1).splitlines():
            pm = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?\s*:\s*(.+)", line)
            if pm:
                params[pm.group(1)] = pm.group(2).strip()
    return " ".join(head.split()), params


class Tool:
    """A callable tool with its OpenAI-style function schema.

    ``await tool.invoke(arguments_json)`` validates the arguments, runs the function (sync
    functions in a worker thread, so they cannot stall the call) and returns the result as JSON
    text; errors come back as ``{"error": "..."}``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        description: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", self.name):
            raise ValueError(f"tool name {self.name!r} must match [a-zA-Z0-9_-]{{1,64}}")
        summary, param_docs = _doc_parts(fn.__doc__)
        self.description = description or summary
        if not self.description:
            raise ValueError(
                f"tool {self.name!r} needs a docstring or description= (the model reads it)"
            )
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        sig = inspect.signature(fn)
        hints = get_type_hints(fn)
        fields: list[Any] = []
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"tool {self.name!r}: *args/**kwargs cannot be described to a model"
                )
            if p.name not in hints:
                raise TypeError(f"tool {self.name!r}: parameter {p.name!r} needs a type hint")
            t = hints[p.name]
            if p.default is inspect.Parameter.empty:
                fields.append((p.name, t))
            else:
                fields.append((p.name, t, p.default))
        self._args_type = msgspec.defstruct(f"{self.name}_args", fields, forbid_unknown_fields=True)
        self._decoder = msgspec.json.Decoder(self._args_type)
        schema = msgspec.json.schema(self._args_type)
        defs = schema.pop("$defs", {})
        ref = schema.get("$ref", "")
        params = dict(defs.pop(ref.rsplit("/", 1)[-1], schema)) if ref else schema
        params.pop("title", None)
        params.setdefault("properties", {})
        params.setdefault("required", [])
        for pname, text in param_docs.items():
            if pname in params["properties"]:
                params["properties"][pname]["description"] = text
        if defs:
            params["$defs"] = defs
        params["additionalProperties"] = False
        self.parameters: dict[str, Any] = params

    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI chat-completions format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def realtime_schema(self) -> dict[str, Any]:
        """The tool in OpenAI Realtime session format (flat)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }

    async def invoke(self, arguments: str) -> str:
        try:
            args = self._decoder.decode(arguments or "{}")
        except msgspec.ValidationError as exc:
            return _error(f"invalid arguments for {self.name}: {exc}")
        except msgspec.DecodeError:
            return _error(f"arguments for {self.name} are not valid JSON")
        kwargs = {f: getattr(args, f) for f in args.__struct_fields__}
        try:
            with anyio.fail_after(self.timeout):
                if self.is_async:
                    result = await self.fn(**kwargs)
                else:
                    result = await anyio.to_thread.run_sync(lambda: self.fn(**kwargs))
        except TimeoutError:
            return _error(f"{self.name} did not finish within {self.timeout:.0f}s")
        except ToolError as exc:
            return _error(str(exc))
        except Exception as exc:
            return _error(f"{self.name} failed: {type(exc).__name__}: {exc}")
        try:
            return msgspec.json.encode(result).decode()
        except TypeError:
            return msgspec.json.encode(str(result)).decode()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (tools stay usable as plain functions)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"


async def invoke_by_name(tools: dict[str, Tool], name: str, arguments: str) -> str:
    """Run the tool the model named; an unknown name is an error result for the model."""
    t = tools.get(name)
    if t is None:
        return _error(f"no tool named {name!r}; available: {', '.join(tools) or 'none'}")
    return await t.invoke(arguments)


def _error(message: str) -> str:
    return msgspec.json.encode({"error": message}).decode()


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = 30.0,
) -> Any:
    """Decorator: ``@tool`` or ``@tool(name=..., description=..., timeout=...)``."""
    if fn is None:
        return lambda f: Tool(f, name=name, description=description, timeout=timeout)
    return Tool(fn, name=name, description=description, timeout=timeout)
