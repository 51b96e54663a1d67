"""``AgentRuntime``: the ASGI server that answers carrier webhooks and runs one graph per call.

Request flow for one call:

1. The carrier POSTs the call webhook. Its signature is checked against the *public* URL (the
   server behind a TLS proxy sees plain http); a bad or missing signature gets 403 and starts
   nothing. The call is routed by the called number to its :class:`CallInterface`, which answers
   with TwiML / Plivo XML opening a stream. The stream parameters carry a signed, expiring,
   single-use token bound to the call id and line (:mod:`voicegraph.server.stream_token`).
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
503 (``/readyz`` too), lets active calls finish for ``drain_timeout`` seconds, then says goodbye
to the rest and hangs them up over REST; a second signal skips to the goodbyes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import anyio

from ..backends import DEFAULT_BACKEND, check_backend, current_backend
from ..backends import run as run_on
from ..interface import _PATH as _STATUS_PATH
from ..interface import CallInterface, CallInterfaceError
from . import control, outbound
from .answer import answer_document
from .asgi import bound_urls, hypercorn_config, listen_socket, serve_hypercorn
from .carriers import answered_outbound, route_for, serve_stream, stream_subject
from .cluster import admit_call, default_handlers, run_lifespan
from .media import MediaListener
from .outbound import CallRegistry, OutboundCall
from .preflight import check_runtime
from .signatures import validate_plivo_v3_signature, validate_twilio_signature
from .state import open_state
from .status import status_webhook
from .stream_token import StreamTokens, derive_secret
from .transfer import serve_transfer, transfer_routes

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
    ``drain_timeout``: seconds active calls may run on after shutdown starts; then each
    remaining call hears a goodbye and is hung up over REST (within ``goodbye_timeout``, 6 s).
    The defaults end a shutdown within about 28 s, inside a usual 30 s grace period (set
    ``drain_timeout`` to your orchestrator's grace minus 10). A second SIGTERM/SIGINT skips the
    rest of the wait and goes straight to the goodbyes. ``GET /readyz`` answers 503 while
    draining (a load balancer's readiness probe); ``GET /healthz`` answers 200 while serving.
    ``max_waiting_streams``: accepted streams that have not sent their start message yet (each
    waits at most 10 s); more are refused with 503. ``write_timeout``: seconds one write to a
    carrier socket may stay blocked (the peer stopped reading) before its call is ended.
    ``max_calls``: calls at once (more are refused with 503) -- in this process, or across every
    instance sharing ``state``. ``state``: where single-use tokens, admission and the call
    registry live: None (this process), a Redis URL such as ``"redis://10.0.0.5:6379/0"``, or a
    :class:`~voicegraph.server.state.CallState` (see docs/deploy.md). ``control_token``: enables the
    authenticated call-control routes (:mod:`voicegraph.server.control`).
    ``observability``: metrics, traces, loop-lag monitor (see ``docs/observability.md``).
    ``status_path``: where the carriers post call-status, machine-detection and recording
    reports for calls placed with :meth:`dial` (signature-checked like the webhook);
    ``max_outbound``: calls placed by this process and not yet over; ``on_status``: called
    (sync or async) with each :class:`~voicegraph.frames.CallStatus` report.
    ``media``: a :class:`~voicegraph.server.media.MediaListener` that :meth:`serve` runs
    beside the ASGI app; the answers then send the carrier streams there (see docs/deploy.md).
    """

    def __init__(
        self,
        interfaces: Sequence[CallInterface],
        public_url: str | None = None,
        *,
        trust_forwarded_headers: bool = False,
        drain_timeout: float = 20.0,
        max_calls: int = 500,
        on_call: Callable[[Any, Any, Any], None] | None = None,
        state: Any = None,
        control_token: str | None = None,
        max_waiting_streams: int = 100,
        write_timeout: float = 10.0,
        observability: Any = None,
        status_path: str = "/call/status",
        max_outbound: int = 50,
        on_status: Callable[[Any], Any] | None = None,
        media: MediaListener | None = None,
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
        if control_token is not None and len(control_token) < 16:
            raise AgentRuntimeError("control_token must be a secret of at least 16 characters")
        try:
            self.state = open_state(state)
        except ValueError as exc:
            raise AgentRuntimeError(str(exc)) from None
        self.control_token = control_token
        self.call_handlers = default_handlers()
        """Message type -> ``async handler(runtime, call_id, message)``, run on the worker
        holding the call when ``state.publish(call_id, message)`` is called anywhere."""
        if max_waiting_streams < 1:
            raise AgentRuntimeError("max_waiting_streams must be at least 1")
        if not 0 < write_timeout <= 300:
            raise AgentRuntimeError("write_timeout must be above 0 and at most 300 seconds")
        self.max_waiting_streams = max_waiting_streams
        self.write_timeout = float(write_timeout)
        self.waiting_streams = 0
        """Accepted carrier sockets still waiting for their start message."""
        if observability is not None and not hasattr(observability, "call_started"):
            raise AgentRuntimeError("observability= takes voicegraph.observability.Observability")
        if not 1 <= max_outbound <= 10_000:
            raise AgentRuntimeError("max_outbound must be between 1 and 10000")
        if media is not None and not isinstance(media, MediaListener):
            raise AgentRuntimeError("media= takes a voicegraph.server.MediaListener")
        self.media = media
        """The carrier streams' own listener, or ``None`` (streams go to the ASGI app)."""
        self.interfaces = tuple(interfaces)
        self.public_url = public_url
        self.trust_forwarded_headers = trust_forwarded_headers
        self.drain_timeout = drain_timeout
        self.max_calls = max_calls
        self.status_path = status_path
        self.max_outbound = max_outbound
        self.on_status = on_status
        self._check_routes()
        check_runtime(self)  # what would fail every call is refused now, not in the first call
        self.registry = CallRegistry()
        """Placed calls and live calls by carrier call id (see :mod:`voicegraph.server.outbound`)."""
        self.dialing = 0
        self.tokens = {
            id(i): StreamTokens(derive_secret(i.auth_token), ttl=i.stream_token_ttl)
            for i in self.interfaces
        }
        self.on_call = on_call
        """``on_call(call, session, timeline)``, called for each accepted call right after its
        :class:`~voicegraph.runtime.Call` is built (before it runs): observe events, collect the
        :class:`~voicegraph.timeline.TurnTimeline`. Must not block or raise."""
        self.observability = observability
        """Metrics route, traces and loop-lag monitor (a
        :class:`voicegraph.observability.Observability`, or ``None``)."""
        self.calls: dict[str, Any] = {}
        """Active calls of this process: call id -> :class:`~voicegraph.runtime.Call`."""
        self.sessions: dict[str, Any] = {}
        """Their :class:`~voicegraph.session.CallSession` s, by call id."""
        self.draining = False
        self.goodbye_timeout = 6.0
        """Seconds the goodbye and REST hang-up of calls still active at the drain deadline
        may take."""
        self._enders: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        self._hurry = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._shutdown: anyio.Event | None = None
        self._pending_shutdown = False
        self._running: dict[str, bool] = {}  # background work that runs now (see lifespan())
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
        if any(control.reserved_path(p) for p in (*self.webhooks, *self.streams)):
            raise AgentRuntimeError(
                "webhook_path and stream_path must not be /healthz, /readyz or under /calls/"
            )
        clash = set(self.webhooks) & set(self.streams)
        if self.status_path in (*self.webhooks, *self.streams) or not _STATUS_PATH.fullmatch(
            self.status_path
        ):
            raise AgentRuntimeError(
                f"status_path={self.status_path!r} must be an absolute URL path like "
                "'/call/status', different from every webhook_path and stream_path"
            )
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
        # One Quart app per backend, built on first use: Quart runs on asyncio, Quart-Trio on
        # Trio. The ASGI app itself is backend-neutral, so one runtime object can be served by
        # Hypercorn on either backend or mounted into an asyncio framework (FastAPI/Starlette).
        quarts: dict[str, Any] = {}
        transfers = transfer_routes(self.interfaces)

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if self.observability is not None and self.observability.handles(scope):
                await self.observability.asgi(scope, receive, send)
                return
            if scope["type"] == "websocket":
                await serve_stream(self, scope, receive, send)
                return
            if scope["type"] == "http":
                transfer = transfers.get(_route_path(scope))
                if transfer is not None:
                    await serve_transfer(self, transfer, scope, receive, send)
                    return
            backend = current_backend()
            quart = quarts.get(backend)
            if quart is None:
                quart = quarts[backend] = self._build_quart(backend)
            if scope["type"] == "lifespan":
                await run_lifespan(self, quart, scope, receive, send)
            else:
                await quart(scope, receive, send)

        return app

    def _build_quart(self, backend: str) -> Any:
        from quart import Quart, Response, request

        if backend == "trio":
            from quart_trio import QuartTrio

            quart: Any = QuartTrio("voicegraph")
        else:
            quart = Quart("voicegraph")
        quart.config["MAX_CONTENT_LENGTH"] = MAX_BODY

        async def webhook() -> Response:
            answer: Response = await self._webhook(request, Response)
            return answer

        for n, path in enumerate(self.webhooks):
            quart.add_url_rule(path, f"webhook{n}", webhook, methods=["GET", "POST"])

        async def status() -> Response:
            answer: Response = await status_webhook(self, request, Response)
            return answer

        quart.add_url_rule(self.status_path, "status", status, methods=["POST"])
        control.add_routes(quart, self)
        return quart

    def mount_prefix(self, root_path: str) -> str:
        """The path prefix the carrier's URLs carry in front of this app's own paths: the ASGI
        ``root_path`` (set by a mount, e.g. ``app.mount("/voice", runtime.app)``, or by the
        server's ``--root-path``), unless ``public_url`` already ends with it."""
        root_path = root_path.rstrip("/")
        if not root_path:
            return ""
        if self.public_url is not None and urlsplit(self.public_url).path.endswith(root_path):
            return ""
        return root_path

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
        prefix = self.mount_prefix(request.root_path)
        url = self.public_base(request.scheme, _lower(request.headers.items()), False)
        url += prefix + request.path + ("?" + query if query else "")
        # an outbound call's webhook names our line as From and the callee as To
        outbound = values.get("Direction", "").startswith("outbound")
        ours, theirs = ("From", "To") if outbound else ("To", "From")
        line_digits = "".join(c for c in values.get(ours, "") if c.isdigit())
        iface = next((i for i in group if i.line == line_digits), None)
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
        caller = values.get(theirs, "")
        if telephony == "plivo":
            caller = "".join(c for c in caller if c.isdigit())
        caller = caller[:64]
        refusal = await admit_call(self, call_id, iface)
        if refusal is not None:
            return reply(503, refusal)
        params = {"line": iface.line, "caller": caller}
        if outbound:
            mode = request.args.get("dial", "")
            params["dial"] = await answered_outbound(self, telephony, call_id, values, mode)
        token = self.tokens[id(iface)].mint(call_id, stream_subject(params))
        lower = _lower(headers.items())
        if self.media is not None:  # the carrier streams have their own listener
            stream_url = self.media.stream_url(self, request.scheme, lower)
        else:
            stream_url = self.public_base(request.scheme, lower, True) + prefix
        doc = answer_document(iface, stream_url + iface.stream_path, {"token": token, **params})
        logger.info("[%s] answered on %s (%s)", call_id, iface.phone_number, iface.pipeline)
        return reply(200, doc, "application/xml")

    # ------------------------------------------------------------------ outbound

    async def dial(
        self,
        to: str,
        *,
        line: CallInterface | str | None = None,
        machine_detection: bool = False,
        ring_timeout: int = 30,
        carrier_recording: bool = False,
    ) -> OutboundCall:
        """Call ``to`` (E.164) from ``line`` (its phone number or the interface; the only line
        by default) through the carrier's REST API; the answered call runs the line's graph
        like an inbound one. Returns the :class:`~voicegraph.server.outbound.OutboundCall` handle.

        ``machine_detection`` asks the carrier whether a person or a machine answered (the
        graph holds the greeting for the verdict; a machine gets the line's
        ``voicemail_message`` after its beep). ``ring_timeout``: seconds to ring.
        ``carrier_recording`` (Twilio) also has Twilio record the call; its URL arrives as a
        :class:`~voicegraph.frames.RecordingReady` event. Raises ``InvalidOptionError`` for a
        number that is not E.164, :class:`~voicegraph.server.outbound.OutboundLimitError` at
        ``max_outbound``, and ``DialError`` when the carrier refuses (its message says why).
        The call must be placed while this runtime serves (the carrier calls back)."""
        return await outbound.dial(
            self,
            to,
            line=line,
            machine_detection=machine_detection,
            ring_timeout=ring_timeout,
            carrier_recording=carrier_recording,
        )

    # ------------------------------------------------------------------ lifecycle

    def call_started(
        self,
        call_id: str,
        call: Any,
        session: Any = None,
        end_politely: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Count ``call`` as active; ``end_politely`` (goodbye, REST hang-up, stop) ends it at
        the drain deadline (``call.stop`` when not given)."""
        self.calls[call_id] = call
        if session is not None:
            self.sessions[call_id] = session
        if end_politely is not None:
            self._enders[call_id] = end_politely
        self._idle = anyio.Event() if self._idle.is_set() else self._idle

    def call_ended(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
        self.sessions.pop(call_id, None)
        self._enders.pop(call_id, None)
        if not self.calls:
            self._idle.set()

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Run the runtime's background work while the ``async with`` block runs: the call
        state's (the channel that call-control requests and carrier reports for other workers
        travel on; with Redis, the heartbeat that keeps this worker's calls registered) and the
        observability loop (loop-lag monitor, sampled metrics).

        :meth:`serve`, and any ASGI server serving :attr:`app` itself, do this through the ASGI
        lifespan. A runtime *mounted* into FastAPI or Starlette gets no lifespan events (the
        framework does not pass them to mounted apps): enter this in your app's lifespan. Work
        already running is not started twice. Enter and leave it in the same task."""
        from .cluster import background

        return background(self)

    def shutdown(self) -> None:
        """Start a graceful shutdown of :meth:`serve` (safe to call more than once)."""
        if self._shutdown is not None:
            self._shutdown.set()
        else:
            self._pending_shutdown = True

    def hurry(self) -> None:
        """Cut the drain's wait short: go to the goodbyes now (a second signal does this)."""
        self._hurry.set()

    async def drain(self) -> None:
        """Refuse new calls, wait up to ``drain_timeout`` for active calls (or until
        :meth:`hurry`), then end the rest politely: goodbye, REST hang-up (bounded by
        ``goodbye_timeout``)."""
        self.draining = True
        logger.info("draining: %d active call(s), up to %gs", len(self.calls), self.drain_timeout)
        with anyio.move_on_after(self.drain_timeout):
            async with anyio.create_task_group() as tg:

                async def idle() -> None:
                    await self._idle.wait()
                    tg.cancel_scope.cancel()

                async def hurried() -> None:
                    await self._hurry.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(idle)
                tg.start_soon(hurried)
        if self.calls:
            logger.info("drain deadline: saying goodbye to %d call(s)", len(self.calls))
        with anyio.move_on_after(self.goodbye_timeout + 1.0):
            async with anyio.create_task_group() as tg:
                for call_id, call in list(self.calls.items()):
                    ender = self._enders.get(call_id)
                    if ender is None:
                        call.stop("shutdown")
                    else:
                        tg.start_soon(ender)
        for call in list(self.calls.values()):
            call.stop("shutdown")
        with anyio.move_on_after(2):
            await self._idle.wait()
        logger.info("drained; %d call(s) left", len(self.calls))

    async def serve(
        self,
        host: str = "0.0.0.0",
        port: int = 8000,
        *,
        handle_signals: bool = True,
        reuse_port: bool = False,
        task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED,
        on_ready: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Serve :attr:`app` with Hypercorn until shutdown: its asyncio worker on asyncio, its
        trio worker on Trio (whichever backend runs this coroutine).

        Reports the bound URLs through ``task_status`` and to ``on_ready(urls)``. With
        ``handle_signals`` (main thread only), SIGTERM and SIGINT start a graceful shutdown (see
        :meth:`drain`). ``reuse_port``: bind with ``SO_REUSEPORT``, so several processes serve
        one port (the media listener's too). With ``media``, the media listener serves beside
        Hypercorn (its URL is reported after the app's) and closes after the drain."""
        if self.media is not None and current_backend() != "asyncio":
            raise AgentRuntimeError(
                "media= serves on asyncio only: run with backend='asyncio' or drop media="
            )
        sock = listen_socket(host, port, reuse_port=reuse_port)
        binds = bound_urls(sock)
        # calls were drained before the listeners close
        config = hypercorn_config(
            sock, errorlog=logger, max_message=MAX_WS_MESSAGE, graceful_timeout=1.0
        )
        self._shutdown = shutdown = anyio.Event()
        if self._pending_shutdown:
            shutdown.set()

        async def trigger() -> None:
            await shutdown.wait()
            await self.drain()

        async with anyio.create_task_group() as tg:

            async def server() -> None:
                await serve_hypercorn(self.app, config, trigger)
                tg.cancel_scope.cancel()  # drained and closed: stop watching signals

            if handle_signals:
                await tg.start(self._watch_signals, shutdown)
            if self.observability is not None:
                # marked before the server starts, so its ASGI lifespan does not start it too
                self._running["observability"] = True
                tg.start_soon(self._observe, shutdown)
            if self.media is not None:
                media = partial(self.media.serve, self, reuse_port=reuse_port)
                binds = [*binds, await tg.start(media)]
            tg.start_soon(server)
            logger.info("serving on %s", ", ".join(binds))
            task_status.started(binds)
            if on_ready is not None:
                on_ready(binds)

    async def _observe(self, shutdown: anyio.Event) -> None:
        try:
            await self.observability.run(self, shutdown)
        finally:
            self._running["observability"] = False

    async def _watch_signals(
        self, shutdown: anyio.Event, *, task_status: anyio.abc.TaskStatus[None]
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
                        self.drain_timeout,
                    )
                    shutdown.set()
                else:
                    # Never a silent kill: the remaining calls still get their goodbye.
                    logger.warning(
                        "signal %d again: ending %d remaining call(s) now, with a goodbye",
                        signum,
                        len(self.calls),
                    )
                    self.hurry()

    def run(
        self,
        host: str = "0.0.0.0",
        port: int = 8000,
        *,
        backend: str = DEFAULT_BACKEND,
        reuse_port: bool = False,
        on_ready: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Serve until SIGTERM/SIGINT, then drain (blocking). ``backend``: ``"asyncio"`` (the
        default; on uvloop where it is installed) or ``"trio"``. ``on_ready(urls)`` is called
        once the listeners are bound."""
        backend = check_backend(backend)
        if self.media is not None and backend != "asyncio":
            raise AgentRuntimeError(
                "media= serves on asyncio only: run with backend='asyncio' or drop media="
            )
        serve = partial(self.serve, host, port, reuse_port=reuse_port, on_ready=on_ready)
        run_on(serve, backend=backend)


def _route_path(scope: dict[str, Any]) -> str:
    """The request's path inside this app (a mount's ``root_path`` removed if the server
    left it in ``path``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "").rstrip("/")
    return path[len(root) :] if root and path.startswith(root + "/") else path


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}
