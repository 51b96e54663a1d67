"""The server process of the concurrency and memory benchmarks.

    python -m benchmarks._server CONFIG_JSON

``CONFIG_JSON``: ``{"mode", "urls", "latencies", "collect", "tracemalloc", "profile",
"observability"}`` (``profile``: a file for a pyinstrument text profile of the whole run;
``observability``: serve with Prometheus metrics and OpenTelemetry tracing on; ``cpus``: cores to
pin the process to; ``asgi``: ``"hypercorn"`` (default, as ``AgentRuntime.serve``) or
``"uvicorn"``; ``media``: serve the streams through a media listener on this engine,
``"picows"`` or ``"websockets"``); ``playout``: PlayoutOptions fields for every call; ``stt_batch``:
DeepgramOptions.audio_batch; ``stt_batch_speaking``: its audio_batch_speaking; ``gc_probe``: time
every garbage collection, see
:mod:`benchmarks._gcprobe`). It serves an
:class:`~voicegraph.AgentRuntime` on 127.0.0.1 (ephemeral port), prints ``URL <base url>`` on
stdout, and adds one route for the load process, ``GET /bench/stats``: JSON with this
process's CPU seconds, RSS, live task count, active and started calls, and -- when
``collect`` -- each call's timeline marks and live drop counts, and with ``gc_probe`` the
collections' pauses since the previous request. Query: ``gc=1`` collects
first; with ``"tracemalloc": true``, ``snapshot=1`` takes a baseline and ``top=N`` lists the N
largest allocation growths since. SIGTERM shuts it down
gracefully. It runs on the backend of ``$VOICEGRAPH_BENCH_BACKEND`` (``--backend``; asyncio by
default).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

import anyio
import msgspec

from . import _rig as rig
from .common import run as run_on_backend


def task_count() -> int:
    """Live tasks of this event loop (the runtime's own and every call's), on either backend."""
    from voicegraph.backends import current_backend

    if current_backend() == "asyncio":
        import asyncio

        return len(asyncio.all_tasks())
    import trio

    root = trio.lowlevel.current_root_task()
    assert root is not None  # called from inside trio.run
    stack = [root]
    n = 0
    while stack:
        task = stack.pop()
        n += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return n


def rss_bytes() -> int:
    import psutil  # the bench extra

    return int(psutil.Process().memory_info().rss)


_snapshot: list[Any] = []


_gc_pauses: list[Any] = []  # the GcPauses of --gc-probe, when on


def stats(runtime: Any, log: rig.ServerLog, query: str) -> dict[str, Any]:
    import tracemalloc
    from urllib.parse import parse_qs

    q = parse_qs(query)
    if "gc" in q:
        gc.collect()
    t = os.times()
    out: dict[str, Any] = {
        "cpu_s": t.user + t.system,
        "rss_bytes": rss_bytes(),
        "tasks": task_count(),
        "active_calls": len(runtime.calls),
        "started_calls": log.started,
        "full_gcs": gc.get_stats()[2]["collections"],  # oldest generation, whoever ran them
    }
    if _gc_pauses:  # the collections' pauses since the last stats (a window's, at its end)
        out["gc_pauses"] = _gc_pauses[0].take()
    if "snapshot" in q and tracemalloc.is_tracing():
        _snapshot[:] = [tracemalloc.take_snapshot()]
    if "top" in q and _snapshot:
        diff = tracemalloc.take_snapshot().compare_to(_snapshot[0], "lineno")
        out["top"] = [str(d) for d in diff[: int(q["top"][0])]]
    if log.keep_calls:
        out["calls"] = {
            cid: {
                "marks": log.marks.get(cid, []),
                "drops": rig.drops(call) if cid in runtime.calls else None,
            }
            for cid, call in log.calls.items()
        }
    return out


def observability() -> Any:
    """Metrics and tracing as in production, with spans batched to an exporter that discards
    them (the export's network cost is the collector's, not the process's)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from voicegraph.observability import Metrics, Observability, Tracing

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return Observability(metrics=Metrics(), tracing=Tracing(provider))


def playout_options(fields: dict[str, float]) -> None:
    """Every Playout of this process uses these options (a benchmark knob: the runtime builds
    its graphs from the presets' defaults, which an application sets with
    ``playout_options=``)."""
    from voicegraph.nodes.audio import playout as module

    options = msgspec.structs.replace(module.PlayoutOptions(), **fields)
    init = module.Playout.__init__

    def with_options(self: Any, fmt: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["options"] = options
        init(self, fmt, **kwargs)

    module.Playout.__init__ = with_options  # type: ignore[method-assign,assignment]


async def start(config: dict[str, Any]) -> None:
    if config.get("tracemalloc"):
        import tracemalloc

        tracemalloc.start(8)
    lat = rig.Latencies(**config["latencies"])
    if config.get("gc_probe"):
        from ._gcprobe import GcPauses

        _gc_pauses[:] = [GcPauses()]
        _gc_pauses[0].start()
    if config.get("playout"):
        playout_options(config["playout"])
    log = rig.ServerLog(keep_calls=bool(config.get("collect", True)))
    media = None
    if config.get("media"):
        from voicegraph.server import MediaListener

        media = MediaListener("127.0.0.1", 0, engine=config["media"])
    runtime = rig.runtime(
        # fixed turn-taking: with it the providers' critical path bounds voice-to-voice from
        # below, so framework-added (voice-to-voice minus that path) is the framework's own
        # delay; preemptive replies start before the STT endpoint and would read negative
        rig.interface(
            config["mode"],
            config["urls"],
            lat,
            "fixed" if config["mode"] == "cascading" else None,
            stt_batch=config.get("stt_batch"),
            stt_batch_speaking=config.get("stt_batch_speaking"),
        ),
        log.on_call,
        max_calls=2000,
        gc_policy=config.get("gc_policy", True),
        observability=observability() if config.get("observability") else None,
        media=media,
    )
    inner = runtime.app

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/stats":
            body = msgspec.json.encode(stats(runtime, log, scope["query_string"].decode()))
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)

    runtime.app = app

    if config.get("asgi", "hypercorn") == "uvicorn":
        await serve_uvicorn(app)
        return
    async with anyio.create_task_group() as tg:
        binds = await tg.start(runtime.serve, "127.0.0.1", 0)
        if media is not None:
            media.public_url = media.url  # the callers reach it where it is bound
        print(f"URL {binds[0]}", flush=True)


async def serve_uvicorn(app: Any) -> None:
    """Serve ``app`` with uvicorn (asyncio only: uvloop, httptools, its ``websockets``
    protocol) on an ephemeral port, for the comparison with Hypercorn's asyncio worker."""
    import uvicorn

    from voicegraph.server.asgi import bound_urls, listen_socket

    sock = listen_socket("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="error",
            lifespan="off",
            ws="websockets",
            ws_max_size=1 << 20,
            ws_ping_interval=None,
            ws_per_message_deflate=False,
        )
    )
    print(f"URL {bound_urls(sock)[0]}", flush=True)
    await server.serve(sockets=[sock])


def main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    config = json.loads(argv[0])
    if config.get("cpus"):
        os.sched_setaffinity(0, config["cpus"])
    profile = config.get("profile")
    if not profile:
        run_on_backend(start, config)
        return 0
    from pyinstrument import Profiler  # pip install pyinstrument

    profiler = Profiler(interval=0.001, async_mode="disabled")
    with profiler:
        run_on_backend(start, config)
    with open(profile, "w") as f:
        f.write(profiler.output_text(unicode=True, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
