"""Nodes and ports.

Two kinds of node make one graph:

* :class:`Actor` -- owns a task and a loop (``run``): anything with its own timing, such as a
  socket, a provider connection, the agent or the playout pacer. It receives from its
  :class:`~voicegraph.channel.Inbox` and sends with :meth:`Actor.send`.
* :class:`Stage` -- a pure per-frame transform (``process``). The executor fuses a stage into the
  task of whoever sends to it, so a hop costs a function call; with fusion off it runs as an
  actor of its own. Behaviour is identical either way (a property the tests check).

Lifecycle, run by :class:`~voicegraph.runtime.Call`: ``start()`` (open connections), ``run()``
(actors only), ``stop()``. ``stop()`` runs for every node whose ``start()`` was entered, even
when a node failed or the call was cancelled; it runs shielded, under a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from .channel import EndOfInput, Inbox, Policy
from .frames import AudioFormat, Frame

__all__ = ["Actor", "CallContext", "In", "Node", "NodeStats", "Out", "Port", "Stage"]


class CallContext(Protocol):
    """What a node sees of the call running it (:class:`~voicegraph.runtime.Call` is one): its
    id, its event bus, and ending it. A protocol, so the node layer does not import the runtime
    above it."""

    @property
    def call_id(self) -> str: ...

    def publish(self, event: Frame) -> None:
        """Publish ``event`` to the call's observers."""

    def subscribe(self, callback: Callable[[Frame], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every published event; returns the unsubscribe."""

    def stop(self, reason: str = "stopped") -> None:
        """End the call now."""


class Port:
    """A typed port. ``types``: frame classes it accepts (input) or emits (output).

    ``format`` pins the audio format of :class:`~voicegraph.frames.AudioFrame` s on the port
    (``None``: any). ``required`` ports must be connected when the graph is built."""

    __slots__ = ("capacity", "format", "name", "policy", "required", "types")
    direction = ""

    def __init__(
        self,
        name: str,
        *types: type[Frame],
        format: AudioFormat | None = None,
        required: bool | None = None,
        policy: Policy = "block",
        capacity: int = 64,
    ) -> None:
        if not types:
            types = (Frame,)
        for t in types:
            if not (isinstance(t, type) and issubclass(t, Frame)):
                raise TypeError(f"port {name!r}: {t!r} is not a Frame class")
        self.name = name
        self.types = types
        self.format = format
        self.required = self._default_required if required is None else required
        self.policy = policy
        self.capacity = capacity

    _default_required = False

    def describe_types(self) -> str:
        return ", ".join(t.__name__ for t in self.types)

    def __repr__(self) -> str:
        fmt = f" {self.format}" if self.format else ""
        return f"{type(self).__name__}({self.name!r}: {self.describe_types()}{fmt})"


class In(Port):
    """An input port. Required by default. ``policy``/``capacity`` set its inbox lane unless the
    edge overrides them."""

    direction = "in"
    _default_required = True


class Out(Port):
    """An output port. Optional by default: frames sent to an unconnected output go nowhere,
    so mark outputs whose frames must not be lost ``required=True``."""

    direction = "out"
    _default_required = False


class NodeStats:
    """Per-node counters (always on; plain integer increments)."""

    __slots__ = ("frames_in", "frames_out")

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0


class Node:
    """Base of actors and stages. Subclasses declare ``inputs`` and ``outputs`` (tuples of
    :class:`In` / :class:`Out`), as class attributes or per instance in ``__init__``."""

    inputs: tuple[In, ...] = ()
    outputs: tuple[Out, ...] = ()

    name: str = ""
    call: CallContext | None = None
    log: logging.Logger | logging.LoggerAdapter[Any] = logging.getLogger("voicegraph.node")

    def __init__(self) -> None:
        self.stats = NodeStats()

    # hooks
    async def start(self) -> None:
        """Acquire resources (connect sockets). Runs before any node's ``run``."""

    async def stop(self) -> None:
        """Release resources. Always runs once ``start`` was entered; must not hang (it runs
        under the call's stop timeout) and should not raise."""

    # helpers
    def input(self, name: str) -> In:
        for p in self.inputs:
            if p.name == name:
                return p
        raise KeyError(name)

    def output(self, name: str) -> Out:
        for p in self.outputs:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def call_id(self) -> str:
        return self.call.call_id if self.call is not None else ""

    def publish(self, event: Frame) -> None:
        """Publish an event on the call's event bus (timeline marks, errors, deliveries)."""
        if self.call is not None:
            self.call.publish(event)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '(unnamed)'}>"


class Actor(Node):
    """A node with its own task. Override :meth:`run`.

    The default ``run`` receives every frame and passes it to :meth:`handle`, so most actors
    override only ``handle``. ``run`` returning ends this actor's outputs (downstream sees end of
    input once all its writers finish)."""

    inbox: Inbox
    _routes: dict[str, Any]

    async def run(self) -> None:
        inbox = self.inbox
        while True:
            try:
                port, frame = await inbox.receive()
            except EndOfInput:
                return
            await self.handle(port, frame)

    async def handle(self, port: str, frame: Frame) -> None:
        """Handle one frame from input ``port`` (default: forward to the single output)."""
        await self.send(self.outputs[0].name, frame)

    async def receive(self) -> tuple[str, Frame]:
        """Next ``(port, frame)`` from the inbox; raises ``EndOfInput`` when inputs are done."""
        return await self.inbox.receive()

    def send(self, port: str, frame: Frame) -> Awaitable[None]:
        """Send ``frame`` out of output ``port`` to every edge connected to it (fan-out).

        Returns an awaitable: ``await self.send(port, frame)``. It may wait for room downstream
        (back-pressure); cancelled while waiting, the frame was not queued on the edge that was
        full (edges before it in a fan-out already have it). Raises ``TypeError`` if the port
        does not declare the frame's type, ``KeyError`` for an unknown port. (A plain method
        returning the route's coroutine, to save a coroutine frame per hop.)"""
        return self._routes[port](frame)  # type: ignore[no-any-return]


class Stage(Node):
    """A pure per-frame transform with one output port ``outputs[0]``.

    Override :meth:`process`; return ``None``, one frame, or an iterable of frames. Override
    :meth:`finish` to flush state at end of input (it returns frames the same way). ``process``
    must not await: that is what makes fusion safe."""

    inputs: tuple[In, ...] = (In("in"),)
    outputs: tuple[Out, ...] = (Out("out"),)

    def process(self, port: str, frame: Frame) -> Frame | Iterable[Frame] | None:
        raise NotImplementedError

    def finish(self) -> Frame | Iterable[Frame] | None:
        return None
