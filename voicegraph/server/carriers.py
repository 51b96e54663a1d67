"""The stream side of :class:`~voicegraph.server.AgentRuntime`: authorise a carrier WebSocket,
build the call's graph around the carrier edge nodes, and run the call.

Raw ASGI (not Quart) so a peer's close reaches the carrier nodes as
:class:`~voicegraph.wsio.SocketClosed` instead of cancelling the handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import anyio

from ..interface import CallInterface
from ..runtime import Call
from ..session import CallSession
from ..wsio import SocketClosed
from . import reports
from .carrier_routes import CarrierRoute, carrier_route, route_for
from .cluster import redeem_stream_token, register_call, release_call
from .goodbye import apologise, goodbye, rest_hangup, shutdown_goodbye
from .signatures import validate_plivo_v3_signature, validate_twilio_signature
from .stream_token import StreamTokenError
from .transfer import rest_transfer

if TYPE_CHECKING:
    from ..graph import Graph
    from .agent_runtime import AgentRuntime

__all__ = [
    "AsgiSocket",
    "CarrierSocket",
    "StreamGrant",
    "StreamRefusal",
    "judge_handshake",
    "run_stream",
    "stream_subject",
    "CallSetupError",
    "CarrierRoute",
    "route_for",
    "run_call",
    "serve_stream",
]

from ..observability.logjson import call_context
from ..timeline import TurnTimeline

logger = logging.getLogger("voicegraph.server")

CLOSE_POLICY = 1008  # WebSocket close code: policy violation (refused authorisation)
CLOSE_PROTOCOL = 1007
CLOSE_ERROR = 1011
WRITE_TIMEOUT = 10.0  # AgentRuntime(write_timeout=...) default


class CallSetupError(Exception):
    """A call's graph could not be built (the message says what to change)."""


class CarrierSocket(Protocol):
    """What the stream code needs of a listener's accepted socket: a
    :class:`~voicegraph.wsio.MessageSocket` that ends its call when a write stays blocked for
    ``write_timeout`` seconds (``blocked`` then reads True and ``on_blocked`` has been called)."""

    write_timeout: float
    blocked: bool
    on_blocked: Callable[[], None] | None

    async def send(self, message: str | bytes) -> None: ...

    async def receive(self) -> str | bytes: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class AsgiSocket:
    """:class:`~voicegraph.wsio.MessageSocket` over one ASGI WebSocket connection.

    ``receive`` raises ``SocketClosed`` once the peer disconnects; ``send`` raises it once the
    socket is closed; ``close`` is idempotent and never raises."""

    def __init__(self, receive: Any, send: Any, write_timeout: float = WRITE_TIMEOUT) -> None:
        self._receive = receive
        self._send = send
        self.closed = False
        self.close_code: int | None = None
        self.write_timeout = write_timeout
        self.blocked = False
        """A write stayed blocked for ``write_timeout`` (the peer stopped reading)."""
        self.on_blocked: Callable[[], None] | None = None
        """Called once when a write stays blocked: ends the call, whose reader may be waiting
        for a peer that will never speak again."""

    async def accept(self) -> bool:
        msg = await self._receive()
        if msg["type"] != "websocket.connect":
            self.closed = True
            return False
        await self._send({"type": "websocket.accept"})
        return True

    async def reject(self, status: int, body: str) -> None:
        """Refuse the handshake with an HTTP status (before :meth:`accept`)."""
        self.closed = True
        msg = await self._receive()
        if msg["type"] != "websocket.connect":
            return
        await self._send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await self._send({"type": "websocket.http.response.body", "body": body.encode()})

    async def receive(self) -> str | bytes:
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        msg = await self._receive()
        if msg["type"] == "websocket.receive":
            text = msg.get("text")
            return text if text is not None else (msg.get("bytes") or b"")
        self.closed = True
        self.close_code = msg.get("code")
        raise SocketClosed(self.close_code, msg.get("reason") or "")

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        key = "text" if isinstance(message, str) else "bytes"
        try:
            with anyio.move_on_after(self.write_timeout) as scope:
                await self._send({"type": "websocket.send", key: message})
        except Exception as exc:  # the server's view of a broken connection
            self.closed = True
            raise SocketClosed(None, f"send failed: {type(exc).__name__}: {exc}") from exc
        if scope.cancelled_caught:
            # A peer that stops reading would otherwise hold the call (and its slot) until
            # TCP gives up, which can take many minutes.
            self.closed = self.blocked = True
            if self.on_blocked is not None:
                self.on_blocked()
            raise SocketClosed(
                None, f"peer stopped reading: a write blocked {self.write_timeout:g}s"
            )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        with anyio.CancelScope(shield=True):
            try:
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
            except Exception:  # close never raises (MessageSocket contract)
                pass


