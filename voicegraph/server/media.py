"""A second listening socket for the carrier media streams only, on a lean WebSocket server.

Every carrier stream sends 50 messages a second in and the agent's audio out; through
Hypercorn and ASGI each message costs several times what picows or ``websockets`` cost (see
docs/benchmarks.md). ``AgentRuntime(..., media=MediaListener(...))`` serves the stream paths
on their own port, while webhooks, health and control routes stay on the ASGI app::

    runtime = AgentRuntime(lines, public_url="https://agent.example.com",
                           media=MediaListener("0.0.0.0", 8765))

The answers then point carriers at ``public_url`` (default: the runtime's public URL, where a
proxy routes the stream paths to this port) and the handshake is judged exactly as on the
ASGI path (:func:`~voicegraph.server.carriers.judge_handshake`): signature over the URL the
carrier connected to, ``max_calls``, ``max_waiting_streams``, the stream token, the write
timeout, drain. Served by :meth:`AgentRuntime.serve` / ``run`` on asyncio only.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from ..backends import current_backend
from ..interface import CallInterfaceError
from .asgi import listen_socket

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime

__all__ = ["ENGINES", "MediaListener", "MediaListenerError"]

logger = logging.getLogger("voicegraph.server")

ENGINES = ("picows", "websockets")
"""The WebSocket servers a media listener can run on."""


class MediaListenerError(CallInterfaceError):
    """A media listener's configuration cannot work (the message says what to change)."""


class MediaListener:
    """Where the carrier media streams are served when they are not served by the ASGI app.

    ``host``/``port``: where to listen (``port=0`` picks a free one; :attr:`url` tells which
    after start). ``public_url``: the ws(s) base URL carriers reach this listener at, like
    ``"wss://media.example.com"`` (a path prefix your proxy strips is allowed); ``None`` uses
    the runtime's public URL, for a proxy that routes the stream paths to this port.
    ``engine``: ``"picows"`` (the ``media`` extra; the leanest) or ``"websockets"`` (always
    installed). ``max_message``: bytes per WebSocket message (a larger one closes that
    socket with 1009 and ends only its call). ``handshake_timeout``: seconds a connection
    may take to send its upgrade request. ``reuse_port``: bind with ``SO_REUSEPORT`` (set by
    ``AgentRuntime.serve(reuse_port=True)`` too)."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 8765,
        *,
        public_url: str | None = None,
        engine: str = "picows",
        max_message: int = 64 * 1024,
        handshake_timeout: float = 5.0,
        reuse_port: bool = False,
    ) -> None:
        if engine not in ENGINES:
            raise MediaListenerError(f"engine={engine!r} is not one of {', '.join(ENGINES)}")
        if engine == "picows" and importlib.util.find_spec("picows") is None:
            raise MediaListenerError(
                "MediaListener(engine='picows') needs picows: pip install 'voicegraph[media]' "
                "(or pass engine='websockets')"
            )
        if not 0 <= port <= 65535:
            raise MediaListenerError(f"port={port} must be between 0 and 65535")
        if public_url is not None:
            parts = urlsplit(public_url)
            if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
                raise MediaListenerError(
                    f"public_url={public_url!r} must be a ws(s) URL without a query, like "
                    "'wss://media.example.com'"
                )
            if parts.query or parts.fragment:
                raise MediaListenerError(f"public_url={public_url!r} must not have a query")
            scheme = "wss" if parts.scheme in ("wss", "https") else "ws"
            public_url = scheme + public_url[len(parts.scheme) :].rstrip("/")
        if not 1024 <= max_message <= 16 * 1024 * 1024:
            raise MediaListenerError("max_message must be between 1024 and 16777216 bytes")
        if not 0 < handshake_timeout <= 60:
            raise MediaListenerError("handshake_timeout must be above 0 and at most 60 seconds")
        self.host = host
        self.port = port
        self.public_url = public_url
        self.engine = engine
        self.max_message = max_message
        self.handshake_timeout = float(handshake_timeout)
        self.reuse_port = reuse_port
        self.url: str | None = None
        """``ws://host:port`` once listening."""
        self.serving = False
        """Whether :meth:`serve` listens now. Only then do the runtime's answers name this
        listener; otherwise (a runtime mounted into FastAPI, or served by another ASGI
        server) they name the app's own stream path, which serves the streams as well."""

    def __repr__(self) -> str:
        return (
            f"MediaListener({self.host!r}, {self.port}, public_url={self.public_url!r}, "
            f"engine={self.engine!r})"
        )

    def stream_url(self, runtime: AgentRuntime, scheme: str, headers: dict[str, str]) -> str:
        """The ws(s) base URL (no trailing slash) that carriers reach the stream paths at."""
        if self.public_url is not None:
            return self.public_url
        return runtime.public_base(scheme, headers, True)

    async def serve(
        self,
        runtime: AgentRuntime,
        *,
        reuse_port: bool = False,
        task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``runtime``'s stream paths until cancelled; reports :attr:`url` once bound.
        Calls still open when cancelled are cancelled with it (serve() drains them first)."""
        if current_backend() != "asyncio":
            raise MediaListenerError(
                "MediaListener serves on asyncio only: run the runtime with backend='asyncio' "
                "or drop media="
            )
        sock = listen_socket(self.host, self.port, reuse_port=reuse_port or self.reuse_port)
        host, port = sock.getsockname()[:2]
        self.url = f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"
        if self.engine == "picows":
            from ._media_picows import serve_picows as serve
        else:
            from ._media_websockets import serve_websockets as serve
        async with anyio.create_task_group() as calls:
            try:
                server: Any = await serve(self, runtime, sock, calls)
            except BaseException:
                sock.close()
                raise
            logger.info("media listener (%s) on %s", self.engine, self.url)
            self.serving = True
            task_status.started(self.url)
            try:
                await anyio.sleep_forever()
            finally:
                self.serving = False
                server.close()  # no new connections; open calls are cancelled with the group
                calls.cancel_scope.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await server.wait_closed()  # sockets closed as their calls end
