"""Serve an ASGI app with Hypercorn on the running backend: its asyncio worker (on uvloop when
the loop is uvloop) or its trio worker.

The listening socket is bound here, before Hypercorn starts, and handed over by file
descriptor: the port (``0`` picks a free one) is known at once, connections queue in the
backlog until Hypercorn accepts, and ``SO_REUSEPORT`` lets several worker processes share one
port. Both workers take the socket the same way, so the callers need no per-backend code.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ..backends import current_backend

__all__ = ["bound_urls", "hypercorn_config", "listen_socket", "serve_hypercorn"]


def listen_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (``SO_REUSEPORT`` if ``reuse_port``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_urls(sock: socket.socket) -> list[str]:
    """``["http://host:port"]`` for a bound socket."""
    host, port = sock.getsockname()[:2]
    return [f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"]


def hypercorn_config(
    sock: socket.socket,
    *,
    errorlog: logging.Logger,
    max_message: int,
    graceful_timeout: float,
) -> Any:
    """A Hypercorn config serving on ``sock``, which it takes over (do not close it after)."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = errorlog
    config.websocket_max_message_size = max_message
    config.graceful_timeout = graceful_timeout
    return config


async def serve_hypercorn(
    app: Any, config: Any, shutdown_trigger: Callable[[], Awaitable[Any]]
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, on the running backend's worker.

    Cancelling this coroutine also shuts Hypercorn down gracefully (within the config's
    ``graceful_timeout``): its asyncio worker breaks if it is cancelled from outside, so the
    server runs shielded and cancellation is turned into its shutdown trigger."""
    import anyio

    serve: Callable[..., Awaitable[None]]
    if current_backend() == "trio":
        from hypercorn.trio import serve as trio_serve

        serve = trio_serve
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        serve = asyncio_serve
    stop = anyio.Event()

    async def trigger() -> None:
        async with anyio.create_task_group() as tg:

            async def first(wait: Callable[[], Awaitable[Any]]) -> None:
                await wait()
                tg.cancel_scope.cancel()

            tg.start_soon(first, shutdown_trigger)
            tg.start_soon(first, stop.wait)

    async with anyio.create_task_group() as tg:

        async def stop_when_cancelled() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                stop.set()

        tg.start_soon(stop_when_cancelled)
        with anyio.CancelScope(shield=True):
            await serve(app, config, shutdown_trigger=trigger)
        tg.cancel_scope.cancel()
