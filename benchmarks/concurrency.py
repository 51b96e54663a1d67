"""Concurrent cascading calls through one server process.

The server (an :class:`~voicegraph.AgentRuntime`, cascading: Deepgram -> chat LLM -> Cartesia)
runs alone in a child process; the simulated Twilio callers and the provider fakes run in this
process, so they do not share the server's core. For each N of the sweep, N callers stream a
continuous line, each saying a sentence and waiting for the reply ``--turns`` times. Reported
per N: the server's CPU (steady state, all calls connected) per call, p50/p99 framework-added
voice-to-voice latency (measured at the caller, minus the fakes' configured critical path;
see ``benchmarks voice``), and frames dropped anywhere in the server's graphs. The verdict is
the largest N that keeps p99 framework-added latency <= 20 ms with no drops. The sweep stops
early once the median framework-added latency passes 500 ms (the server is saturated).

    python -m benchmarks concurrency [--quick] [--sweep 5,10,20,30,50,100,150,200] [--turns N]
        [--backend asyncio|trio|both] [--observability] [--listener hypercorn|media|both]
        [--media-engine picows|websockets] [--caller-phases K]

``--observability`` also runs every N against a second server process with Prometheus metrics
and OpenTelemetry tracing on, and reports the extra server CPU per call they cost (target:
at most 10 %). ``--listener both`` runs every N twice, back to back: the carrier streams
through Hypercorn (the ASGI app) and through the media listener
(``AgentRuntime(media=MediaListener(engine=...))``), and prints the two side by side; on a
shared, noisy machine compare their ratio, not absolute figures. ``--caller-phases`` (default
10): each load process sends its callers' media in that many slots spread over every 20 ms, as
independent carrier streams arrive; 1 sends them all at once (a burst every 20 ms, harsher
than a carrier).

The parts: :mod:`benchmarks._procs` (server and load processes), :mod:`benchmarks._sweep`
(one N, the sweep), :mod:`benchmarks._concurrency_report` (tables and targets).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from . import _rig as rig
from ._concurrency_report import BUDGET_MS, compare, compare_listeners, report
from ._lean_clock import PHASES
from ._procs import get_stats, server_process, wait_idle
from ._sweep import run_sweep
from .common import BACKEND_ENV, backend, quiet_voicegraph, run as run_on_backend, write_json

__all__ = ["get_stats", "main", "server_process", "wait_idle"]  # the memory benchmark's too


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks concurrency", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="N = 2, 4; one turn (smoke)")
    ap.add_argument("--sweep", default="5,10,20,30,50,100,150,200", help="values of N")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--speech", type=float, default=1.0)
    ap.add_argument("--desync", type=float, default=1.5, help="max random start offset (s)")
    ap.add_argument(
        "--caller-phases",
        type=int,
        default=PHASES,
        help="slots over each 20 ms in which the simulated callers send their media (calls "
        "spread over them, as independent carrier streams are); 1: every caller of a load "
        f"process at once (default {PHASES})",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument(
        "--profile", default=None, help="write a pyinstrument profile of the server to this file"
    )
    ap.add_argument(
        "--py-spy",
        default=None,
        help="write a py-spy profile (raw folded stacks) of the server to this file",
    )
    ap.add_argument(
        "--load-procs", type=int, default=2, help="processes running the simulated callers"
    )
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server to core 0 and the load (callers, fakes) to the others",
    )
    ap.add_argument(
        "--asgi",
        choices=("hypercorn", "uvicorn"),
        default="hypercorn",
        help="ASGI server of the server process (uvicorn: asyncio only)",
    )
    ap.add_argument(
        "--listener",
        choices=("hypercorn", "media", "both"),
        default="hypercorn",
        help="where the carrier streams are served: the ASGI app (hypercorn), the media "
        "listener, or both back to back for every N (asyncio only)",
    )
    ap.add_argument(
        "--media-engine",
        choices=("picows", "websockets"),
        default="picows",
        help="the media listener's WebSocket server",
    )
    ap.add_argument(
        "--playout",
        default=None,
        help="PlayoutOptions for every call, e.g. chunk=0.1,lead=0.2,mark_interval=0.1,tick=0 "
        "(to measure the wire's batching; default: the library's defaults)",
    )
    ap.add_argument(
        "--stt-batch",
        type=float,
        default=None,
        help="DeepgramOptions.audio_batch (s) for every call (default: the library's)",
    )
    ap.add_argument(
        "--stt-batch-speaking",
        type=float,
        default=None,
        help="DeepgramOptions.audio_batch_speaking (s) for every call (default: the library's)",
    )
    ap.add_argument(
        "--chat-engine",
        choices=("asyncio", "hypercorn"),
        default="asyncio",
        help="the chat fake's HTTP server on the load side (asyncio: the fakes' lean engine)",
    )
    ap.add_argument(
        "--no-gc-policy",
        action="store_true",
        help="serve with AgentRuntime(gc_policy=False): CPython's own full garbage collections",
    )
    ap.add_argument(
        "--gc-probe",
        action="store_true",
        help="time every garbage collection of the server; report each N's pauses by generation",
    )
    ap.add_argument(
        "--observability",
        action="store_true",
        help="also run each N with metrics + tracing on; report the extra CPU per call",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.sweep, args.turns, args.speech, args.desync = "2,4", 1, 0.4, 0.2
    try:
        args.sweep_n = sorted({int(x) for x in args.sweep.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--sweep {args.sweep!r}: give comma-separated whole numbers") from None
    if not args.sweep_n or args.sweep_n[0] < 1 or args.sweep_n[-1] > 1000:
        raise SystemExit("--sweep: each N must be between 1 and 1000")
    if not 1 <= args.caller_phases <= 20:
        raise SystemExit("--caller-phases: give 1..20 slots per 20 ms")
    try:
        args.playout_fields = (
            {k.strip(): float(v) for k, v in (kv.split("=") for kv in args.playout.split(","))}
            if args.playout
            else None
        )
    except ValueError:
        raise SystemExit("--playout: give name=seconds pairs, e.g. chunk=0.04,lead=0.1") from None
    if not 1 <= args.load_procs <= 32:
        raise SystemExit("--load-procs: give 1 to 32")
    return args


def pinning(no_pin: bool) -> dict[str, Any]:
    """Server on core 0, load on the others (where the OS allows and there are two cores)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if no_pin or len(cores) < 2:
        return {"server_cpus": None, "load_cpus": None}
    return {"server_cpus": cores[:1], "load_cpus": cores[1:]}


