"""Helpers for carrier-edge tests: collecting sinks, frame sources, and graph runners."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from voicegraph import Actor, Call, Frame, Graph, In, Out


class Collect(Actor):
    """Records every (port, frame) it receives; optionally waits for ``gate`` first."""

    def __init__(self, ports: Sequence[str], gate: anyio.Event | None = None) -> None:
        super().__init__()
        self.inputs = tuple(In(p, capacity=1) for p in ports)
        self.got: list[tuple[str, Frame]] = []
        self.gate = gate

    async def handle(self, port: str, frame: Frame) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.got.append((port, frame))

    def frames(self, port: str) -> list[Frame]:
        return [f for p, f in self.got if p == port]


class Feed(Actor):
    """Sends the given frames out of ``"out"`` and ends. It pauses between frames so control
    frames (which overtake queued media by design) arrive in the order given."""

    outputs = (Out("out"),)

    def __init__(self, frames: Sequence[Frame], pause: float = 0.01) -> None:
        super().__init__()
        self.to_send = list(frames)
        self.pause = pause

    async def run(self) -> None:
        for f in self.to_send:
            await self.send("out", f)
            await anyio.sleep(self.pause)


def reader_graph(carrier_in: Actor, sink: Collect) -> Graph:
    g = Graph("reader")
    g.add("carrier_in", carrier_in)
    g.add("sink", sink)
    for port in (p.name for p in carrier_in.outputs):
        g.connect(f"carrier_in.{port}", f"sink.{port}")
    return g


def writer_graph(carrier_out: Actor, frames: Sequence[Frame]) -> Graph:
    g = Graph("writer")
    g.add("feed", Feed(frames))
    g.add("carrier_out", carrier_out)
    g.connect("feed", "carrier_out.in")
    return g


async def run_call(graph: Graph, timeout: float = 5.0):
    with anyio.fail_after(timeout):
        return await Call(graph, "test-call").run()
