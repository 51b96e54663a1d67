"""``AgentRuntime``: the ASGI server that answers carrier webhooks and runs one graph per call.

Request flow for one call:

1. The carrier POSTs the call webhook. Its signature is checked against the *public* URL (the
   server behind a TLS proxy sees plain http); a bad or missing signature gets 403 and starts
   nothing. The call is routed by the called number to its :class:`CallInterface`, which answers
   with TwiML / Plivo XML opening a stream. The stream parameters carry a signed, expiring,
   single-use token bound to the call id and line (:mod:`voicegraph.stream_token`).
2. The carrier opens the stream WebSocket. The handshake signature is checked where the carrier
   sends one (Twilio always does); the carrier's start message must carry a valid token for the
   call id it reports. Webhook and stream share no state, so any worker may take any stream.
3. The carrier edge nodes (``voicegraph.transports``) are built on the socket, the interface's
   graph factory (or its pipeline preset) builds the graph, and :class:`~voicegraph.runtime.Call`
   runs it. At max duration the goodbye is said, then the call is ended over the carrier's REST
   API. A failing call is logged and closed; no other call is affected.

WebSockets are served as raw ASGI rather than through Quart: Quart-Trio cancels a handler when
the peer hangs up, while the carrier nodes need to *see* the close (as
:class:`~voicegraph.wsio.SocketClosed`) to end the call in order. HTTP webhooks go through
Quart-Trio. Shutdown (SIGTERM/SIGINT, or :meth:`AgentRuntime.shutdown`) refuses new calls with
503, lets active calls finish for ``drain_timeout`` seconds, then ends the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import anyio

from ._answer import answer_document
from ._carriers import route_for, serve_stream
from ._transfer import serve_transfer, transfer_routes
from .interface import CallInterface, CallInterfaceError
from .signatures import validate_plivo_v3_signature, validate_twilio_signature
from .stream_token import StreamTokens, derive_secret

__all__ = ["AgentRuntime", "AgentRuntimeError"]

logger = logging.getLogger("voicegraph.server")

MAX_BODY = 64 * 1024
MAX_WS_MESSAGE = 64 * 1024


class AgentRuntimeError(CallInterfaceError):
    """The runtime's own configuration cannot work (e.g. two lines on one number)."""


