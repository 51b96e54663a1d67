"""``voicegraph serve --workers N``: N worker processes serve one port, and the parent owns their
lifetime.

Each worker binds the port with ``SO_REUSEPORT``, so the kernel spreads connections over them;
calls need no shared state (stream tokens are signed). The parent first binds (without
listening) a ``SO_REUSEPORT`` socket of its own: that turns ``--port 0`` into one free port that
all workers share, and holds it for them.

Signals: the workers run in their own process group, so a terminal's Ctrl-C reaches only the
parent, and the parent forwards every SIGTERM/SIGINT it gets to every worker, once. Each worker
then drains like a single server (refuse new calls, let active calls finish), and the parent
exits once all workers have. A worker whose parent vanished (e.g. SIGKILL) shuts itself down the
same way.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

__all__ = ["serve_workers"]

logger = logging.getLogger("voicegraph.server")

PARENT_POLL_S = 1.0


def _reserve_port(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))  # never listens: connections go only to the workers' sockets
    return sock


def serve_workers(
    spec: str,
    host: str,
    port: int,
    workers: int,
    *,
    softphone: bool,
    backend: str,
    log_format: str = "text",
) -> int:
    """Run ``workers`` processes serving ``spec`` on ``host``:``port`` until they have all
    exited (after SIGTERM/SIGINT to this process); returns the highest worker exit code.

    The workers are fresh processes (spawned), so they log as this process was set up to: the
    root and ``voicegraph.server`` levels (``-v``) and ``log_format`` (``"text"`` or
    ``"json"``, ``--log-format``)."""
    import multiprocessing

    holder = _reserve_port(host, port)
    port = holder.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLogger().level
    server_level = logger.level
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                spec,
                host,
                port,
                softphone,
                backend,
                os.getpid(),
                (level, server_level, log_format),
            ),
            name=f"voicegraph-worker-{n}",
        )
        for n in range(workers)
    ]

    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                try:
                    os.kill(proc.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.start()
            if received:  # a signal came while workers were still being started
                os.kill(proc.pid, received[0])  # type: ignore[arg-type]
        where = f"[{host}]" if ":" in host else host
        sys.stdout.write(f"serving on http://{where}:{port} with {workers} workers\n")
        sys.stdout.flush()
        for proc in procs:
            proc.join()  # a forwarded signal interrupts nothing: waitpid is retried (PEP 475)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
    from ..observability.prometheus import worker_exited

    for proc in procs:  # multiprocess metrics: an exited worker's live gauges stop counting
        if proc.pid is not None:
            worker_exited(proc.pid)
    return max((p.exitcode or 0 for p in procs), default=0)


def _watch_parent(parent_pid: int) -> None:
    """Daemon thread: once the parent is gone, SIGTERM ourselves (the runtime then drains)."""
    stop = threading.Event()
    while not stop.wait(PARENT_POLL_S):
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _worker(
    spec: str,
    host: str,
    port: int,
    softphone: bool,
    backend: str,
    parent_pid: int,
    logs: tuple[int, int, str],
) -> None:
    os.setpgrp()  # the terminal's Ctrl-C goes to the parent only, which forwards it once
    level, server_level, log_format = logs
    if log_format == "json":
        from ..observability.logjson import configure_json_logging

        configure_json_logging(level)
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(server_level)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    from ..cli.serve import serve_one

    serve_one(spec, host, port, softphone, None, True, backend)
