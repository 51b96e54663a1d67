"""voicegraph: phone voice agents as explicit graphs of actor nodes.

The engine (frames, nodes, channels, graph, call runtime) is imported eagerly; the public face
that pulls in servers and providers (``CallInterface``, ``AgentRuntime``, ``Agent``, ``tool``)
is imported lazily on first use, so ``import voicegraph`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .channel import EndOfInput, Inbox
from .frames import *  # noqa: F403
from .frames import __all__ as _frames_all
from .graph import (
    AudioFormatMismatch,
    Edge,
    FrameTypeMismatch,
    Graph,
    GraphError,
    IllegalCycle,
    UnconnectedPort,
    UnknownNode,
    UnknownPort,
)
from .node import Actor, In, Node, Out, Stage
from .runtime import Call, CallResult, NodeFailure

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Agent": ".agent",
    "CallControl": ".agent",
    "Turn": ".agent",
    "Tool": ".tools",
    "ToolError": ".tools",
    "tool": ".tools",
    "AgentRuntime": ".server",
    "AgentRuntimeError": ".server",
    "CallInterface": ".interface",
    "CallInterfaceError": ".interface",
    "IncompatibleOptionsError": ".interface",
    "InvalidOptionError": ".interface",
    "MissingCredentialsError": ".interface",
}

if TYPE_CHECKING:  # editors and type checkers see the lazy names' real types
    from .agent import Agent as Agent, CallControl as CallControl, Turn as Turn
    from .interface import (
        CallInterface as CallInterface,
        CallInterfaceError as CallInterfaceError,
        IncompatibleOptionsError as IncompatibleOptionsError,
        InvalidOptionError as InvalidOptionError,
        MissingCredentialsError as MissingCredentialsError,
    )
    from .server import AgentRuntime as AgentRuntime, AgentRuntimeError as AgentRuntimeError
    from .tools import Tool as Tool, ToolError as ToolError, tool as tool


__all__ = [
    *_frames_all,
    "Actor",
    "AudioFormatMismatch",
    "Call",
    "CallResult",
    "Edge",
    "EndOfInput",
    "FrameTypeMismatch",
    "Graph",
    "GraphError",
    "IllegalCycle",
    "In",
    "Inbox",
    "Node",
    "NodeFailure",
    "Out",
    "Stage",
    "UnconnectedPort",
    "UnknownNode",
    "UnknownPort",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