def _handshake_ok(iface: CallInterface, url: str, headers: dict[str, str]) -> bool | None:
    """True/False when the carrier signed the handshake; None when it sent no signature."""
    if iface.telephony == "twilio":
        sig = headers.get("x-twilio-signature")
        return None if sig is None else validate_twilio_signature(url, None, sig, iface.auth_token)
    sig, nonce = headers.get("x-plivo-signature-v3"), headers.get("x-plivo-signature-v3-nonce")
    if sig is None:
        return None
    # Which scheme Plivo signs for the upgrade is undocumented: try the wss URL, then https.
    https = "https" + url[3:] if url.startswith("wss") else "http" + url[2:]
    return any(
        validate_plivo_v3_signature("GET", u, None, nonce, sig, iface.auth_token)
        for u in (url, https)
    )


class StreamRefusal(NamedTuple):
    """A stream handshake refused with an HTTP status (404, 403 or 503) and a short body."""

    status: int
    body: str


class StreamGrant(NamedTuple):
    """A stream handshake that may be accepted: the carrier protocol, the interfaces whose
    signature it carries, and the public http(s) base (where Plivo fetches a transfer
    document)."""

    carrier: CarrierRoute
    allowed: list[CallInterface]
    http_base: str


def judge_handshake(
    runtime: AgentRuntime, path: str, headers: dict[str, str], url: str
) -> StreamGrant | StreamRefusal:
    """Decide one carrier stream handshake, the same way on every listener: ``path`` is the
    path inside the app, ``headers`` the request's headers (names in lower case), ``url`` the
    public ws(s) URL the carrier connected to (what it signed). Synchronous and cheap, so a
    listener may call it from its handshake callback."""
    group = runtime.streams.get(path)
    if not group:
        return StreamRefusal(404, "no stream endpoint here")
    checks = {id(i): _handshake_ok(i, url, headers) for i in group}
    # Twilio always signs the handshake; Plivo may not, and then the stream token alone decides.
    allowed = [
        i for i in group if checks[id(i)] or (checks[id(i)] is None and i.telephony == "plivo")
    ]
    if not allowed:
        logger.warning("stream handshake on %s refused: missing or invalid signature", path)
        return StreamRefusal(403, "invalid signature")
    if len(runtime.calls) >= runtime.max_calls:
        logger.warning("stream refused: %d calls active (max_calls)", len(runtime.calls))
        return StreamRefusal(503, "at capacity")
    if runtime.waiting_streams >= runtime.max_waiting_streams:
        # Unsigned handshakes (Plivo may send none) cost nothing to open: bound the sockets
        # that are only waiting for their start message.
        logger.warning(
            "stream refused: %d sockets already waiting for their start", runtime.waiting_streams
        )
        return StreamRefusal(503, "too many streams starting")
    # ws(s)://host/prefix/path -> http(s)://host/prefix
    http_base = "http" + url[2 : len(url) - len(path)]
    return StreamGrant(carrier_route(route_for(group[0])), allowed, http_base)


async def serve_stream(
    runtime: AgentRuntime, scope: dict[str, Any], receive: Any, send: Any
) -> None:
    """Serve one carrier WebSocket (an ASGI ``websocket`` scope) to its end. Never raises."""
    sock = AsgiSocket(receive, send)
    # Under a mount (or a server's root path) the ASGI path carries the prefix in front of
    # this app's own path; the signed URL carries it too.
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    url = runtime.public_base(scope.get("scheme", "ws"), headers, True)
    url += runtime.mount_prefix(root_path) + path
    verdict = judge_handshake(runtime, path, headers, url)
    if isinstance(verdict, StreamRefusal):
        await sock.reject(verdict.status, verdict.body)
        return
    sock.write_timeout = runtime.write_timeout
    if not await sock.accept():
        return
    await run_stream(runtime, sock, verdict, path)


async def run_stream(
    runtime: AgentRuntime, sock: CarrierSocket, grant: StreamGrant, path: str
) -> None:
    """Run an accepted carrier socket's call to its end, on any listener. Never raises; the
    socket is closed when it returns."""
    try:
        await _run_stream(runtime, sock, grant.carrier, grant.allowed, grant.http_base)
    except Exception as exc:  # one call's failure must never reach the server
        logger.error("stream on %s failed: %s: %s", path, type(exc).__name__, exc, exc_info=exc)
        await sock.close(CLOSE_ERROR, "internal error")
    finally:
        await sock.close()


