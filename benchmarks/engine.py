"""Engine overhead: an 8-node pass-through chain of 320-byte audio frames (20 ms at 8 kHz PCM16).

Scenarios, each for the all-actors and the fused (inline stages) configuration:

* throughput -- frames pushed as fast as possible through the chain (target >= 100,000/s);
* unloaded latency -- one frame in flight, source to sink over the 8 hops (target mean <= 40 us);
* real-time load -- N chains each sending one frame per 20 ms (target: 400 chains under 60 % of
  one core with p99 frame latency <= 5 ms);
* memory per idle graph (compiled and ready, not running).

A bare chain of anyio memory object streams (8 hops, same frames) runs in the same process as a
reference, so the ratio is meaningful on a noisy machine.

    python -m benchmarks engine [--quick] [--frames N] [--chains N] [--seconds S] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from typing import Any

import anyio

from voicegraph import Actor, AudioFrame, Call, EndOfInput, Frame, Graph, In, Out, Stage

from .common import percentile, run as run_on_backend, table, verdict, write_json

HOPS = 8
PAYLOAD = bytes(320)


class _Source(Actor):
    outputs = (Out("out", AudioFrame),)

    def __init__(self, n: int, pace: Any = None, gate: Any = None) -> None:
        super().__init__()
        self.n, self.pace, self.gate = n, pace, gate

    async def run(self) -> None:
        send = self.send
        if self.gate is not None:  # one frame in flight: wait for the sink each time
            for i in range(self.n):
                self.gate.ready = anyio.Event()
                await send(
                    "out", AudioFrame(data=PAYLOAD, timestamp=i, capture_time=time.perf_counter())
                )
                await self.gate.ready.wait()
        elif self.pace:
            ticker = self.pace
            for i in range(self.n):
                await ticker.wait()
                await send(
                    "out", AudioFrame(data=PAYLOAD, timestamp=i, capture_time=time.perf_counter())
                )
        else:
            frame = AudioFrame(data=PAYLOAD)
            for _ in range(self.n):
                await send("out", frame)


class Ticker:
    """Frames arriving every 20 ms, as from carrier sockets: one timer for the whole process
    wakes every waiting chain. (One Trio timer per chain would measure Trio's timer machinery --
    a cancel scope and a Cancelled exception per wake-up -- not the graph; the per-chain-timer
    figure is reported separately as a reference.)"""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self._tick = anyio.Event()

    async def wait(self) -> None:
        await self._tick.wait()

    async def run(self) -> None:
        """Tick until cancelled (a chain that missed a tick waits for the next one)."""
        t = anyio.current_time()
        while True:
            t += self.period
            await anyio.sleep_until(t)
            tick, self._tick = self._tick, anyio.Event()
            tick.set()


class _PassActor(Actor):
    inputs = (In("in", AudioFrame),)
    outputs = (Out("out", AudioFrame),)

    async def run(self) -> None:
        receive, send = self.inbox.receive, self.send
        while True:
            try:
                _, frame = await receive()
            except EndOfInput:
                return
            await send("out", frame)


class _PassStage(Stage):
    inputs = (In("in", AudioFrame),)
    outputs = (Out("out", AudioFrame),)

    def process(self, port: str, frame: Frame) -> Frame:
        return frame


class _Sink(Actor):
    inputs = (In("in", AudioFrame),)

    def __init__(self, latencies: list[float] | None = None, gate: Any = None) -> None:
        super().__init__()
        self.count = 0
        self.latencies = latencies
        self.gate = gate

    async def run(self) -> None:
        receive, lat, gate = self.inbox.receive, self.latencies, self.gate
        while True:
            try:
                _, frame = await receive()
            except EndOfInput:
                return
            self.count += 1
            if lat is not None:
                lat.append(time.perf_counter() - frame.capture_time)  # type: ignore[attr-defined]
            if gate is not None:
                gate.ready.set()


def build(mode: str, source: _Source, sink: _Sink) -> Graph:
    """src -> 8 pass-through nodes -> sink; ``mode`` "actors" or "fused"."""
    g = Graph(f"chain-{mode}", fuse=mode == "fused")
    g.add("src", source)
    names = ["src"]
    for i in range(HOPS):
        g.add(f"p{i}", _PassActor() if mode == "actors" else _PassStage())
        names.append(f"p{i}")
    g.add("sink", sink)
    g.chain(*names, "sink")
    return g


async def throughput(mode: str, n: int) -> float:
    sink = _Sink()
    g = build(mode, _Source(n), sink)
    t0 = time.perf_counter()
    await Call(g).run()
    dt = time.perf_counter() - t0
    assert sink.count == n, (sink.count, n)
    return n / dt


async def unloaded_latency(mode: str, n: int) -> list[float]:
    class Gate:
        ready: anyio.Event

    gate, lat = Gate(), []  # type: ignore[var-annotated]
    g = build(mode, _Source(n, gate=gate), _Sink(lat, gate=gate))
    await Call(g).run()
    return lat[n // 10 :]  # drop warm-up


async def realtime_load(mode: str, chains: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    frames = int(seconds / 0.02)
    ticker = Ticker()
    calls = [Call(build(mode, _Source(frames, pace=ticker), _Sink(lat))) for _ in range(chains)]
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as clock:
        clock.start_soon(ticker.run)
        async with anyio.create_task_group() as tg:
            for c in calls:
                tg.start_soon(c.run)
        clock.cancel_scope.cancel()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {
        "cpu_percent_of_one_core": 100 * cpu / wall,
        "p50_ms": 1000 * percentile(lat, 50),
        "p99_ms": 1000 * percentile(lat, 99),
        "frames": len(lat),
    }


async def bare_ticks(chains: int, seconds: float) -> float:
    """Reference: CPU % of ``chains`` tasks that only wait for the shared 20 ms tick -- the
    event loop's floor under the real-time scenario (no frames, no graph)."""
    frames = int(seconds / 0.02)
    ticker = Ticker()

    async def wait() -> None:
        for _ in range(frames):
            await ticker.wait()

    c0, t0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as clock:
        clock.start_soon(ticker.run)
        async with anyio.create_task_group() as tg:
            for _ in range(chains):
                tg.start_soon(wait)
        clock.cancel_scope.cancel()
    return 100 * (time.process_time() - c0) / (time.perf_counter() - t0)


