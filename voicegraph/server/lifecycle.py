"""Serving a runtime until shutdown, and the drain that ends it without cutting a call off.

:func:`serve` runs the ASGI app under Hypercorn on the running backend. Shutdown (SIGTERM or
SIGINT, or :meth:`AgentRuntime.shutdown`) starts :func:`drain`: new calls are refused with 503
(``/readyz`` too), active calls may finish for ``drain_timeout`` seconds, then each remaining
call hears a goodbye and is hung up over REST (within ``goodbye_timeout``); a second signal
skips the rest of the wait and goes straight to the goodbyes. The listeners close only after
the calls were drained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from .asgi import bound_urls, hypercorn_config, listen_socket, serve_hypercorn
from .gc_policy import held
from .warmup import warm

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime

__all__ = ["MAX_WS_MESSAGE", "drain", "serve"]

logger = logging.getLogger("voicegraph.server")

MAX_WS_MESSAGE = 64 * 1024
"""Bytes one WebSocket message from a carrier may have."""


async def drain(runtime: AgentRuntime) -> None:
    """Refuse new calls, wait up to ``drain_timeout`` for active calls (or until
    :meth:`~AgentRuntime.hurry`), then end the rest politely: goodbye, REST hang-up (bounded by
    ``goodbye_timeout``); a call that still runs after that is stopped."""
    runtime.draining = True
    logger.info("draining: %d active call(s), up to %gs", len(runtime.calls), runtime.drain_timeout)
    with anyio.move_on_after(runtime.drain_timeout):
        async with anyio.create_task_group() as tg:

            async def idle() -> None:
                await runtime._idle.wait()
                tg.cancel_scope.cancel()

            async def hurried() -> None:
                await runtime._hurry.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(idle)
            tg.start_soon(hurried)
    if runtime.calls:
        logger.info("drain deadline: saying goodbye to %d call(s)", len(runtime.calls))
    with anyio.move_on_after(runtime.goodbye_timeout + 1.0):
        async with anyio.create_task_group() as tg:
            for call_id, call in list(runtime.calls.items()):
                ender = runtime._enders.get(call_id)
                if ender is None:
                    call.stop("shutdown")
                else:
                    tg.start_soon(ender)
    for call in list(runtime.calls.values()):
        call.stop("shutdown")
    with anyio.move_on_after(2):
        await runtime._idle.wait()
    logger.info("drained; %d call(s) left", len(runtime.calls))


async def serve(
    runtime: AgentRuntime,
    host: str,
    port: int,
    *,
    handle_signals: bool,
    reuse_port: bool,
    task_status: anyio.abc.TaskStatus[list[str]],
    on_ready: Callable[[list[str]], None] | None,
) -> None:
    """Serve ``runtime.app`` until shutdown, then drain (see :meth:`AgentRuntime.serve`)."""
    warm(runtime)  # the first call's imports, before any call can wait on them
    sock = listen_socket(host, port, reuse_port=reuse_port)
    binds = bound_urls(sock)
    # calls were drained before the listeners close
    config = hypercorn_config(
        sock, errorlog=logger, max_message=MAX_WS_MESSAGE, graceful_timeout=1.0
    )
    runtime._shutdown = shutdown = anyio.Event()
    if runtime._pending_shutdown:
        shutdown.set()

    async def trigger() -> None:
        await shutdown.wait()
        await drain(runtime)

    # before the first call: what start-up built is frozen with the modules
    with held(runtime.gc_policy):
        async with anyio.create_task_group() as tg:

            async def server() -> None:
                await serve_hypercorn(runtime.app, config, trigger)
                tg.cancel_scope.cancel()  # drained and closed: stop watching signals

            if handle_signals:
                await tg.start(_watch_signals, runtime, shutdown)
            if runtime.observability is not None:
                # marked before the server starts, so its ASGI lifespan does not start it too
                runtime._running["observability"] = True
                tg.start_soon(_observe, runtime, shutdown)
            if runtime.media is not None:
                media = partial(runtime.media.serve, runtime, reuse_port=reuse_port)
                binds = [*binds, await tg.start(media)]
            tg.start_soon(server)
            logger.info("serving on %s", ", ".join(binds))
            task_status.started(binds)
            if on_ready is not None:
                on_ready(binds)


async def _observe(runtime: AgentRuntime, shutdown: anyio.Event) -> None:
    try:
        await runtime.observability.run(runtime, shutdown)
    finally:
        runtime._running["observability"] = False


async def _watch_signals(
    runtime: AgentRuntime,
    shutdown: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    import signal

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if not shutdown.is_set():
                logger.warning(
                    "signal %d: shutting down gracefully (calls may finish for %gs; "
                    "signal again to end them now)",
                    signum,
                    runtime.drain_timeout,
                )
                shutdown.set()
            else:
                # Never a silent kill: the remaining calls still get their goodbye.
                logger.warning(
                    "signal %d again: ending %d remaining call(s) now, with a goodbye",
                    signum,
                    len(runtime.calls),
                )
                runtime.hurry()
