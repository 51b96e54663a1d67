"""The runtime's ASGI application: which request goes where.

* WebSocket scopes are carrier streams (:func:`voicegraph.server.carriers.serve_stream`). They
  are served as raw ASGI rather than through Quart: Quart-Trio cancels a handler when the peer
  hangs up, while the carrier nodes need to *see* the close (as
  :class:`~voicegraph.wsio.SocketClosed`) to end the call in order.
* Transfer documents (Plivo fetches one when a call is transferred) are raw ASGI too
  (:mod:`voicegraph.server.transfer`); metrics go to the observability app when one is set.
* Everything else goes through Quart (Quart-Trio on Trio): the call webhooks
  (:mod:`voicegraph.server.webhook`), the status path (:mod:`voicegraph.server.status`), the
  control routes and probes (:mod:`voicegraph.server.control`), and the ASGI lifespan, which
  runs the runtime's background work (:mod:`voicegraph.server.cluster`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..backends import current_backend
from . import control
from .carriers import serve_stream
from .cluster import run_lifespan
from .status import status_webhook
from .transfer import serve_transfer, transfer_routes
from .webhook import answer_webhook

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime

__all__ = ["MAX_BODY", "build_app", "route_path"]

MAX_BODY = 64 * 1024
"""Bytes a webhook's body may have (Quart answers 413 beyond)."""


def build_app(runtime: AgentRuntime) -> Any:
    """The ASGI application serving ``runtime`` (its :attr:`~AgentRuntime.app`)."""
    # One Quart app per backend, built on first use: Quart runs on asyncio, Quart-Trio on
    # Trio. The ASGI app itself is backend-neutral, so one runtime object can be served by
    # Hypercorn on either backend or mounted into an asyncio framework (FastAPI/Starlette).
    quarts: dict[str, Any] = {}
    transfers = transfer_routes(runtime.interfaces)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if runtime.observability is not None and runtime.observability.handles(scope):
            await runtime.observability.asgi(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await serve_stream(runtime, scope, receive, send)
            return
        if scope["type"] == "http":
            transfer = transfers.get(route_path(scope))
            if transfer is not None:
                await serve_transfer(runtime, transfer, scope, receive, send)
                return
        backend = current_backend()
        quart = quarts.get(backend)
        if quart is None:
            quart = quarts[backend] = _build_quart(runtime, backend)
        if scope["type"] == "lifespan":
            await run_lifespan(runtime, quart, scope, receive, send)
        else:
            await quart(scope, receive, send)

    return app


def _build_quart(runtime: AgentRuntime, backend: str) -> Any:
    from quart import Quart, Response, request

    if backend == "trio":
        from quart_trio import QuartTrio

        quart: Any = QuartTrio("voicegraph")
    else:
        quart = Quart("voicegraph")
    quart.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    async def webhook() -> Response:
        answer: Response = await answer_webhook(runtime, request, Response)
        return answer

    for n, path in enumerate(runtime.webhooks):
        quart.add_url_rule(path, f"webhook{n}", webhook, methods=["GET", "POST"])

    async def status() -> Response:
        answer: Response = await status_webhook(runtime, request, Response)
        return answer

    quart.add_url_rule(runtime.status_path, "status", status, methods=["POST"])
    control.add_routes(quart, runtime)
    return quart


def route_path(scope: dict[str, Any]) -> str:
    """The request's path inside this app (a mount's ``root_path`` removed if the server
    left it in ``path``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "").rstrip("/")
    return path[len(root) :] if root and path.startswith(root + "/") else path
