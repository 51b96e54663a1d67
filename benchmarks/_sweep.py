"""The concurrency benchmark's sweep: N simulated callers in load processes against one server
process, measured per N (server CPU, framework-added latency, drops, RSS), optionally against a
second server process on every N (metrics + tracing on, or the media listener) for a
back-to-back comparison on the same machine state."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

from voicegraph.server import GcPolicy
from voicegraph.server.gc_policy import held

from . import _rig as rig
from ._lean_clock import PHASES
from ._procs import (
    ROOT,
    LoadProc,
    cpu_by_pid,
    get_stats,
    server_process,
    steal_by_cpu,
    wait_idle,
)

__all__ = ["SATURATED_MS", "load_limits", "run_n", "run_sweep"]

SATURATED_MS = 500.0
LOAD_BUSY = 90.0
"""% of a core: a load process (one Python thread), or the load's cores on average, this busy
was the limit."""
CLOCK_LATE_MS = 10.0
"""The callers' 20 ms clock this late (p99) was the limit: its delay is half the latency
budget, and it lands in the caller-side times."""


async def run_n(
    url: str,
    n: int,
    turns: int,
    lat: rig.Latencies,
    speech: float,
    client: Any,
    desync: float = 1.5,
    procs: int = 2,
    cpus: list[int] | None = None,
    idle_rss: int = 0,
    phases: int = PHASES,
) -> dict[str, Any]:
    """N concurrent callers in ``procs`` load processes, ``turns`` turns each; the
    measurements of this N. Load CPU covers this process (the fakes) and the load processes.
    ``phases``: slots of each load process's 20 ms clock (see :mod:`benchmarks._lean_clock`)."""
    procs = max(1, min(procs, n))
    window: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        load: list[LoadProc] = []
        for i in range(procs):
            cfg = {
                "url": url,
                "ks": list(range(i, n, procs)),
                "n": n,
                "turns": turns,
                "speech": speech,
                "desync": desync,
                "cpus": cpus,
                "phases": phases,
            }
            cmd = [sys.executable, "-m", "benchmarks._load", json.dumps(cfg)]
            proc = await stack.enter_async_context(
                await anyio.open_process(cmd, cwd=ROOT, stderr=None)
            )
            load.append(LoadProc(proc))
        pids = [os.getpid()] + [p.pid for p in load]
        ramp = min(4.0, 0.03 * n)
        with anyio.fail_after(60 + ramp):
            for p in load:
                await p.expect("CONNECTED")
        window["start"] = (
            await get_stats(client, url),
            time.monotonic(),
            cpu_by_pid(pids),
            steal_by_cpu(),
        )
        for p in load:
            await p.tell("GO")
        first = anyio.Event()
        with anyio.fail_after(60 + 15 * turns):
            async with anyio.create_task_group() as tg:

                async def until_done(p: LoadProc) -> None:
                    await p.expect("FIRST")
                    first.set()
                    await p.expect("DONE")

                async def measure() -> None:
                    await first.wait()
                    window["end"] = (
                        await get_stats(client, url),
                        time.monotonic(),
                        cpu_by_pid(pids),
                        steal_by_cpu(),
                    )

                tg.start_soon(measure)
                for p in load:
                    tg.start_soon(until_done, p)
        final = await get_stats(client, url)  # while every call is still up: live drops
        for p in load:
            await p.tell("HANGUP")
        with anyio.fail_after(60):
            for p in load:
                results.append(json.loads(await p.expect("RESULT")))
                await p.proc.wait()
    (s0, w0, c0, st0), (s1, w1, c1, st1) = window["start"], window["end"]
    wall = max(w1 - w0, 1e-9)
    server_cpu = 100 * (s1["cpu_s"] - s0["cpu_s"]) / wall
    share = [100 * (c1[pid] - c0[pid]) / wall for pid in pids]  # the fakes', then the callers'
    load_cpu = sum(share)
    load_cores = len(cpus) if cpus else (os.cpu_count() or 1)
    late = [r["clock_late_ms"] for r in results]
    clock_late = {
        q: max((x[q] for x in late if x[q] == x[q]), default=float("nan"))
        for q in ("p50", "p99", "max")
    }
    limits = load_limits(load_cpu, load_cores, share[0], share[1:], clock_late["p99"])
    failures = [f for r in results for f in r["failures"]]
    recs = []
    for r in results:
        for cid, times in r["lines"].items():
            line = _Times(times["speech_ends"], times["first_audio"])
            marks = [tuple(m) for m in final["calls"].get(cid, {}).get("marks", [])]
            recs.extend(rig.turn_records(line, marks, "cascading", lat))  # type: ignore[arg-type]
    ours = {cid for r in results for cid in r["lines"]}
    drops = sum(c["drops"] or 0 for cid, c in final["calls"].items() if cid in ours and c["drops"])
    fa = [r["framework_added_ms"] for r in recs]
    return {
        "calls": n,
        "turns": len(recs),
        "failed_calls": len(failures),
        "failures": failures[:5],
        "server_cpu_percent": server_cpu,
        "server_cpu_percent_per_call": server_cpu / n,
        # full garbage collections while the turns ran (each pauses every call; GcPolicy)
        "full_gcs": final.get("full_gcs", 0) - s0.get("full_gcs", 0),
        "load_process_cpu_percent": load_cpu,
        # of which the simulated callers (the rest is the provider fakes), per process too
        "callers_cpu_percent": sum(share[1:]),
        "caller_processes_cpu_percent": share[1:],
        "fakes_cpu_percent": share[0],
        # how late the callers' 20 ms clock ran (the worst load process's figures)
        "callers_clock_late_ms": clock_late,
        "load_processes": procs,
        "load_cores": load_cores,
        # ms per second the hypervisor kept each core of this VM waiting (/proc/stat steal):
        # a shared machine's pauses, which land in every process's latency at once
        "steal_ms_per_s": {
            str(cpu): round(1000 * (st1[cpu] - st0[cpu]) / wall, 2) for cpu in st1 if cpu in st0
        },
        # with --gc-probe: the server's collections over the window, by generation
        "server_gc_pauses": s1.get("gc_pauses"),
        "load_limited": bool(limits),
        "load_limits": limits,
        "server_rss_bytes": s0["rss_bytes"],
        "rss_bytes_per_call": max(0, s0["rss_bytes"] - idle_rss) / n,
        "steady_window_s": wall,
        "framework_added_ms": rig.summary(fa),
        "framework_added_ms_later_turns": rig.summary(
            [r["framework_added_ms"] for r in recs if r["turn"] > 0]
        ),
        "framework_share_ms": {
            h: rig.summary(
                [r["framework_share_ms"][h] for r in recs if h in r["framework_share_ms"]]
            )
            for h, *_ in rig.CASCADING_HOPS
        },
        "voice_to_voice_ms": rig.summary([r["voice_to_voice_ms"] for r in recs]),
        "dropped_frames": drops,
        "samples": {"framework_added_ms": fa},
    }


