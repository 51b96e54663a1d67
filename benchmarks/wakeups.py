"""Wake-ups per call-second: how often a cascading call's nodes are woken, and by what.

One (or ``--calls N``) simulated Twilio caller talks to a real server through the provider fakes
(Deepgram, chat, Cartesia): it speaks a sentence, hears the reply, then keeps the line open in
silence, as a caller listening does. For every node of the server's call graph it counts, per
second of call:

* ``hops`` -- frames the node took from its inbox (a channel hop);
* ``wakes`` -- receives that found the inbox empty and so suspended the node's task until a
  frame, end of input or a deadline woke it (a task switch each);
* ``timer`` -- of those, wakes by the node's own deadline (keep-alive, playout pacing, turn
  timers), not by a frame;
* ``direct`` -- frames the node's direct handler took in the sender's call while the node
  waited (:meth:`~voicegraph.channel.Inbox.set_direct`; a function call, no hop, no wake);
* ``fused`` -- frames a fused stage processed in its sender's task (a function call, no wake).

The carrier reader (``carrier_in``) is woken by its socket, once per carrier message; its
``frames_out`` count is shown for scale. The counters are installed on
:class:`~voicegraph.channel.Inbox` by this benchmark only (no cost in a normal call).

    python -m benchmarks wakeups [--quick] [--calls N] [--listen S] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from . import _rig as rig
from .common import backend, run as run_on_backend, table, write_json

KINDS = ("hops", "wakes", "timer", "direct", "fused")


class Count:
    """Receives, waits and deadline wakes of one inbox owner (a node name)."""

    __slots__ = ("direct", "hops", "timer", "wakes")

    def __init__(self) -> None:
        self.hops = 0
        self.wakes = 0
        self.timer = 0
        self.direct = 0


@contextmanager
def counting() -> Iterator[dict[str, Count]]:
    """Count every :class:`Inbox` receive in this process while the block runs, by owner."""
    from voicegraph.channel import Inbox

    counts: dict[str, Count] = {}
    receive, receive_until = Inbox.receive, Inbox.receive_until
    set_direct = Inbox.set_direct

    def count(inbox: Inbox) -> Count:
        c = counts.get(inbox.owner)
        if c is None:
            c = counts[inbox.owner] = Count()
        return c

    def entry(inbox: Inbox) -> tuple[Count, bool]:
        return count(inbox), inbox.qsize() == 0

    @functools.wraps(receive)
    async def counted_receive(self: Inbox) -> tuple[str, Any]:
        c, empty = entry(self)
        item = await receive(self)
        c.hops += 1
        c.wakes += empty
        return item

    @functools.wraps(receive_until)
    async def counted_receive_until(
        self: Inbox, deadline: float | None, grid: float = 0.0, phase: float = 0.0
    ) -> tuple[str, Any] | None:
        c, empty = entry(self)
        item = await receive_until(self, deadline, grid, phase)
        if item is None:
            c.timer += 1
        else:
            c.hops += 1
        c.wakes += empty
        return item

    @functools.wraps(set_direct)
    def counted_set_direct(self: Inbox, port: str, handler: Callable[[Any], bool] | None) -> None:
        if handler is None:
            set_direct(self, port, None)
            return
        c, take = count(self), handler

        def counted(frame: Any) -> bool:
            took = take(frame)
            c.direct += took
            return took

        set_direct(self, port, counted)

    patched: dict[str, Callable[..., Any]] = {
        "receive": counted_receive,
        "receive_until": counted_receive_until,
        "set_direct": counted_set_direct,
    }
    for name, fn in patched.items():
        setattr(Inbox, name, fn)
    try:
        yield counts
    finally:
        Inbox.receive, Inbox.receive_until = receive, receive_until  # type: ignore[method-assign]
        Inbox.set_direct = set_direct  # type: ignore[method-assign]


async def measure(calls: int, listen: float) -> dict[str, Any]:
    """Run ``calls`` cascading calls (one turn, then ``listen`` s of silence); return the
    per-node counts divided by the calls' total duration."""
    chunks = rig.speech_chunks(1.5)
    from voicegraph.testing.server import serve_runtime

    lat = rig.Latencies()
    log = rig.ServerLog()
    with counting() as counts:
        async with rig.run_fakes("cascading", lat, turns=calls * 3 + 5) as fakes:
            iface = rig.interface("cascading", fakes.urls, lat)
            runtime = rig.runtime(iface, log.on_call)
            async with serve_runtime(runtime) as url:

                async def one(k: int) -> None:
                    await anyio.sleep(0.37 * k)
                    async with rig.caller(url).dial() as call:
                        line = rig.Line(call)
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(line.run)
                            await anyio.sleep(0.3)
                            line.say(chunks)
                            await line.wait_spoken()
                            await line.wait_reply()
                            await line.wait_quiet()
                            await anyio.sleep(listen)
                            tg.cancel_scope.cancel()

                async with anyio.create_task_group() as tg:
                    for k in range(calls):
                        tg.start_soon(one, k)
                # the server notices each hang-up and finishes its calls (polled: a Call
                # offers no event for its end to an observer)
                with anyio.move_on_after(10):
                    while any(c.result is None for c in log.calls.values()):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
    seconds = sum(c.result.duration for c in log.calls.values() if c.result is not None)
    if not seconds:
        raise RuntimeError("no call finished; nothing to divide by")
    fused: dict[str, int] = {}
    carrier_msgs = 0
    for c in log.calls.values():
        from voicegraph.node import Stage

        for name, node in c.graph.nodes.items():
            if isinstance(node, Stage) and name not in counts:
                fused[name] = fused.get(name, 0) + node.stats.frames_in
        carrier_msgs += c.graph.nodes["carrier_in"].stats.frames_out
    nodes: dict[str, dict[str, float]] = {}
    for name, cnt in sorted(counts.items()):
        nodes[name] = {
            "hops": cnt.hops / seconds,
            "wakes": cnt.wakes / seconds,
            "timer": cnt.timer / seconds,
            "direct": cnt.direct / seconds,
            "fused": 0.0,
        }
    for name, n in sorted(fused.items()):
        nodes[name] = {"hops": 0.0, "wakes": 0.0, "timer": 0.0, "direct": 0.0, "fused": n / seconds}
    total = {k: sum(v[k] for v in nodes.values()) for k in KINDS}
    return {
        "calls": len(log.calls),
        "call_seconds": seconds,
        "carrier_in_frames_out_per_s": carrier_msgs / seconds,
        "nodes": nodes,
        "total": total,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks wakeups", description=__doc__)
    ap.add_argument("--calls", type=int, default=1, help="concurrent callers")
    ap.add_argument("--listen", type=float, default=5.0, help="seconds of silence after the reply")
    ap.add_argument("--quick", action="store_true", help="one call, 1 s of silence (smoke)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.listen = 1, 1.0
    result = run_on_backend(measure, args.calls, args.listen)
    rows = [[name, *(f"{v[k]:.1f}" for k in KINDS)] for name, v in result["nodes"].items()]
    rows.append(["TOTAL", *(f"{result['total'][k]:.1f}" for k in KINDS)])
    title = (
        f"wake-ups per call-second ({backend()}, {result['calls']} call(s), "
        f"{result['call_seconds']:.1f} call-s; carrier_in sent "
        f"{result['carrier_in_frames_out_per_s']:.1f} frames/s)"
    )
    print(
        table(title, ["node", "hops/s", "wakes/s", "of which timer", "direct/s", "fused/s"], rows)
    )
    path = write_json("wakeups", result, args.out)
    print(f"wrote {path}")
    return 0
