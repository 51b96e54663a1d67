"""Run an :class:`~voicegraph.server.AgentRuntime` under Hypercorn on 127.0.0.1:0 in a test.

::

    async with serve_runtime(runtime) as base_url:   # "http://127.0.0.1:<port>"
        ...  # point simulated callers at base_url

Leaving the block shuts the runtime down gracefully (drain, bounded by the runtime's
``drain_timeout``) and, if that takes longer than ``stop_timeout`` seconds, cancels it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio

from ..frames import (
    DTMF,
    AgentText,
    AudioFrame,
    Clear,
    Frame,
    Hangup,
    Interrupt,
    PlaybackMark,
    Transcript,
)
from ..graph import Graph
from ..node import Actor, In, Out
from ..server import AgentRuntime
from ..session import CallSession

__all__ = ["EchoNode", "echo_graph", "serve_runtime"]


class EchoNode(Actor):
    """Plays the caller back to themselves, for end-to-end tests of a carrier edge.

    Media streams: caller audio is sent straight back; DTMF ``d`` sends a mark named
    ``"dtmf-d"``, and ``#`` sends a Clear; mark acknowledgements and clears are published as
    call events. ConversationRelay: each caller prompt is spoken back, DTMF ``d`` answers
    ``"you pressed d"``. A Hangup from the carrier is passed on, which ends the call."""

    def __init__(self, relay: bool) -> None:
        super().__init__()
        self.relay = relay
        if relay:
            self.inputs = (
                In("text", Transcript),
                In("control", Interrupt, DTMF, Hangup),
                In("events", Frame),
            )
            self.outputs = (Out("out", AgentText, Hangup),)
        else:
            self.inputs = (
                In("audio", AudioFrame, policy="drop_oldest"),
                In("control", DTMF, Hangup),
                In("events", Frame),
            )
            self.outputs = (Out("out", AudioFrame, PlaybackMark, Clear, Hangup),)

    async def handle(self, port: str, frame: Frame) -> None:
        if isinstance(frame, (AudioFrame, Hangup)):
            await self.send("out", frame)
        elif isinstance(frame, Transcript):
            await self.send("out", AgentText(text=frame.text, last=True))
        elif isinstance(frame, DTMF):
            if self.relay:
                await self.send("out", AgentText(text=f"you pressed {frame.digit}", last=True))
            elif frame.digit == "#":
                await self.send("out", Clear())
            else:
                await self.send("out", PlaybackMark(name=f"dtmf-{frame.digit}"))
        elif port == "events":
            self.publish(frame)


def echo_graph(session: CallSession) -> Graph:
    """A graph factory (``CallInterface(graph=echo_graph)``): carrier in -> EchoNode -> out."""
    g = Graph("echo")
    g.add("carrier_in", session.carrier_in)
    g.add("echo", EchoNode(relay=session.audio_format is None))
    g.add("carrier_out", session.carrier_out)
    for port in g["echo"].inputs:
        g.connect(f"carrier_in.{port.name}", f"echo.{port.name}")
    g.connect("echo.out", "carrier_out.in")
    return g


@asynccontextmanager
async def serve_runtime(
    runtime: AgentRuntime, *, handle_signals: bool = False, stop_timeout: float = 10.0
) -> AsyncIterator[str]:
    """Serve ``runtime`` on loopback; yields its base URL. ``handle_signals`` installs the
    SIGTERM/SIGINT handler (main thread only), for tests of signal-driven shutdown."""
    done = anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        try:
            await runtime.serve(
                "127.0.0.1", 0, handle_signals=handle_signals, task_status=task_status
            )
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        binds = await tg.start(partial(run))
        try:
            yield binds[0]
        finally:
            runtime.shutdown()
            with anyio.move_on_after(stop_timeout):
                await done.wait()
            tg.cancel_scope.cancel()