def sweep_on(
    name: str, args: argparse.Namespace, lat: rig.Latencies, pins: dict[str, Any]
) -> dict[str, Any]:
    """One sweep on backend ``name``: its runs, observability rows and targets."""
    os.environ[BACKEND_ENV] = name
    if pins["load_cpus"]:
        os.sched_setaffinity(0, pins["load_cpus"])  # this process runs the fakes: load side
    setup = {
        **pins,
        "procs": args.load_procs,
        "asgi": args.asgi,
        "py_spy": str(Path(args.py_spy).resolve()) if args.py_spy else None,
        "playout": args.playout_fields,
        "stt_batch": args.stt_batch,
        "stt_batch_speaking": args.stt_batch_speaking,
        "chat_engine": args.chat_engine,
        "caller_phases": args.caller_phases,
        "gc_policy": not args.no_gc_policy,
        "gc_probe": args.gc_probe,
        "media": args.media_engine if args.listener == "media" else None,
        "compare_media": args.media_engine if args.listener == "both" else None,
    }
    print(
        f"concurrency sweep {args.sweep_n}, {args.turns} turn(s) per call, backend {name}, "
        f"{args.asgi}, streams on {args.listener}, {args.load_procs} load process(es) "
        f"(callers' media in {args.caller_phases} phase(s) per 20 ms), server cores "
        f"{pins['server_cpus'] or 'any'}, load cores {pins['load_cpus'] or 'any'}",
        flush=True,
    )
    profile = str(Path(args.profile).resolve()) if args.profile else None
    observe: list[dict[str, Any]] | None = [] if args.observability else None
    versus: list[dict[str, Any]] | None = [] if args.listener == "both" else None
    runs = run_on_backend(
        run_sweep,
        args.sweep_n,
        args.turns,
        lat,
        args.speech,
        args.desync,
        profile,
        observe,
        setup,
        versus,
    )
    out = {"backend": name, "setup": setup, "runs": runs, "observability": observe}
    return {**out, "listeners": versus}


@quiet_voicegraph(logging.ERROR)
def main(argv: list[str]) -> int:
    args = parse(argv)
    lat = rig.Latencies()
    chosen = os.environ.get(BACKEND_ENV, "asyncio")
    names = ["asyncio", "trio"] if chosen == "both" else [backend()]
    if args.asgi == "uvicorn" and "trio" in names:
        raise SystemExit("--asgi uvicorn runs on asyncio only; use --backend asyncio")
    if args.listener != "hypercorn" and ("trio" in names or args.asgi == "uvicorn"):
        raise SystemExit("--listener media/both needs --backend asyncio and --asgi hypercorn")
    pins = pinning(args.no_pin)  # before this process pins itself to the load's cores
    sweeps = [sweep_on(name, args, lat, pins) for name in names]
    targets = {}
    for sweep in sweeps:
        sweep["targets"] = report(sweep, args)
        if sweep["listeners"]:
            compare_listeners(sweep["listeners"], args.media_engine)
        targets.update({f"{k} ({sweep['backend']})": v for k, v in sweep["targets"].items()})
    first = sweeps[0]
    results: dict[str, Any] = {
        "config": {
            k: v for k, v in vars(args).items() if k not in ("out", "sweep_n", "playout_fields")
        },
        "latencies_s": {n: getattr(lat, n) for n in rig.Latencies.__struct_fields__},
        "critical_path_ms": 1000 * lat.critical_path("cascading"),
        "framework_added_formula": "voice_to_voice at the caller - ("
        + lat.formula("cascading")
        + ")",
        "budget_ms": BUDGET_MS,
        "backend": first["backend"],
        "setup": first["setup"],
        "runs": first["runs"],
        "max_calls_within_budget": first["max_calls_within_budget"],
        "targets": targets,
    }
    if first["observability"] is not None:
        results["observability"] = first["observability"]
    if first["listeners"] is not None:
        results["listeners"] = first["listeners"]
    if len(sweeps) == 2:
        results["backends"] = {
            s["backend"]: {k: v for k, v in s.items() if k != "backend"} for s in sweeps
        }
        results["asyncio_vs_trio"] = compare(sweeps)
    os.environ[BACKEND_ENV] = first["backend"]  # the JSON's machine.backend: the first sweep's
    path = write_json("concurrency", results, args.out)
    os.environ[BACKEND_ENV] = chosen
    print(f"wrote {path}")
    if not args.no_plot:
        from .plots import concurrency_plot

        for p in concurrency_plot(results, path.parent):
            print(f"wrote {p}")
    return 0
