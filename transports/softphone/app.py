"""Mounting the softphone on an :class:`~voicegraph.server.AgentRuntime`.

:func:`enable_softphone` wraps the runtime's ASGI app: ``GET <path>`` serves the page (and its
two scripts under ``<path>/``), the WebSocket ``<path>/ws`` runs one call per connection with
the same graph a carrier call of the interface would get, under the same runtime (max calls,
graceful drain, ``on_call`` hook, turn timeline). Every other request goes to the runtime.

Authorisation: a WebSocket must present the softphone token in its ``start`` message. The page
reads it from the URL fragment (``#token=...``), which browsers never send to the server, so
it stays out of request lines and proxy logs. A handshake whose ``Origin`` is not the server's
own host is refused (another site cannot drive the softphone from a visitor's browser).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec

from voicegraph.graph import Graph
from voicegraph.server.carriers import AsgiSocket, _build_graph, run_call
from voicegraph.session import CallSession

from ..errors import ProtocolError
from . import messages as m
from .nodes import (
    SoftphoneOptions,
    SoftphoneOut,
    SoftphoneRefused,
    TranscriptTap,
    accept_softphone,
    softphone_nodes,
)

if TYPE_CHECKING:
    from voicegraph.interface import CallInterface
    from voicegraph.server import AgentRuntime

__all__ = ["Softphone", "SoftphoneConfigError", "TOKEN_ENV", "enable_softphone"]

logger = logging.getLogger("voicegraph.softphone")

TOKEN_ENV = "VOICEGRAPH_SOFTPHONE_TOKEN"
"""Environment variable holding the softphone token when none is passed."""

_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
_FILES = {"softphone.js": "text/javascript", "worklet.js": "text/javascript"}
CLOSE_POLICY, CLOSE_PROTOCOL, CLOSE_ERROR = 1008, 1007, 1011


class SoftphoneConfigError(ValueError):
    """``enable_softphone`` was called with options that cannot work."""


class Softphone:
    """The softphone mounted on one runtime (returned by :func:`enable_softphone`).

    The token is kept out of ``repr``; :meth:`page_url` is the one place it appears."""

    def __init__(
        self,
        runtime: AgentRuntime,
        interface: CallInterface,
        path: str,
        token: str,
        options: SoftphoneOptions,
    ) -> None:
        self.runtime = runtime
        self.interface = interface
        self.path = path
        self.options = options
        self.calls = 0
        """Softphone calls accepted so far."""
        self._token = token
        base = resources.files(__package__)
        page = (base / "page.html").read_text(encoding="utf-8").replace("__BASE__", path)
        self._files: dict[str, tuple[bytes, str]] = {
            path: (page.encode(), "text/html; charset=utf-8")
        }
        for name, ctype in _FILES.items():
            body = (base / name).read_bytes()
            self._files[f"{path}/{name}"] = (body, f"{ctype}; charset=utf-8")
        self._inner = runtime.app

    def __repr__(self) -> str:
        return f"Softphone(path={self.path!r}, interface={self.interface!r})"

    def page_url(self, base_url: str, *, autostart: bool = False) -> str:
        """The URL to open in a browser, token included, e.g.
        ``page_url("http://127.0.0.1:8000")``. Print it for the developer; never log it.
        ``autostart`` makes the page call as soon as it loads (browsers then need autoplay
        allowed, as in automated tests)."""
        query = "?autostart=1" if autostart else ""
        return f"{base_url.rstrip('/')}{self.path}{query}#token={self._token}"

    # ---------------------------------------------------------------- ASGI

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The runtime's ASGI app with the softphone routes in front."""
        kind, path = scope["type"], scope.get("path", "")
        if kind == "http" and (path in self._files or path == self.path + "/"):
            await self._serve_file(scope, send)
        elif kind == "websocket" and path == self.path + "/ws":
            await self._serve_socket(scope, receive, send)
        else:
            await self._inner(scope, receive, send)

    async def _serve_file(self, scope: dict[str, Any], send: Any) -> None:
        body, ctype = self._files.get(scope["path"], self._files[self.path])
        status = 200
        if scope["method"] not in ("GET", "HEAD"):
            body, ctype, status = b"GET only", "text/plain", 405
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (
                b"content-security-policy",
                b"default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'",
            ),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _serve_socket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        sock = AsgiSocket(receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        runtime = self.runtime
        if not _same_origin(headers):
            logger.warning("softphone socket refused: cross-origin handshake")
            await sock.reject(403, "cross-origin softphone connection refused")
            return
        if runtime.draining or len(runtime.calls) >= runtime.max_calls:
            await sock.reject(503, "not taking calls now")
            return
        if not await sock.accept():
            return
        try:
            await self._run_call(sock)
        except Exception as exc:  # one call's failure must never reach the server
            logger.error("softphone call failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
            await sock.close(CLOSE_ERROR, "internal error")
        finally:
            await sock.close()

    async def _run_call(self, sock: AsgiSocket) -> None:
        call_id = "softphone-" + secrets.token_hex(6)
        try:
            start = await accept_softphone(sock, call_id, self._token, self.options)
        except SoftphoneRefused as exc:
            logger.warning("[%s] softphone refused: %s", call_id, exc.reason)
            await sock.close(CLOSE_POLICY, "unauthorised: open the URL with its #token")
            return
        except ProtocolError as exc:
            logger.warning("[%s] softphone closed before its start: %s", call_id, exc.reason)
            await sock.close(CLOSE_PROTOCOL, exc.reason.encode()[:120].decode("utf-8", "ignore"))
            return
        carrier_in, carrier_out = softphone_nodes(sock, start, self.options)
        iface = self.interface

        async def hangup() -> None:
            await sock.close(1000, "call ended")

        session = CallSession(
            call_id=call_id,
            carrier="softphone",
            mode=iface.pipeline,
            stream_id=call_id,
            carrier_in=carrier_in,
            carrier_out=carrier_out,
            audio_format=start.media_format,
            from_number="softphone",
            to_number=iface.phone_number,
            interface=iface,
            hangup=hangup,
        )
        graph = _build_graph(iface, session)
        tap_transcript(graph, carrier_out)
        await sock.send(
            msgspec.json.encode(
                m.Started(callId=call_id, sampleRate=start.media_format.sample_rate)
            ).decode()
        )
        self.calls += 1
        logger.info("[%s] softphone call started", call_id)
        await run_call(self.runtime, session, graph)


def tap_transcript(graph: Graph, out: SoftphoneOut) -> None:
    """Add a :class:`TranscriptTap` named ``softphone_transcript`` to a preset graph, fed by the
    caller's turns and the agent's text (cascading: ``turns`` and ``agent.text``; realtime:
    ``model.events``). Graphs of other shapes get no tap: the page then shows latency only."""
    tap = TranscriptTap(out)
    sources: list[tuple[str, tuple[type, ...]]] = []
    if "turns" in graph and "agent" in graph:
        from voicegraph.frames import AgentText, EndOfTurn

        sources = [("turns", (EndOfTurn,)), ("agent.text", (AgentText,))]
    elif "model" in graph:
        from voicegraph.frames import AgentText, Transcript

        sources = [("model.events", (Transcript, AgentText))]
    if not sources:
        return
    graph.add("softphone_transcript", tap)
    for src, types in sources:
        graph.connect(src, "softphone_transcript", types=types)


def _same_origin(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if origin is None:
        return True  # not a browser; the token still decides
    host = headers.get("host", "")
    return origin.partition("://")[2].rstrip("/") == host


def enable_softphone(
    runtime: AgentRuntime,
    interface: CallInterface,
    *,
    path: str = "/softphone",
    token: str | None = None,
    options: SoftphoneOptions | None = None,
) -> Softphone:
    """Serve the browser softphone from ``runtime`` for calls on ``interface`` (see module docs).

    ``token`` (16-128 URL-safe characters) defaults to the ``VOICEGRAPH_SOFTPHONE_TOKEN``
    environment variable, else a fresh random one; give the developer
    :meth:`Softphone.page_url`. Call before serving: it replaces ``runtime.app``. Raises
    :class:`SoftphoneConfigError` for a managed-mode interface (the softphone carries audio), a
    bad path or token, or a path the runtime already serves."""
    if interface.pipeline == "managed" and interface.graph_factory is None:
        raise SoftphoneConfigError(
            "the softphone streams audio, so the interface needs pipeline='cascading' or "
            "'realtime' (managed mode leaves speech to Twilio ConversationRelay)"
        )
    if not _PATH.fullmatch(path) or len(path) > 200 or path == "/" or path.endswith("/"):
        raise SoftphoneConfigError(
            f"path={path!r} must be an absolute URL path like '/softphone' (letters, digits, "
            "'-', '_', '.', '~', '/'; no trailing '/')"
        )
    taken = set(runtime.webhooks) | set(runtime.streams)
    clash = {path, path + "/ws", *(f"{path}/{name}" for name in _FILES)} & taken
    if clash:
        raise SoftphoneConfigError(
            f"{sorted(clash)[0]!r} is already a webhook or stream path; pick another softphone path"
        )
    token = token if token is not None else os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    if not _TOKEN.fullmatch(token):
        raise SoftphoneConfigError(
            f"the softphone token must be 16-128 characters of letters, digits, '-' and '_' "
            f"(got {len(token)} characters); pass token= or set {TOKEN_ENV}"
        )
    phone = Softphone(runtime, interface, path, token, options or SoftphoneOptions())
    runtime.app = phone.app
    return phone
