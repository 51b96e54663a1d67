"""Memory over many calls: 1,000 cascading calls through one server process.

The server runs alone in a child process (as in ``benchmarks concurrency``), with provider fakes
at zero latency in this process. Calls run in ``--lanes`` sequential lanes (4 by default, to
keep the run short; each lane places one call after the other). Each call is a whole conversation turn: webhook, stream,
caller speech (sent at once), transcript, LLM reply, TTS audio reaching the caller, hang-up.
After a warm-up (imports, caches, allocator pools), the server's RSS and live trio task count
are read (after a ``gc.collect()``) before and after the calls.

Targets: RSS growth <= 5 MB over 1,000 calls; no task left behind.

    python -m benchmarks memory [--quick] [--calls N] [--warmup N]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import anyio

from . import _rig as rig
from .common import quiet_voicegraph, run as run_on_backend, table, verdict, write_json
from .concurrency import get_stats, server_process, wait_idle

TARGET_GROWTH_MB = 5.0


async def one_call(url: str, audio: bytes) -> None:
    """One call: speak, wait for the reply's first audio, hang up."""
    with anyio.fail_after(30):
        await rig.dial_through(url, audio)


async def run(calls: int, warmup: int, lanes: int, trace: bool = False) -> dict[str, Any]:
    import httpx

    lat = rig.Latencies.zero()
    speech = b"".join(rig.speech_chunks(0.4)) + rig.SILENCE * 15
    async with rig.run_fakes("cascading", lat, turns=calls + warmup + 10) as fakes:
        config = {
            "mode": "cascading",
            "urls": fakes.urls,
            "latencies": {n: getattr(lat, n) for n in rig.Latencies.__struct_fields__},
            "collect": False,
            "tracemalloc": trace,
        }
        async with server_process(config) as url, httpx.AsyncClient(timeout=30) as client:

            async def settled() -> dict[str, Any]:
                """Stats once no call is active, with the fewest live tasks of a few reads
                (the server's HTTP connection tasks come and go with keep-alive)."""
                await wait_idle(client, url)
                reads = []
                for _ in range(5):
                    await anyio.sleep(0.2)
                    reads.append(await get_stats(client, url, gc=True))
                return min(reads, key=lambda s: (s["tasks"], s["rss_bytes"]))

            failures: list[str] = []

            async def lane(n: int) -> None:
                for _ in range(n):
                    try:
                        await one_call(url, speech)
                    except Exception as exc:  # counted; the memory figures still mean something
                        failures.append(rig.describe(exc))

            async def batch(n: int) -> None:
                async with anyio.create_task_group() as tg:
                    for k in range(lanes):
                        tg.start_soon(lane, n // lanes + (k < n % lanes))

            # warm up the way the run goes (same lanes), so pools sized by concurrency
            # (allocator arenas, socket buffers) are already there
            await batch(warmup)
            warm_failures = len(failures)
            failures.clear()
            before = await settled()
            if trace:
                await get_stats(client, url, query="snapshot=1")
            t0 = time.perf_counter()
            await batch(calls // 2)
            middle = await settled()
            await batch(calls - calls // 2)
            wall = time.perf_counter() - t0
            after = await settled()
            top = (await get_stats(client, url, query="top=12")).get("top") if trace else None
    return {
        "calls": calls,
        "warmup_calls": warmup,
        "lanes": lanes,
        "failed_calls": len(failures),
        "failed_warmup_calls": warm_failures,
        "failures": sorted(set(failures))[:5],
        "seconds": wall,
        "before": before,
        "middle": middle,
        "after": after,
        "rss_growth_mb": (after["rss_bytes"] - before["rss_bytes"]) / 2**20,
        "rss_growth_second_half_mb": (after["rss_bytes"] - middle["rss_bytes"]) / 2**20,
        "tracemalloc_top": top,
        "tasks_left_behind": after["tasks"] - before["tasks"],
        "calls_started_by_server": after["started_calls"] - before["started_calls"],
    }


@quiet_voicegraph(logging.ERROR)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks memory", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="12 calls (smoke)")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument(
        "--trace",
        action="store_true",
        help="run the server under tracemalloc and list where the growth was allocated",
    )
    ap.add_argument(
        "--lanes", type=int, default=4, help="calls in flight at once (each lane sequential)"
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.warmup = 12, 4
    if not 1 <= args.calls <= 100_000 or not 0 <= args.warmup <= 10_000:
        raise SystemExit("--calls must be 1..100000 and --warmup 0..10000")
    if not 1 <= args.lanes <= 100:
        raise SystemExit("--lanes must be 1..100")
    r = run_on_backend(run, args.calls, args.warmup, args.lanes, args.trace)
    mb = 2**20
    print(
        table(
            f"Memory: {r['calls']} cascading calls ({r['lanes']} sequential lanes) through one server process",
            ["", "RSS MB", "live tasks", "active calls"],
            [
                [label, r[k]["rss_bytes"] / mb, r[k]["tasks"], r[k]["active_calls"]]
                for label, k in (("before", "before"), ("half-way", "middle"), ("after", "after"))
            ],
        )
    )
    print(
        f"RSS growth {r['rss_growth_mb']:.2f} MB ({r['rss_growth_second_half_mb']:.2f} MB in the "
        f"second half); tasks left behind {r['tasks_left_behind']}; "
        f"{r['calls'] / r['seconds']:.1f} calls/s; failed calls {r['failed_calls']}"
    )
    targets = {
        f"RSS growth <= {TARGET_GROWTH_MB:g} MB over {r['calls']} calls": r["rss_growth_mb"]
        <= TARGET_GROWTH_MB,
        "no task left behind": r["tasks_left_behind"] <= 0 and r["after"]["active_calls"] == 0,
    }
    if args.quick:
        print("targets: not judged on a --quick run")
    else:
        for name, ok in targets.items():
            print(f"target {name}: {verdict(ok)}")
    path = write_json(
        "memory",
        {
            "config": {k: v for k, v in vars(args).items() if k != "out"},
            **r,
            "targets": {} if args.quick else targets,
        },
        args.out,
    )
    for line in r["tracemalloc_top"] or []:
        print(f"  {line}")
    print(f"wrote {path}")
    return 0
