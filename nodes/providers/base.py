"""WebSocketProvider: what every WebSocket provider node needs, written once.

Why over 400 lines: the class is one piece. Its input loop, connection loop and liveness loop
share the socket, the send buffer and the hand-over flag, whose ordering guarantees (see the
class) hold only together; what stands apart (policy, watchdog judgement, errors) is elsewhere.

:class:`WebSocketProvider` is an :class:`~voicegraph.node.Actor` that owns one outbound
WebSocket (through :func:`voicegraph.wsio.connect_websocket`) and does the parts that are the
same for every provider: connect with a timeout, keep-alive while idle, reconnect with
exponential backoff and jitter for a bounded number of attempts (:mod:`.reconnect`), a bounded
send buffer while reconnecting (overflow is counted, never silent), time-to-first-byte metrics
per request (:mod:`.metrics`), a liveness watchdog (:mod:`.watchdog`), and a clean close on end
of input or cancellation. A provider file only translates frames to wire messages and back (see
``docs/providers.md``).

Failure contract (the exceptions are in :mod:`.errors`, re-exported here): a socket that drops
is reconnected without ending the call. When ``ReconnectPolicy.max_attempts`` consecutive
attempts fail, ``run`` raises :class:`ProviderUnavailable` (the call runtime then ends the
call; a preset may catch it to say an apology first). A handshake refused with HTTP 401/403
raises :class:`ProviderAuthError` at once: retrying a wrong key only delays the error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from voicegraph.backends import clock
from voicegraph.channel import EndOfInput
from voicegraph.events import ProviderEvent, ProviderWhat
from voicegraph.node import Actor
from voicegraph.wsio import MessageSocket, SocketClosed, connect_websocket

from .errors import (
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderStalled,
    ProviderUnavailable,
)
from .metrics import ProviderMetrics, SendBuffer
from .reconnect import ReconnectPolicy
from .secret import MissingSecret, Secret
from .watchdog import StallWatch

__all__ = [
    "MissingSecret",
    "ProviderAuthError",
    "ProviderError",
    "ProviderMetrics",
    "ProviderProtocolError",
    "ProviderStalled",
    "ProviderUnavailable",
    "ReconnectPolicy",
    "Secret",
    "SendBuffer",
    "WebSocketProvider",
]


class WebSocketProvider(Actor):
    """An actor that talks to one provider over one WebSocket, reconnecting as needed.

    Subclasses set ``provider`` (a short service name) and implement :meth:`url`,
    :meth:`headers`, :meth:`on_message` and :meth:`handle`; they may override
    :meth:`on_connected`, :meth:`keepalive_message`, :meth:`close_error` and
    :meth:`end_of_input`. They send with :meth:`transmit`, never on the socket directly.

    Task model: ``run`` runs the input loop (inbox -> :meth:`handle`, plus keep-alive ticks) in
    its own task and the connection loop (connect, :meth:`on_connected`, flush the buffer,
    receive -> :meth:`on_message`, reconnect) in another. Only one task sends at a time: during
    the hand-over after a handshake every :meth:`transmit` goes into the buffer, which the
    connection loop flushes in order; the socket is published to the input loop only once the
    buffer is empty, so messages keep their order across a reconnect.

    Cancellation: the socket is closed (shielded, bounded) and nothing is left running.
    """

    provider = "provider"
    default_stall_timeout: float | None = None
    """Seconds a pending request may go unanswered while the provider is silent (see
    ``ReconnectPolicy.stall_timeout``); ``None``: no liveness watchdog unless the policy sets
    one."""
    keepalive_interval: float | None = None
    """Seconds without any message sent after which :meth:`keepalive_message` is sent."""

    def __init__(self, *, reconnect: ReconnectPolicy | None = None, seed: int | None = None):
        super().__init__()
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.metrics = ProviderMetrics()
        self.metrics.on_first_byte = self._request_answered
        self._buffer = SendBuffer(
            self.reconnect_policy.buffer_messages, self.reconnect_policy.buffer_bytes, self.metrics
        )
        self._rng = random.Random(seed)
        self._sock: MessageSocket | None = None
        self._closing = False
        self._handover = False
        self._closed = anyio.Event()
        self._up = anyio.Event()
        self._last_sent = 0.0
        self._last_received = 0.0
        self._send_now: Callable[[str | bytes], bool] | None = None  # see transmit_nowait
        self._now: Callable[[], float] = anyio.current_time  # the loop's clock, from run
        self._fatal: BaseException | None = None
        self._watch: StallWatch | None = None
        self._attempt_start = 0.0

    # ---------------------------------------------------------- subclass API

    def clone(self) -> WebSocketProvider:
        """A fresh node with the same options, key and reconnect policy, for another call
        (``CallInterface`` uses it on provider templates). Subclasses whose constructor is not
        ``(options, *, api_key, reconnect)`` override it."""
        make: Callable[..., WebSocketProvider] = type(self)  # the subclass's constructor
        options, key = getattr(self, "options"), getattr(self, "_key")  # noqa: B009 (subclasses')
        return make(options, api_key=key, reconnect=self.reconnect_policy)

    def url(self) -> str:
        """The WebSocket URL to connect to (query string included)."""
        raise NotImplementedError

    def headers(self) -> Mapping[str, str]:
        """Handshake headers (credentials go here; they are never logged)."""
        return {}

    async def on_connected(self, reconnect: bool) -> None:
        """Called after each successful handshake, before buffered messages are flushed.

        Messages sent here with :meth:`transmit` are queued behind those already buffered and
        go out before anything the input loop sends afterwards."""

    async def on_message(self, message: str | bytes) -> None:
        """Handle one message from the provider (decode it at once into a typed Struct)."""
        raise NotImplementedError

    def keepalive_message(self) -> str | bytes | None:
        """The message to send after ``keepalive_interval`` idle seconds (``None``: skip)."""
        return None

    def close_error(self, closed: SocketClosed) -> ProviderError | None:
        """Classify a close by the provider: return an error to end the call with, or ``None``
        to reconnect (the default)."""
        return None

    async def end_of_input(self) -> None:
        """All inputs are done: finish the provider's work (e.g. send a close message and
        :meth:`wait_closed`). Runs under ``ReconnectPolicy.drain_timeout``."""

    # ------------------------------------------------------------- helpers

    @property
    def connected(self) -> bool:
        """Whether a socket is up and accepting sends from the input loop."""
        return self._sock is not None

    @property
    def in_handover(self) -> bool:
        """True while :meth:`on_connected` runs: :meth:`transmit` then queues for the new
        socket, ahead of anything the input loop sends later."""
        return self._handover

    async def transmit(self, message: str | bytes, *, buffer: bool = True) -> bool:
        """Send ``message`` to the provider. Returns whether it was sent now.

        While the socket is down (or breaks during this send) the message is kept in the
        bounded send buffer when ``buffer`` is true and sent after reconnecting, else counted as
        dropped. Never raises for a closed socket."""
        sock = self._sock
        if sock is None:
            self._hold(message, buffer)
            return False
        try:
            await sock.send(message)
        except SocketClosed:
            if self._sock is sock:
                self._sock = self._send_now = None
            self._hold(message, buffer)
            return False
        self._last_sent = self._now()
        return True

    def transmit_nowait(self, message: str | bytes) -> bool:
        """Send ``message`` now if the socket is up and takes it without waiting (a socket
        with ``send_nowait``, such as the picows one, under its high-water mark). Returns
        whether it was sent; if not, nothing happened: :meth:`transmit` it instead. For
        synchronous paths such as an inbox's direct handler."""
        send = self._send_now
        if send is None or not send(message):
            return False
        self._last_sent = self._now()
        return True

    async def wait_closed(self) -> None:
        """Wait until the provider closed the socket after :meth:`end_of_input` began."""
        await self._closed.wait()

    def _event(
        self,
        what: ProviderWhat,
        start: float,
        end: float | None = None,
        *,
        first: float = 0.0,
        ok: bool = True,
        reconnect: bool = False,
        error: str = "",
    ) -> None:
        """Publish a :class:`~voicegraph.events.ProviderEvent` ending at ``end`` (default: now)
        for observers (metrics, traces)."""
        if self.call is not None:
            end = time.monotonic() if end is None else end
            self.call.publish(
                ProviderEvent(
                    provider=self.provider,
                    what=what,
                    start=start,
                    end=end,
                    node=self.name,
                    first=first,
                    ok=ok,
                    reconnect=reconnect,
                    error=error,
                )
            )

    def _request_answered(self, ttfb: float) -> None:
        now = time.monotonic()
        self._event("request", now - ttfb, now, first=now)

    def _hold(self, message: str | bytes, buffer: bool) -> None:
        if self._handover or (buffer and not self._closing):
            self._buffer.append(message)
        else:
            self.metrics.dropped_messages += 1
            self.metrics.dropped_bytes += len(message)

    # ---------------------------------------------------------------- run

    async def run(self) -> None:
        self._now = clock()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._guard, self._connection_loop, tg.cancel_scope)
            if self.stall_timeout:
                tg.start_soon(self._guard, self._stall_watch, tg.cancel_scope)
            await self._guard(self._input_loop, tg.cancel_scope)
            tg.cancel_scope.cancel()
        if self._fatal is not None:
            raise self._fatal

    async def _guard(self, fn: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
        try:
            await fn()
        except Exception as exc:
            # Keep the first error and raise it from run() itself, so callers see e.g. a bare
            # ProviderUnavailable rather than an exception group.
            if self._fatal is None:
                self._fatal = exc
            scope.cancel()

    async def _input_loop(self) -> None:
        inbox = self.inbox
        interval = self.keepalive_interval
        while True:
            try:
                if interval is None:
                    port, frame = await inbox.receive()
                else:
                    # Served by the shared pacer, up to 5 % late: one keep-alive deadline
                    # per provider, re-armed only when it moves to the next grid step.
                    item = await inbox.receive_until(self._last_sent + interval, interval / 20)
                    if item is None:
                        if self._now() >= self._last_sent + interval:
                            await self._keepalive()
                        # else a direct send (transmit_nowait) moved the deadline: wait again
                        continue
                    port, frame = item
            except EndOfInput:
                break
            await self.handle(port, frame)
        with anyio.move_on_after(self.reconnect_policy.drain_timeout) as scope:
            if self._sock is None:
                # Still (re)connecting: let what is buffered reach the provider first.
                await self._up.wait()
            self._closing = True
            await self.end_of_input()
        self._closing = True
        if scope.cancelled_caught:
            self.log.warning("%s did not finish within the drain timeout", self.provider)
        sock = self._sock
        if sock is not None:
            # Close while the socket's reader still runs, so the close handshake completes;
            # closing after cancellation can only time out.
            await sock.close()
        if len(self._buffer):
            n = self._buffer.clear_as_dropped()
            self.log.warning("%s: %d buffered messages dropped at end of input", self.provider, n)

    @property
    def stall_timeout(self) -> float | None:
        """The liveness watchdog's wait in seconds (``None`` or 0: off)."""
        t = self.reconnect_policy.stall_timeout
        return self.default_stall_timeout if t is None else t

    @property
    def stalls(self) -> int:
        """Stalls the liveness watchdog saw (each one reconnected or ended the call)."""
        return self._watch.stalls if self._watch is not None else 0

    async def _stall_watch(self) -> None:
        """Liveness (see :class:`~.watchdog.StallWatch`): close a stalled socket so the
        connection loop reconnects, until the watch raises :class:`ProviderStalled`."""
        assert self.stall_timeout
        watch = self._watch = StallWatch(
            self.provider, self.stall_timeout, self.reconnect_policy.stall_retries
        )
        while True:
            await anyio.sleep(watch.timeout / 4)
            sock, now = self._sock, anyio.current_time()
            oldest = self.metrics.oldest_pending()
            if not watch.stalled(now, oldest, self._last_received, sock is not None):
                continue
            assert oldest is not None and sock is not None
            self.log.warning(
                "%s stalled: no answer for %.1fs; reconnecting (%d/%d)",
                self.provider,
                now - oldest,
                watch.strikes,
                watch.retries,
            )
            self.metrics.restart_pending(now)  # the new connection gets the whole wait
            await sock.close(1000, "stalled")  # the connection loop reconnects

    async def _keepalive(self) -> None:
        self._last_sent = anyio.current_time()
        if self._sock is None:
            return
        msg = self.keepalive_message()
        if msg is not None:
            await self.transmit(msg, buffer=False)

    async def _connection_loop(self) -> None:
        policy = self.reconnect_policy
        attempt = 0
        last_error = ""
        while True:
            up_since: float | None = None
            up_since_wall = self._attempt_start = time.monotonic()
            try:
                async with connect_websocket(
                    self.url(), self.headers(), connect_timeout=policy.connect_timeout
                ) as sock:
                    up_since = anyio.current_time()
                    up_since_wall = time.monotonic()
                    await self._serve(sock)
                    closed: SocketClosed | None = None
            except SocketClosed as exc:
                closed = exc
            except TimeoutError:
                closed = SocketClosed(None, f"connect timed out after {policy.connect_timeout}s")
            finally:
                self._sock = None
            if self._closing:
                self._closed.set()
                return
            assert closed is not None
            if up_since is None:
                self._event(
                    "connect",
                    self._attempt_start,
                    ok=False,
                    error="auth" if closed.code in (401, 403) else "connect_failed",
                    reconnect=self.metrics.connects > 0,
                )
            else:
                self._event("disconnect", up_since_wall, ok=False, error="disconnected")
            if up_since is None and closed.code in (401, 403):
                self._event("failed", self._attempt_start, ok=False, error="auth")
                raise ProviderAuthError(
                    self.provider,
                    f"the API key was refused (HTTP {closed.code}); check the key you pass as "
                    "api_key or its environment variable",
                )
            err = self.close_error(closed) if up_since is not None else None
            if err is not None:
                self._event("failed", up_since_wall, ok=False, error="protocol")
                raise err
            last_error = closed.reason or f"code {closed.code}"
            if up_since is not None and anyio.current_time() - up_since >= policy.stable_after:
                attempt = 0
            attempt += 1
            if attempt > policy.max_attempts:
                self._event("failed", self._attempt_start, ok=False, error="unavailable")
                raise ProviderUnavailable(
                    self.provider, policy.max_attempts, last_error
                ) from closed
            delay = policy.backoff(attempt, self._rng)
            self.log.warning(
                "%s %s (%s); %s in %.2fs (attempt %d/%d)",
                self.provider,
                "connect failed" if up_since is None else "socket closed",
                last_error,
                "retrying" if up_since is None else "reconnecting",
                delay,
                attempt,
                policy.max_attempts,
            )
            await anyio.sleep(delay)

    async def _serve(self, sock: MessageSocket) -> None:
        """One connection's life: hand-over of pending sends, then receive until it closes.
        Raises :class:`SocketClosed` when it ends."""
        self.metrics.connects += 1
        reconnect = self.metrics.connects > 1
        self._event("connect", self._attempt_start, reconnect=reconnect)
        self._handover = True
        try:
            await self.on_connected(reconnect)
            buf = self._buffer
            while len(buf):
                msg = buf.popleft()
                try:
                    await sock.send(msg)
                except SocketClosed:
                    buf.appendleft(msg)
                    raise
            # Published synchronously after the buffer ran empty: nothing can slip in between.
            self._handover = False
            self._sock = sock
            self._send_now = getattr(sock, "send_nowait", None)
            self._up.set()
            self._last_sent = self._last_received = anyio.current_time()
            if reconnect:
                self.log.info("%s reconnected", self.provider)
            while True:
                message = await sock.receive()
                self._last_received = anyio.current_time()
                await self.on_message(message)
        finally:
            self._handover = False
            self._sock = None
            self._send_now = None
            if self._up.is_set():
                self._up = anyio.Event()