async def _run_stream(
    runtime: AgentRuntime,
    sock: CarrierSocket,
    carrier: CarrierRoute,
    allowed: list[CallInterface],
    http_base: str | None = None,
) -> None:
    from ..transports.errors import ProtocolError

    runtime.waiting_streams += 1
    try:
        start = await carrier.accept(sock)
    except ProtocolError as exc:
        logger.warning("stream closed before its start: %s", exc.reason)
        await sock.close(CLOSE_PROTOCOL, exc.reason[:120])
        return
    finally:
        runtime.waiting_streams -= 1
    call_id = carrier.call_id(start)
    params = carrier.params(start)
    line = params.get("line", "")
    iface = next((i for i in allowed if i.line == line), None)
    try:
        if iface is None:
            raise StreamTokenError("stream names no line served here")
        caller = carrier.caller(start, params)
        await redeem_stream_token(
            runtime, iface, params.get("token"), call_id, stream_subject(params)
        )
    except StreamTokenError as exc:
        logger.warning("[%s] stream refused: %s", call_id, exc)
        await sock.close(CLOSE_POLICY, "unauthorised stream")
        return
    carrier_in, carrier_out = carrier.nodes(sock, start)
    session = CallSession(
        call_id=call_id,
        carrier=iface.telephony,
        mode=iface.pipeline,
        stream_id=carrier.stream_id(start),
        carrier_in=carrier_in,
        carrier_out=carrier_out,
        audio_format=carrier.audio_format(start),
        from_number=iface.phone_number
        if "dial" in params
        else getattr(start, "from_number", "") or caller,
        to_number=caller if "dial" in params else iface.phone_number,
        params={k: v for k, v in params.items() if k != "token"},
        interface=iface,
        hangup=lambda: rest_hangup(iface, call_id),
        transfer=partial(rest_transfer, iface, call_id, http_base=http_base),
    )
    with anyio.CancelScope() as scope:
        sock.on_blocked = scope.cancel
        await run_call(runtime, session, _build_graph(iface, session))
    if sock.blocked:
        # Nothing can be said to a peer that does not read: end the carrier's call over REST.
        logger.warning(
            "[%s] carrier stopped reading (a write blocked %gs); call ended",
            call_id,
            sock.write_timeout,
        )
        assert session.hangup is not None
        await session.hangup()


async def run_call(runtime: AgentRuntime, session: CallSession, graph: Graph) -> None:
    """Run one accepted call's graph under ``runtime``: max duration and goodbye, the turn
    timeline, the ``on_call`` hook and the active-call bookkeeping (for other edges, such as
    the browser softphone, that accept calls without a carrier webhook)."""
    iface: CallInterface = session.interface
    call_id = session.call_id
    call = Call(
        graph,
        call_id,
        max_duration=iface.max_call_duration_seconds,
        on_max_duration=lambda c: goodbye(c, session),
        on_error=lambda c, failure: apologise(c, failure, session),
        grace=15.0,
    )
    timeline = TurnTimeline.attach(call)  # one JSON log line per turn
    if runtime.on_call is not None:
        try:
            runtime.on_call(call, session, timeline)
        except Exception as exc:
            logger.error("[%s] on_call hook failed: %s", call_id, exc, exc_info=exc)
    obs = runtime.observability
    observed = obs.call_started(call, session, timeline) if obs is not None else None
    runtime.call_started(call_id, call, session, lambda: shutdown_goodbye(call, session, runtime))
    placed = "dial" in session.params
    with call_context(call_id, iface.line):  # JSON logs name the call and line
        try:
            await register_call(runtime, session)
            async with anyio.create_task_group() as tg:
                if placed:  # reports about a placed call (machine detection) reach this graph
                    tg.start_soon(reports.attach, runtime, call_id, call)
                result = await call.run()
                tg.cancel_scope.cancel()
        finally:
            timeline.flush()
            runtime.call_ended(call_id)
            if placed:
                runtime.registry.detach(call_id)
            if observed is not None:
                observed.ended(call.result.reason if call.result is not None else None)
            await release_call(runtime, call_id)
        logger.info("[%s] call ended: %s after %.1fs", call_id, result.reason, result.duration)


def stream_subject(params: dict[str, str]) -> str:
    """What a stream token is bound to besides the call id: the line, the other party, and
    for a placed call whether machine detection runs (so no stream can switch it)."""
    subject = f"{params.get('line', '')}:{params.get('caller', '')}"
    return subject + (f":{params['dial']}" if "dial" in params else "")


def _build_graph(iface: CallInterface, session: CallSession) -> Graph:
    if iface.graph_factory is not None:
        return iface.graph_factory(session)
    try:
        from ..presets import build_for_session
    except ImportError as exc:
        raise CallSetupError(
            f"no preset for pipeline={iface.pipeline!r} is available "
            "(voicegraph.presets.build_for_session is missing); pass graph= to CallInterface"
        ) from exc
    return build_for_session(session)
