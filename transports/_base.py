"""The two halves every carrier edge shares: a socket reader that never stalls, and a writer.

:class:`CarrierIn` translates each socket message into a small bounded backlog as it arrives
and forwards from there in its own task (the pump), so a slow graph never holds up the socket:
when the backlog is full the oldest caller audio is dropped (and counted in
:attr:`CarrierIn.dropped_audio`); control and event frames are never dropped. A socket that
offers :class:`~voicegraph.wsio.PushSocket` (the picows media listener's) hands each message to
it in its protocol callback; on asyncio, while the pump is idle, the message's frames are sent
on from that callback (through the fused stages and into the next actor's inbox) with no task
woken at all, and only a send that has to wait is left to the pump. Any other socket is read by
a reader task of its own. A well-formed message of an event type the edge does not know is
logged once per type, counted in :attr:`CarrierIn.unknown_events` and skipped: carriers add
event types. Any other protocol error (malformed JSON, a known event with a bad shape) closes
the socket and raises
:class:`~voicegraph.transports.errors.ProtocolError` from ``run``, which ends this call only;
frames read before it but not yet forwarded are counted in :attr:`CarrierIn.discarded`.

:class:`CarrierOut` turns frames into carrier messages. A ``Hangup`` closes the socket politely
and ends the node; a socket the peer already closed ends it quietly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine, Generator, Iterable
from contextvars import Context, copy_context
from typing import Any

import anyio
import msgspec
import sniffio
from anyio.abc import TaskGroup

from voicegraph.backends import Waker, current_backend, new_waker
from voicegraph.channel import EndOfInput
from voicegraph.frames import AudioFormat, AudioFrame, Frame, Hangup, StreamStarted
from voicegraph.node import Actor
from voicegraph.wsio import MessageSocket, PushSocket, SocketClosed

from .errors import CarrierFormatError, ProtocolError, UnknownEvent

__all__ = ["CarrierIn", "CarrierOut"]

_MAX_UNKNOWN_NAMES = 32  # distinct unknown event names logged per stream (then silently counted)

Emit = Iterable[tuple[str, Frame]]

# WebSocket close codes: 1000 normal, 1007 invalid payload data, 1008 policy violation.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1007


def close_reason(text: str) -> str:
    """``text`` cut to fit a WebSocket close frame (at most 123 bytes of UTF-8)."""
    return text.encode()[:120].decode("utf-8", "ignore")


class CarrierIn(Actor):
    """Base of carrier readers. Subclasses implement :meth:`translate`.

    ``backlog`` bounds frames read from the socket but not yet taken downstream."""

    skip_unknown_events = True
    """Log, count and skip unknown event types (carriers add them); ``False`` for a peer
    whose protocol we own, where an unknown type is a bug."""

    def __init__(self, socket: MessageSocket, *, backlog: int = 256) -> None:
        super().__init__()
        if backlog < 1:
            raise ValueError(f"backlog must be >= 1, got {backlog}")
        self.socket = socket
        self.backlog = backlog
        self.dropped_audio = 0
        self.discarded = 0
        self.messages = 0
        self.unknown_events = 0
        """Messages of unknown event types skipped after the start."""
        self._unknown_names: set[str] = set()
        self._queue: deque[tuple[str, Frame]] = deque()
        self._audio_queued = 0
        self._waker: Waker | None = None  # the pump's, made in run (it needs the running loop)
        self._done = False
        self._ended = False
        self._error: ProtocolError | None = None
        self._crash: Exception | None = None  # a bug raised in a push callback, re-raised by run
        self._tasks: TaskGroup | None = None
        self._idle = False  # the pump waits with nothing queued: a push may deliver inline
        self._held: _Started | None = None  # an inline delivery that must wait: the pump's
        self._context: Context | None = None  # the actor's, for inline deliveries

    def translate(self, raw: str | bytes) -> Emit:
        """Decode one socket message into ``(port, frame)`` pairs; raise ``ProtocolError``.

        Call :meth:`end` when the message ends the stream (e.g. Twilio ``stop``)."""
        raise NotImplementedError

    def end(self) -> None:
        """Stop reading after the current message."""
        self._ended = True

    def closed_reason(self, exc: SocketClosed) -> str:
        """The Hangup reason to emit when the peer closes the socket without saying goodbye."""
        return "socket closed"

    def stream_started(self) -> StreamStarted | None:
        """The ``StreamStarted`` event sent on ``"events"`` before anything else (the parsed
        start message's identifiers and parameters); ``None`` sends none."""
        return None

    async def run(self) -> None:
        started = self.stream_started()
        if started is not None:
            await self.send("events", started)
        self._waker = new_waker()
        socket = self.socket
        async with anyio.create_task_group() as tg:
            if isinstance(socket, PushSocket):
                # Translated in the socket's callback: no reader task, no per-message wake-up
                # of one. No pause_reading either: the backlog bounds what is kept (the oldest
                # caller audio goes; a flood of control frames ends the stream).
                self._tasks = tg
                if current_backend() == "asyncio":
                    # a delivery started in the callback may finish in the pump: asyncio's
                    # futures belong to no task (Trio's waits do). It runs in this task's
                    # context, where anyio finds asyncio without a current task.
                    self._context = context = copy_context()
                    context.run(sniffio.current_async_library_cvar.set, "asyncio")
                socket.set_receiver(self._on_message, self._on_closed)
                try:
                    await self._pump()
                finally:
                    socket.set_receiver(None, None)
            else:
                tg.start_soon(self._read)
                await self._pump()
                tg.cancel_scope.cancel()
        if self.dropped_audio:
            self.log.warning("dropped %d caller audio frames (graph too slow)", self.dropped_audio)
        if self._crash is not None:
            raise self._crash
        if self._error is not None:
            # the stream is over: what the reader had accepted but not forwarded is counted
            self.discarded = len(self._queue)
            self._queue.clear()
            raise self._error

    async def stop(self) -> None:
        await self.socket.close()

    def _unknown(self, exc: UnknownEvent) -> None:
        self.unknown_events += 1
        names = self._unknown_names
        if exc.name not in names and len(names) < _MAX_UNKNOWN_NAMES:
            names.add(exc.name)
            self.log.warning("ignoring %s (logged once per type; counted)", exc.reason)

    def _push(self, port: str, frame: Frame) -> None:
        queue = self._queue
        if isinstance(frame, AudioFrame):
            if self._audio_queued >= self.backlog:
                for i, (_, queued) in enumerate(queue):
                    if isinstance(queued, AudioFrame):
                        del queue[i]
                        break
                self._audio_queued -= 1
                self.dropped_audio += 1
            self._audio_queued += 1
        elif len(queue) - self._audio_queued >= self.backlog:
            # control/event frames are never dropped, so a flood of them must end the stream
            raise ProtocolError(f"more than {self.backlog} control/event frames backed up")
        queue.append((port, frame))
        self._waker.wake()  # type: ignore[union-attr]  # set before any push (run)

    def _emitted(self, raw: str | bytes) -> Emit:
        """What one message says (raises ``ProtocolError``); nothing for a skipped one."""
        self.messages += 1
        try:
            return self.translate(raw)
        except UnknownEvent as exc:
            if not self.skip_unknown_events:
                raise
            self._unknown(exc)
            return ()

    def _translate(self, raw: str | bytes) -> None:
        """Queue what one message says (raises ``ProtocolError``, not for skipped ones)."""
        for port, frame in self._emitted(raw):
            self._push(port, frame)

    async def _read(self) -> None:
        """The reader task, for sockets that cannot push."""
        try:
            while not self._ended:
                try:
                    raw = await self.socket.receive()
                except SocketClosed as exc:
                    self._push("control", Hangup(reason=self.closed_reason(exc)))
                    return
                self._translate(raw)
        except ProtocolError as exc:
            self._error = exc
            self.log.warning("closing stream: protocol error: %s", exc.reason)
            await self.socket.close(CLOSE_PROTOCOL, close_reason(exc.reason))
        finally:
            self._finish()

    # The push path: the socket calls these on the event loop; they must not raise.

    def _on_message(self, raw: str | bytes) -> None:
        if self._done:
            return  # after the stream's end, its error or its close (as the reader stops)
        try:
            if self._idle:
                self._deliver_inline(raw)
            else:
                self._translate(raw)
        except ProtocolError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: ends the call, as from the reader task
            self._crash = exc
            self._finish()
        else:
            if self._ended:
                self._finish()

    def _deliver_inline(self, raw: str | bytes) -> None:
        """Translate one message and send its frames on from this callback, while the pump
        is idle: no wake-up of it. A send that has to wait (downstream full) is finished by the
        pump, with whatever follows it queued behind."""
        emitted = iter(self._emitted(raw))
        run = self._context.run  # type: ignore[union-attr]  # set with the receiver
        for port, frame in emitted:
            coro: Coroutine[Any, Any, None] = self.send(port, frame)  # type: ignore[assignment]
            try:
                first = run(coro.send, None)
            except StopIteration:
                continue
            self._held = _Started(coro, first)
            self._idle = False
            for rest in emitted:
                self._push(*rest)
            self._waker.wake()  # type: ignore[union-attr]  # set before any push (run)
            return

    def _on_closed(self, exc: SocketClosed) -> None:
        if self._done:
            return
        try:
            self._push("control", Hangup(reason=self.closed_reason(exc)))
        except ProtocolError as error:
            self._fail(error)
        else:
            self._finish()

    def _fail(self, exc: ProtocolError) -> None:
        self._error = exc
        self.log.warning("closing stream: protocol error: %s", exc.reason)
        # closed at once (not by the pump, which a stuck graph may hold in a send)
        self._tasks.start_soon(  # type: ignore[union-attr]
            self.socket.close, CLOSE_PROTOCOL, close_reason(exc.reason)
        )
        self._finish()

    def _finish(self) -> None:
        self._done = True
        if self._waker is not None:
            self._waker.wake()

    async def _pump(self) -> None:
        queue = self._queue
        waker = self._waker
        assert waker is not None
        while True:
            held = self._held
            if held is not None:
                self._held = None
                await held
            while queue and self._error is None:
                port, frame = queue.popleft()
                if isinstance(frame, AudioFrame):
                    self._audio_queued -= 1
                await self.send(port, frame)
            if self._done:
                return
            self._idle = self._context is not None  # (nothing is held: only an idle pump's is)
            try:
                await waker.wait()
            finally:
                self._idle = False


class _Started:
    """Await the rest of a coroutine that already ran up to its first suspension (an inline
    delivery): what it yields goes to the awaiting task, and what the task sends or throws
    goes back to it."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro, self._first = coro, first

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


class CarrierOut(Actor):
    """Base of carrier writers: input ``"in"``. Subclasses implement :meth:`write`.

    ``audio_format`` is what the stream carries; audio in any other format raises
    :class:`CarrierFormatError`. Audio frames larger than ``max_payload`` bytes are split."""

    def __init__(
        self, socket: MessageSocket, audio_format: AudioFormat | None, *, max_payload: int
    ) -> None:
        super().__init__()
        self.socket = socket
        self.audio_format = audio_format
        self.max_payload = max_payload
        self._encoder = msgspec.json.Encoder()

    async def write(self, frame: Frame) -> None:
        """Send ``frame`` to the carrier (not called for Hangup)."""
        raise NotImplementedError

    async def hangup(self, frame: Hangup) -> None:
        """End the stream politely. Default: close the socket."""
        await self.socket.close(CLOSE_NORMAL, close_reason(frame.reason))

    async def run(self) -> None:
        inbox = self.inbox
        try:
            while True:
                try:
                    _, frame = await inbox.receive()
                except EndOfInput:
                    return
                if isinstance(frame, Hangup):
                    self.log.info("hanging up: %s", frame.reason or "no reason given")
                    await self.hangup(frame)
                    return
                await self.write(frame)
        except SocketClosed:
            self.log.info("carrier socket closed; nothing more can be sent")

    async def stop(self) -> None:
        await self.socket.close()

    async def send_message(self, message: msgspec.Struct) -> None:
        """Encode one wire message and send it as a text frame (Twilio insists on text)."""
        await self.socket.send(self._encoder.encode(message).decode())

    def chunks(self, frame: AudioFrame) -> Iterable[bytes]:
        """The frame's bytes in payload-sized pieces, after checking its format."""
        fmt = self.audio_format
        if fmt is None or frame.encoding != fmt.encoding or frame.sample_rate != fmt.sample_rate:
            raise CarrierFormatError(
                f"{self.name or type(self).__name__} carries {fmt} audio but got "
                f"{frame.encoding}/{frame.sample_rate}; convert it before the carrier edge"
            )
        data, step = frame.data, self.max_payload
        if len(data) <= step:
            return (data,)
        return (data[i : i + step] for i in range(0, len(data), step))
