"""``AgentRuntime``: the ASGI server that answers carrier webhooks and runs one graph per call.

This module holds the runtime's configuration (checked when it is built), its public URL, its
active calls and its public methods; the work is in the modules around it. Request flow for
one call:

1. The carrier POSTs the call webhook (:mod:`voicegraph.server.webhook`): its signature is
   checked against the *public* URL, the call is routed by the called number to its
   :class:`CallInterface` and answered with TwiML / Plivo XML opening a stream, whose parameters
   carry a signed, expiring, single-use token bound to the call id and line
   (:mod:`voicegraph.server.stream_token`).
2. The carrier opens the stream WebSocket (:mod:`voicegraph.server.carriers`): the handshake
   signature is checked where the carrier sends one (Twilio always does); the carrier's start
   message must carry a valid token for the call id it reports. Webhook and stream share no
   state, so any worker may take any stream.
3. The carrier edge nodes (``voicegraph.transports``) are built on the socket, the interface's
   graph factory (or its pipeline preset) builds the graph, and :class:`~voicegraph.runtime.Call`
   runs it. At max duration the goodbye is said, then the call is ended over the carrier's REST
   API (:mod:`voicegraph.server.goodbye`). A failing call is logged and closed; no other call is
   affected.

:mod:`voicegraph.server.app` routes each request to its handler;
:mod:`voicegraph.server.lifecycle` serves the app and drains the calls at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc

from ..backends import DEFAULT_BACKEND, check_backend, current_backend, run as run_on
from ..interface import _PATH as _STATUS_PATH, CallInterface, CallInterfaceError
from . import control, lifecycle, outbound
from .app import build_app
from .carrier_routes import route_for
from .cluster import default_handlers
from .gc_policy import GcPolicy
from .media import MediaListener
from .outbound import CallRegistry, OutboundCall
from .preflight import check_runtime
from .state import open_state
from .stream_token import StreamTokens, derive_secret

__all__ = ["AgentRuntime", "AgentRuntimeError"]

logger = logging.getLogger("voicegraph.server")


MEDIA_ON_ASYNCIO = "media= serves on asyncio only: run with backend='asyncio' or drop media="


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
    ``gc_policy``: when full garbage collections run, so their pauses stay out of live calls
    (a :class:`~voicegraph.server.GcPolicy`; ``True``: its defaults; ``False``: CPython's own).
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
        gc_policy: GcPolicy | bool = True,
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
        if not isinstance(gc_policy, (GcPolicy, bool)):
            raise AgentRuntimeError("gc_policy= takes a voicegraph.server.GcPolicy, True or False")
        self.gc_policy = GcPolicy() if gc_policy is True else gc_policy or None
        """When full garbage collections run (:mod:`voicegraph.server.gc_policy`), or ``None``."""
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
        self.app = build_app(self)
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
        ``carrier_recording`` also has the carrier record the call (both parties, a channel
        each); its URL arrives as a :class:`~voicegraph.frames.RecordingReady` event. Raises ``InvalidOptionError`` for a
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
        if self.gc_policy is not None:
            self.gc_policy.call_ended(len(self.calls))

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
        ``goodbye_timeout``). See :mod:`voicegraph.server.lifecycle`."""
        await lifecycle.drain(self)

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
            raise AgentRuntimeError(MEDIA_ON_ASYNCIO)
        await lifecycle.serve(
            self,
            host,
            port,
            handle_signals=handle_signals,
            reuse_port=reuse_port,
            task_status=task_status,
            on_ready=on_ready,
        )

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
        serve = partial(self.serve, host, port, reuse_port=reuse_port, on_ready=on_ready)
        backend = check_backend(backend)
        if self.media is not None and backend != "asyncio":
            raise AgentRuntimeError(MEDIA_ON_ASYNCIO)
        run_on(serve, backend=backend)