def load_limits(
    load_cpu: float, cores: int, fakes: float, callers: list[float], clock_late_p99: float
) -> list[str]:
    """Why the load side was the limit of a run, in words (empty: it was not): its cores, or
    one of its processes, at least ``LOAD_BUSY`` % busy, or the callers' clock late."""
    out = []
    if load_cpu >= LOAD_BUSY * cores:
        out.append(f"its {cores} core(s) were {load_cpu / cores:.0f} % busy")
    if fakes >= LOAD_BUSY:
        out.append(f"the provider fakes' process used {fakes:.0f} % of a core")
    if callers and max(callers) >= LOAD_BUSY:
        out.append(f"a caller process used {max(callers):.0f} % of a core")
    if clock_late_p99 >= CLOCK_LATE_MS:
        out.append(f"the callers' 20 ms clock ran {clock_late_p99:.0f} ms late (p99)")
    return out


class _Times:
    """A load process's record of one line, in the shape ``turn_records`` reads."""

    def __init__(self, speech_ends: list[float], first_audio: list[float | None]) -> None:
        self.speech_ends = speech_ends
        self.first_audio = first_audio


async def run_sweep(
    sweep: list[int],
    turns: int,
    lat: rig.Latencies,
    speech: float,
    desync: float,
    profile: str | None = None,
    observe: list[dict[str, Any]] | None = None,
    setup: dict[str, Any] | None = None,
    versus: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The sweep; with ``observe`` (a list), every N runs again on a server with metrics and
    tracing on, and the comparison rows are appended to ``observe``; with ``versus`` (a list),
    every N runs again on a server whose streams go through the media listener
    (``setup["compare_media"]``, its engine), and those rows are appended to ``versus``.
    ``setup``: ``procs`` (load processes), ``chat_engine`` (the chat fake's HTTP server),
    ``server_cpus`` and ``load_cpus`` (pinning;
    ``None``: not pinned), ``asgi`` (``"hypercorn"`` or ``"uvicorn"``), ``media`` (the main
    server's media listener engine, or ``None``), ``py_spy`` (a file for a py-spy profile of
    the server, raw folded stacks)."""
    import httpx

    setup = setup or {}
    procs, load_cpus = setup.get("procs", 2), setup.get("load_cpus")
    phases = setup.get("caller_phases", PHASES)
    results = []
    servers = 1 + (observe is not None) + (versus is not None)
    total = sum(sweep) * turns * 2 * servers + 110
    quiet_gc = GcPolicy()
    chat_engine = setup.get("chat_engine", "asyncio")
    async with rig.run_fakes("cascading", lat, turns=total, chat_engine=chat_engine) as fakes:
        config = {
            "mode": "cascading",
            "urls": fakes.urls,
            "latencies": {n: getattr(lat, n) for n in rig.Latencies.__struct_fields__},
            "collect": True,
            "profile": profile,
            "cpus": setup.get("server_cpus"),
            "asgi": setup.get("asgi", "hypercorn"),
            "media": setup.get("media"),
            "playout": setup.get("playout"),
            "stt_batch": setup.get("stt_batch"),
            "stt_batch_speaking": setup.get("stt_batch_speaking"),
            "gc_policy": setup.get("gc_policy", True),
            "gc_probe": setup.get("gc_probe", False),
        }
        media = {"media": setup.get("compare_media")}
        async with (
            server_process(config, setup.get("py_spy")) as url,
            _maybe_server(config, {"observability": True} if observe is not None else None) as obs,
            _maybe_server(config, media if versus is not None else None) as url_media,
            httpx.AsyncClient(timeout=30) as client,
        ):
            # One short call first: the server's one-off start-up work (lazy imports, first
            # connections to the fakes) is not a per-call cost.
            for u in (url, obs, url_media):
                if u is not None:
                    await run_n(u, 2, 1, lat, 0.4, client, 0.2, 1, load_cpus)
                    await wait_idle(client, u)
            idle_rss = (await get_stats(client, url, gc=True))["rss_bytes"]
            media_rss = url_media and (await get_stats(client, url_media, gc=True))["rss_bytes"]

            async def measure(u: str, n: int, rss: int = 0) -> dict[str, Any]:
                return await run_n(
                    u, n, turns, lat, speech, client, desync, procs, load_cpus, rss, phases
                )

            # The fakes are on the clock too: their full garbage collections (74 ms seen at 75
            # calls) would count as the server's latency. Run them between the N, as a server's
            # GcPolicy does between calls.
            with held(quiet_gc):
                for n in sweep:
                    r = await measure(url, n, idle_rss)
                    results.append(r)
                    _progress(r)
                    await wait_idle(client, url)
                    quiet_gc.collect()
                    saturated = r["framework_added_ms"]["p50"] > SATURATED_MS
                    if observe is not None and obs is not None:
                        on = await measure(obs, n)
                        await wait_idle(client, obs)
                        observe.append(_observability_row(r, on))
                        _progress(on, " (metrics + tracing)")
                    if versus is not None and url_media is not None:
                        m = await measure(url_media, n, media_rss or 0)
                        await wait_idle(client, url_media)
                        versus.append(_listener_row(r, m))
                        _progress(m, f" (media listener, {setup.get('compare_media')})")
                        saturated = saturated and m["framework_added_ms"]["p50"] > SATURATED_MS
                    if saturated:
                        # the server is past saturation: larger N only take longer to say so
                        print(f"  stopping the sweep: p50 above {SATURATED_MS:g} ms at N={n}")
                        break
    return results


@asynccontextmanager
async def _maybe_server(config: dict[str, Any], changes: dict[str, Any] | None) -> Any:
    """A second server process, ``config`` with ``changes`` (no profile), when given."""
    if changes is None:
        yield None
        return
    async with server_process({**config, **changes, "profile": None}) as url:
        yield url


def _observability_row(off: dict[str, Any], on: dict[str, Any]) -> dict[str, Any]:
    a, b = off["server_cpu_percent_per_call"], on["server_cpu_percent_per_call"]
    return {
        "calls": off["calls"],
        "cpu_percent_per_call_off": a,
        "cpu_percent_per_call_on": b,
        "extra_percent": 100 * (b - a) / a if a > 0 else 0.0,
        "p99_framework_added_ms_on": on["framework_added_ms"]["p99"],
        "failed_calls_on": on["failed_calls"],
        "saturated": max(off["framework_added_ms"]["p50"], on["framework_added_ms"]["p50"])
        > SATURATED_MS,
    }


def _listener_row(asgi: dict[str, Any], media: dict[str, Any]) -> dict[str, Any]:
    """One N on the ASGI server's streams against the media listener's, back to back."""
    a, b = asgi["server_cpu_percent_per_call"], media["server_cpu_percent_per_call"]
    return {
        "calls": asgi["calls"],
        "asgi_cpu_percent_per_call": a,
        "media_cpu_percent_per_call": b,
        "media_over_asgi_percent": 100 * b / a if a > 0 else float("nan"),
        "asgi_p99_ms": asgi["framework_added_ms"]["p99"],
        "media_p99_ms": media["framework_added_ms"]["p99"],
        "asgi_p50_ms": asgi["framework_added_ms"]["p50"],
        "media_p50_ms": media["framework_added_ms"]["p50"],
        # absolute, for when the fakes' critical path (subtracted above) drifts from the rig's
        "asgi_voice_to_voice_p99_ms": asgi["voice_to_voice_ms"]["p99"],
        "media_voice_to_voice_p99_ms": media["voice_to_voice_ms"]["p99"],
        "asgi_drops": asgi["dropped_frames"],
        "media_drops": media["dropped_frames"],
        "asgi_failed": asgi["failed_calls"],
        "media_failed": media["failed_calls"],
        "asgi_rss_bytes_per_call": asgi["rss_bytes_per_call"],
        "media_rss_bytes_per_call": media["rss_bytes_per_call"],
        "load_limited": asgi["load_limited"] or media["load_limited"],
        "media_run": media,
    }


def _progress(r: dict[str, Any], note: str = "") -> None:
    fa = r["framework_added_ms"]
    print(
        f"  N={r['calls']}{note}: p99 framework-added {fa['p99']:.1f} ms, server CPU "
        f"{r['server_cpu_percent']:.0f}%, drops {r['dropped_frames']}, full GCs {r['full_gcs']}, "
        "load process CPU "
        f"{r['load_process_cpu_percent']:.0f}% (callers {r['callers_cpu_percent']:.0f}%, their "
        f"clock p99 {r['callers_clock_late_ms']['p99']:.0f} ms late)"
        + _steal_line(r.get("steal_ms_per_s"))
        + _gc_line(r.get("server_gc_pauses"))
        + (" LOAD-LIMITED" if r["load_limited"] else ""),
        flush=True,
    )


def _steal_line(steal: dict[str, float] | None) -> str:
    if not steal:
        return ""
    return ", hypervisor steal " + ", ".join(f"core {c} {ms:.1f} ms/s" for c, ms in steal.items())


def _gc_line(pauses: dict[str, dict[str, float]] | None) -> str:
    if not pauses:
        return ""
    return ", GC pauses " + ", ".join(
        f"{name} {p['n']} (p50 {p['p50_ms']:.2f} ms, max {p['max_ms']:.1f} ms)"
        for name, p in pauses.items()
        if p["n"]
    )