class AgentRuntime:
    """Serves a list of :class:`CallInterface` s.

    ``public_url``: the https URL the carrier is configured with (e.g.
    ``"https://agent.example.com"``; a path prefix that your proxy strips is allowed). Signatures
    are checked against it. ``trust_forwarded_headers=True`` instead rebuilds the URL from
    ``X-Forwarded-Proto``/``X-Forwarded-Host`` -- only behind a proxy that overwrites them.
    ``drain_timeout``: seconds active calls may run on after shutdown starts.
    ``max_calls``: streams served at once by this process (more are refused with 503).
    """

    def __init__(
        self,
        interfaces: Sequence[CallInterface],
        public_url: str | None = None,
        *,
        trust_forwarded_headers: bool = False,
        drain_timeout: float = 30.0,
        max_calls: int = 500,
        on_call: Callable[[Any, Any, Any], None] | None = None,
    ) -> None:
        if not interfaces or not all(isinstance(i, CallInterface) for i in interfaces):
            raise AgentRuntimeError("AgentRuntime needs a non-empty list of CallInterface objects")
        if public_url is None and not trust_forwarded_headers:
            raise AgentRuntimeError(
                "pass public_url= (the https URL the carrier calls, e.g. "
                "'https://agent.example.com'), or trust_forwarded_headers=True behind a proxy "
                "that sets X-Forwarded-Proto and X-Forwarded-Host"
            )
        if public_url is not None:
            parts = urlsplit(public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
                raise AgentRuntimeError(
                    f"public_url={public_url!r} must be an http(s) URL without a query, like "
                    "'https://agent.example.com'"
                )
            public_url = public_url.rstrip("/")
        if not 0 <= drain_timeout <= 4 * 3600:
            raise AgentRuntimeError("drain_timeout must be between 0 and 14400 seconds")
        if max_calls < 1:
            raise AgentRuntimeError("max_calls must be at least 1")
        self.interfaces = tuple(interfaces)
        self.public_url = public_url
        self.trust_forwarded_headers = trust_forwarded_headers
        self.drain_timeout = drain_timeout
        self.max_calls = max_calls
        self._check_routes()
        self.tokens = {
            id(i): StreamTokens(derive_secret(i.auth_token), ttl=i.stream_token_ttl)
            for i in self.interfaces
        }
        self.on_call = on_call
        """``on_call(call, session, timeline)``, called for each accepted call right after its
        :class:`~voicegraph.runtime.Call` is built (before it runs): observe events, collect the
        :class:`~voicegraph.timeline.TurnTimeline`. Must not block or raise."""
        self.calls: dict[str, Any] = {}
        """Active calls of this process: call id -> :class:`~voicegraph.runtime.Call`."""
        self.draining = False
        self._idle = anyio.Event()
        self._idle.set()
        self._shutdown: anyio.Event | None = None
        self._pending_shutdown = False
        self.app = self._build_app()
        """The ASGI application (serve it with any ASGI server)."""

    def __repr__(self) -> str:
        lines = ", ".join(i.phone_number for i in self.interfaces)
        return f"AgentRuntime([{lines}], public_url={self.public_url!r})"

    # -------------------------------------------------------------- configuration

    def _check_routes(self) -> None:
        numbers: set[str] = set()
        self.webhooks: dict[str, list[CallInterface]] = {}
        self.streams: dict[str, list[CallInterface]] = {}
        for i in self.interfaces:
            if i.phone_number in numbers:
                raise AgentRuntimeError(
                    f"two interfaces use {i.phone_number}; each phone number gets one interface"
                )
            numbers.add(i.phone_number)
            self.webhooks.setdefault(i.webhook_path, []).append(i)
            self.streams.setdefault(i.stream_path, []).append(i)
        for path, group in (*self.webhooks.items(), *self.streams.items()):
            if len({route_for(i) for i in group}) > 1 and path in self.streams:
                raise AgentRuntimeError(
                    f"stream_path {path!r} is shared by interfaces with different carriers or "
                    "stream protocols; give each its own stream_path"
                )
            if len({i.telephony for i in group}) > 1:
                raise AgentRuntimeError(
                    f"path {path!r} is shared by Twilio and Plivo interfaces; give each carrier "
                    "its own webhook_path and stream_path"
                )
        clash = set(self.webhooks) & set(self.streams)
        if clash:
            raise AgentRuntimeError(
                f"{sorted(clash)[0]!r} is both a webhook_path and a stream_path; use different paths"
            )

    # ----------------------------------------------------------------- public URL

    def public_base(self, scheme: str, headers: dict[str, str], websocket: bool) -> str:
        """The URL prefix the carrier used: ``public_url`` or the trusted forwarded headers."""
        if self.public_url is not None:
            base = self.public_url
        else:
            proto = headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
            host = headers.get("x-forwarded-host") or headers.get("host", "")
            base = f"{proto}://{host.split(',')[0].strip()}"
        if websocket:
            base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
        return base

    # --------------------------------------------------------------------- webhook

    def _build_app(self) -> Any:
        from quart import Response, request
        from quart_trio import QuartTrio

        quart = QuartTrio("voicegraph")
        quart.config["MAX_CONTENT_LENGTH"] = MAX_BODY

        async def webhook() -> Response:
            return await self._webhook(request, Response)

        for n, path in enumerate(self.webhooks):
            quart.add_url_rule(path, f"webhook{n}", webhook, methods=["GET", "POST"])

        transfers = transfer_routes(self.interfaces)

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "websocket":
                await serve_stream(self, scope, receive, send)
            elif scope["type"] == "http" and scope["path"] in transfers:
                await serve_transfer(self, transfers[scope["path"]], scope, receive, send)
            else:
                await quart(scope, receive, send)

        return app

    async def _webhook(self, request: Any, response_cls: Any) -> Any:
        def reply(status: int, body: str, ctype: str = "text/plain") -> Any:
            return response_cls(body, status=status, content_type=ctype)

        if self.draining:
            return reply(503, "shutting down; not taking new calls")
        group = self.webhooks[request.path]
        telephony = group[0].telephony
        if request.method == "POST":
            form = await request.form
            pairs = list(form.items(multi=True))
            signed: list[tuple[str, str]] | None = pairs
        else:
            pairs, signed = list(request.args.items(multi=True)), None
        values = dict(pairs)
        query = request.query_string.decode("latin-1")
        url = self.public_base(request.scheme, _lower(request.headers.items()), False)
        url += request.path + ("?" + query if query else "")
        to_digits = "".join(c for c in values.get("To", "") if c.isdigit())
        iface = next((i for i in group if i.line == to_digits), None)
        headers = request.headers
        if telephony == "twilio":
            sig = headers.get("X-Twilio-Signature")
            ok = partial(validate_twilio_signature, url, signed, sig)
        else:
            sig, nonce = (
                headers.get("X-Plivo-Signature-V3"),
                headers.get("X-Plivo-Signature-V3-Nonce"),
            )
            ok = partial(validate_plivo_v3_signature, request.method, url, signed, nonce, sig)
        if iface is None:
            if any(ok(i.auth_token) for i in group):
                logger.warning("webhook for unconfigured number %r; hanging up", values.get("To"))
                return reply(404, "no line for this number")
            logger.warning("webhook with invalid signature refused (%s)", url)
            return reply(403, "invalid signature")
        if not ok(iface.auth_token):
            logger.warning("webhook with invalid signature refused (%s)", url)
            return reply(403, "invalid signature")
        call_id = values.get("CallSid" if telephony == "twilio" else "CallUUID", "")
        if not call_id or len(call_id) > 64 or not call_id.replace("-", "").isalnum():
            return reply(400, "missing or malformed call id")
        caller = values.get("From", "")
        if telephony == "plivo":
            caller = "".join(c for c in caller if c.isdigit())
        caller = caller[:64]
        token = self.tokens[id(iface)].mint(call_id, f"{iface.line}:{caller}")
        stream_url = self.public_base(request.scheme, _lower(headers.items()), True)
        doc = answer_document(
            iface,
            stream_url + iface.stream_path,
            {"token": token, "line": iface.line, "caller": caller},
        )
        logger.info("[%s] answered on %s (%s)", call_id, iface.phone_number, iface.pipeline)
        return reply(200, doc, "application/xml")

    # ------------------------------------------------------------------ lifecycle

    def call_started(self, call_id: str, call: Any) -> None:
        self.calls[call_id] = call
        self._idle = anyio.Event() if self._idle.is_set() else self._idle

    def call_ended(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
        if not self.calls:
            self._idle.set()

    def shutdown(self) -> None:
        """Start a graceful shutdown of :meth:`serve` (safe to call more than once)."""
        if self._shutdown is not None:
            self._shutdown.set()
        else:
            self._pending_shutdown = True

    async def drain(self) -> None:
        """Refuse new calls, wait up to ``drain_timeout`` for active calls, then end the rest."""
        self.draining = True
        logger.info("draining: %d active call(s), up to %gs", len(self.calls), self.drain_timeout)
        with anyio.move_on_after(self.drain_timeout):
            await self._idle.wait()
        for call in list(self.calls.values()):
            call.stop("shutdown")
        with anyio.move_on_after(10):
            await self._idle.wait()
        logger.info("drained; %d call(s) left", len(self.calls))

    async def serve(
        self,
        host: str = "0.0.0.0",
        port: int = 8000,
        *,
        handle_signals: bool = True,
        task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve :attr:`app` with Hypercorn's trio worker until shutdown.

        Reports the bound URLs through ``task_status``. With ``handle_signals`` (main thread
        only), SIGTERM and SIGINT start a graceful shutdown (see :meth:`drain`)."""
        from hypercorn.config import Config
        from hypercorn.trio import serve

        config = Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = logger
        config.websocket_max_message_size = MAX_WS_MESSAGE
        config.graceful_timeout = 5.0  # calls were drained before the listeners close
        self._shutdown = shutdown = anyio.Event()
        if self._pending_shutdown:
            shutdown.set()

        async def trigger() -> None:
            await shutdown.wait()
            await self.drain()

        async with anyio.create_task_group() as tg:
            if handle_signals:
                await tg.start(self._watch_signals, shutdown)
            binds = await tg.start(partial(serve, self.app, config, shutdown_trigger=trigger))
            logger.info("serving on %s", ", ".join(binds))
            task_status.started(binds)
            await shutdown.wait()

    async def _watch_signals(
        self, shutdown: anyio.Event, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        import signal

        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    await shutdown.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(wait)
                async for signum in signals:
                    logger.info("signal %d: shutting down gracefully", signum)
                    shutdown.set()
                    tg.cancel_scope.cancel()

    def run(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        """Serve until SIGTERM/SIGINT, then drain (blocking; runs the trio event loop)."""
        anyio.run(partial(self.serve, host, port), backend="trio")


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}