async def bare_timers(chains: int, seconds: float) -> float:
    """Reference: CPU % of ``chains`` tasks that each sleep on their own Trio timer until the
    next 20 ms (no frames): what per-call timers cost on this event loop."""
    frames = int(seconds / 0.02)

    async def tick() -> None:
        t = anyio.current_time()
        for _ in range(frames):
            t += 0.02
            await anyio.sleep_until(t)

    c0, t0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(chains):
            tg.start_soon(tick)
    return 100 * (time.process_time() - c0) / (time.perf_counter() - t0)


def idle_graph_bytes(mode: str, count: int = 200) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [Call(build(mode, _Source(1), _Sink())) for _ in range(count)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / count


async def bare_anyio_chain(n: int) -> float:
    """Reference: 8 hops of anyio memory object streams (buffer 64), same frames."""
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    streams = [anyio.create_memory_object_stream[AudioFrame](64) for _ in range(HOPS + 1)]
    done = anyio.Event()

    async def hop(
        rx: MemoryObjectReceiveStream[AudioFrame], tx: MemoryObjectSendStream[AudioFrame]
    ) -> None:
        async with rx, tx:
            async for f in rx:
                await tx.send(f)

    async def sink(rx: MemoryObjectReceiveStream[AudioFrame]) -> None:
        count = 0
        async with rx:
            async for _ in rx:
                count += 1
        assert count == n
        done.set()

    frame = AudioFrame(data=PAYLOAD)
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(HOPS):
            tg.start_soon(hop, streams[i][1], streams[i + 1][0])
        tg.start_soon(sink, streams[HOPS][1])
        async with streams[0][0] as tx:
            for _ in range(n):
                await tx.send(frame)
    return n / (time.perf_counter() - t0)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks engine", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--chains", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.chains, args.seconds = 2_000, 20, 0.5
    results: dict[str, Any] = {"config": vars(args), "modes": {}}

    async def run_all() -> None:
        results["reference_anyio_streams_fps"] = await bare_anyio_chain(args.frames)
        results["reference_bare_ticks_cpu_percent"] = await bare_ticks(args.chains, args.seconds)
        results["reference_bare_timers_cpu_percent"] = await bare_timers(args.chains, args.seconds)
        for mode in ("actors", "fused"):
            fps = await throughput(mode, args.frames)
            lat = await unloaded_latency(mode, max(200, args.frames // 20))
            rt = await realtime_load(mode, args.chains, args.seconds)
            results["modes"][mode] = {
                "throughput_fps": fps,
                "unloaded_latency_us": {
                    "mean": 1e6 * sum(lat) / len(lat),
                    "p50": 1e6 * percentile(lat, 50),
                    "p99": 1e6 * percentile(lat, 99),
                },
                "realtime": rt,
            }

    run_on_backend(run_all)
    for mode in ("actors", "fused"):
        results["modes"][mode]["idle_graph_bytes"] = idle_graph_bytes(mode)

    rows = []
    for mode, r in results["modes"].items():
        rt = r["realtime"]
        rows.append(
            [
                mode,
                r["throughput_fps"],
                r["unloaded_latency_us"]["mean"],
                r["unloaded_latency_us"]["p99"],
                rt["cpu_percent_of_one_core"],
                rt["p99_ms"],
                r["idle_graph_bytes"] / 1024,
            ]
        )
    print(
        table(
            f"Engine: 8-node pass-through chain, 320-byte frames ({args.chains} real-time chains for {args.seconds:.0f} s)",
            [
                "config",
                "frames/s",
                "latency mean us",
                "latency p99 us",
                f"{args.chains} chains CPU %",
                "p99 ms",
                "idle graph KiB",
            ],
            rows,
        )
    )
    ref = results["reference_anyio_streams_fps"]
    print(f"reference: bare anyio memory-stream chain, same run: {ref:,.0f} frames/s")
    ticks = results["reference_bare_ticks_cpu_percent"]
    timers = results["reference_bare_timers_cpu_percent"]
    print(
        f"reference: {args.chains} tasks that only wait for the shared 20 ms tick (no frames), "
        f"same run: {ticks:.1f}% of a core -- the event loop's floor under the real-time scenario"
    )
    print(
        f"reference: {args.chains} tasks each on its own 20 ms Trio timer (no frames), same run: "
        f"{timers:.1f}% of a core"
    )
    best = results["modes"]["fused"]
    targets = {
        "throughput >= 100,000 frames/s (fused)": best["throughput_fps"] >= 100_000,
        "unloaded mean <= 40 us (fused)": best["unloaded_latency_us"]["mean"] <= 40,
        f"{args.chains} chains < 60% of a core (fused)": best["realtime"]["cpu_percent_of_one_core"]
        < 60,
        "p99 <= 5 ms under real-time load (fused)": best["realtime"]["p99_ms"] <= 5,
    }
    if args.quick:
        print("targets: not judged on a --quick run")
    else:
        for name, ok in targets.items():
            print(f"target {name}: {verdict(ok)}")
    results["targets"] = {k: bool(v) for k, v in targets.items()} if not args.quick else {}
    path = write_json("engine", results, args.out)
    print(f"wrote {path}")
    return 0
