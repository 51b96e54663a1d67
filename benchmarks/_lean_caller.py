"""A lean simulated Twilio caller for the concurrency benchmark's load processes.

It speaks the Media Streams protocol as :class:`~voicegraph.testing.TwilioCall` does (see
``twilio-media-streams.md``): the signed webhook POST, the signed WebSocket handshake to the
stream the TwiML names, ``connected``, ``start`` (the TwiML's ``<Parameter>`` s as
``customParameters``), a 20 ms ``media`` message every 20 ms, ``mark`` echoes once the agent
audio before a mark has played (on ``clear``: the queued audio is dropped and every pending
mark echoed at once), ``stop`` at hang-up. What makes it lean, so that a load process costs a
small fraction of the server it measures:

* one :class:`~benchmarks._lean_clock.Clock` per process: every 20 ms one callback sends
  each call's ``media`` message for that tick, synchronously (no task, timer or wake-up per
  call per tick), each chunk once its 20 ms have been spoken, as a carrier does;
* messages are formatted from precomputed parts: the base64 payloads of the speech and
  silence chunks, and the call's ``streamSid``; only the counters vary;
* picows (asyncio only) delivers what the server sends in a callback, decoded into a minimal
  struct (event, payload length, mark name); no task per call reads;
* playback is a clock, not a task: received audio extends ``play_end`` (the time all of it has
  played), each mark is due at the ``play_end`` of its arrival and is echoed by the first tick
  at or after it (at most 20 ms after the audio before it finished playing, like a carrier
  playing in 20 ms frames).

:class:`~benchmarks._lean_dialer.LeanDialer` places the calls. A call's turn script awaits a
future only when something it waits for happens (speech sent, first reply audio, quiet
line), a few times per turn.

Clocks: every recorded time is ``time.monotonic()``, the clock of the server's timeline marks.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

if TYPE_CHECKING:
    from ._lean_clock import Clock

__all__ = ["CHUNK", "CallEnded", "LeanCall", "payloads"]

CHUNK = 0.02
RATE = 8000  # µ-law bytes per second
SILENCE = base64.b64encode(b"\xff" * 160)  # 20 ms of µ-law silence, as it travels
MAX_PLAYBACK = 600.0  # seconds of agent audio queued for playback (Twilio keeps ~10 minutes)
MAX_MARKS = 10_000  # marks waiting for their audio to play, per call
MAX_MESSAGE = 1 << 20
KEEP = 1000  # mark names and errors kept per call, for tests and failure reports
_DIGITS = frozenset("0123456789*#ABCD")

# The varying fields are numbers formatted into a fixed text (Twilio sends them as strings).
_MEDIA = (
    b'{"event":"media","media":{"payload":"%s","track":"inbound","chunk":"%d",'
    b'"timestamp":"%d"},"sequenceNumber":"%d","streamSid":"%s"}'
)
_CONNECTED = b'{"event":"connected","protocol":"Call","version":"1.0.0"}'


def payloads(chunks: list[bytes]) -> list[bytes]:
    """20 ms µ-law chunks as the base64 their ``media`` messages carry (computed once)."""
    return [base64.b64encode(c) for c in chunks]


class CallEnded(Exception):
    """The stream ended (the server closed it, or it broke) while the caller waited."""


class _MediaBody(msgspec.Struct):
    payload: str = ""


class _MarkBody(msgspec.Struct):
    name: str = ""


class _Incoming(msgspec.Struct):
    """What the caller reads of the server's messages; other fields are skipped."""

    event: str
    streamSid: str = ""
    media: _MediaBody | None = None
    mark: _MarkBody | None = None


_decode = msgspec.json.Decoder(_Incoming).decode
_encode = msgspec.json.Encoder().encode


def _b64_length(text: str) -> int:
    return len(text) // 4 * 3 - (2 if text.endswith("==") else 1 if text.endswith("=") else 0)


class LeanCall(WSListener):
    """One live simulated Twilio call on a picows connection (see module docs).

    Records on the caller's side: ``onsets`` and ``speech_ends`` of what :meth:`say` queued
    (the end: when its last chunk left), ``first_audio`` (the first agent audio after each
    speech end, ``None`` until it comes) and ``clears``. ``closed_by_server`` says whether the
    server ended the stream; ``errors`` lists what the server sent wrong (bounded)."""

    def __init__(
        self, clock: Clock, call_sid: str, account_sid: str, params: dict[str, str]
    ) -> None:
        super().__init__()
        self.clock = clock
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.custom_parameters = params
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self._sid = self.stream_sid.encode()
        self.transport: WSTransport | None = None
        self._seq = self._chunk = self._media_ms = 0
        # the caller's voice
        self._speech: deque[bytes] = deque()
        self._speaking = False
        self._said = 0
        self.onsets: list[float] = []
        self.speech_ends: list[float] = []
        self.first_audio: list[float | None] = []
        self._await_reply = False
        # the caller's ear: playback as a clock
        self.play_end = 0.0
        self._marks: deque[tuple[float, str]] = deque()
        self.received_bytes = self.dropped_bytes = 0
        self.last_audio = 0.0
        self.clears = 0
        self.marks_echoed: deque[str] = deque(maxlen=KEEP)
        self.errors: deque[str] = deque(maxlen=KEEP)
        # the line
        self.closed = self.closed_by_server = self._hung_up = False
        self.close_code: int | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._quiet_gap: float | None = None
        self._parts: list[bytes] = []

    # ------------------------------------------------------------------ the caller's side

    def say(self, chunks: list[bytes]) -> None:
        """Queue speech (base64 payloads from :func:`payloads`): it replaces the silence, one
        chunk per tick."""
        self._speech.extend(chunks)
        self._said += 1

    def send_dtmf(self, digit: str) -> None:
        """Press a key (``0-9``, ``*``, ``#``, ``A-D``): one ``dtmf`` message."""
        if digit not in _DIGITS or len(digit) != 1:
            raise ValueError(f"DTMF digit {digit!r}: use 0-9, *, # or A-D")
        body = {"digit": digit, "track": "inbound_track"}
        self._send(_encode(self._event("dtmf", body)))

    async def wait_spoken(self) -> None:
        """Wait until everything :meth:`say` queued has been sent."""
        await self._until(lambda: len(self.speech_ends) >= self._said, None, "speech sent")

    async def wait_reply(self, timeout: float = 10.0) -> float:
        """Wait for the first agent audio after the last speech end; returns its time."""
        if not self.first_audio:
            raise RuntimeError("wait_reply waits for a reply to speech: say() something first")
        await self._until(lambda: self.first_audio[-1] is not None, timeout, "a reply")
        t = self.first_audio[-1]
        assert t is not None
        return t

    async def wait_quiet(self, gap: float = 0.3, timeout: float = 15.0) -> None:
        """Wait until no agent audio arrived for ``gap`` seconds and all of it has played."""
        self._quiet_gap = gap
        try:
            await self._until(lambda: self._quiet(time.monotonic()), timeout, "a quiet line")
        finally:
            self._quiet_gap = None

    @property
    def queued_seconds(self) -> float:
        """Agent audio received and not yet played."""
        return max(0.0, self.play_end - time.monotonic())

    @property
    def heard_seconds(self) -> float:
        """Agent audio played to the caller so far (what a clear dropped is not in it)."""
        return (self.received_bytes - self.dropped_bytes) / RATE - self.queued_seconds

    async def hangup(self, timeout: float = 5.0) -> None:
        """Hang up: ``stop``, then the close handshake (at most ``timeout`` seconds).
        Idempotent; never raises."""
        if self._hung_up:
            return
        self._hung_up = True
        self.clock.leave(self)
        transport = self.transport
        if transport is None:
            return
        if not self.closed:
            stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
            self._send(_encode(self._event("stop", stop)))
            transport.send_close(WSCloseCode.OK, b"caller hung up")
        try:
            async with asyncio.timeout(timeout):
                await transport.wait_disconnected()
        except TimeoutError:
            transport.disconnect(False)
        except Exception as exc:  # a hang-up's failure is not the call's
            self._bad(f"hang-up: {exc!r}")

    # ----------------------------------------------------------------- one tick (Clock)

    def tick(self, now: float) -> None:
        """Echo the marks whose audio has played; send this tick's ``media``."""
        marks = self._marks
        while marks and marks[0][0] <= now:
            self._echo(marks.popleft()[1])
        if self._quiet_gap is not None and self._quiet(now):
            self._wake()
        speech = self._speech
        if not speech:
            self._media(SILENCE)
            return
        if not self._speaking:
            self._speaking = True
            self.onsets.append(now - CHUNK)  # this chunk was spoken during the last 20 ms
        self._media(speech.popleft())
        if not speech:
            self._speaking = False
            self.speech_ends.append(time.monotonic())
            self.first_audio.append(None)
            self._await_reply = True
            self._wake()

    def _media(self, payload: bytes) -> None:
        self._seq += 1
        self._chunk += 1
        transport = self.transport
        if transport is not None and not self.closed:
            transport.send(
                WSMsgType.TEXT,
                _MEDIA % (payload, self._chunk, self._media_ms, self._seq, self._sid),
            )
        self._media_ms += 20

    def _quiet(self, now: float) -> bool:
        gap = self._quiet_gap or 0.0
        return now - self.last_audio >= gap and self.play_end <= now

    # ------------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, _CONNECTED)
        start = {
            "streamSid": self.stream_sid,
            "accountSid": self.account_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": self.custom_parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        self._send(_encode(self._event("start", start)))
        self.clock.join(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT and frame.fin and not self._parts:
            self._message(frame.get_payload_as_memoryview())
        elif kind == WSMsgType.TEXT or kind == WSMsgType.CONTINUATION:
            self._parts.append(frame.get_payload_as_bytes())  # a fragmented message
            if sum(map(len, self._parts)) > MAX_MESSAGE:
                self._parts = []
                self._bad("message over 1 MiB")
            elif frame.fin:
                whole, self._parts = b"".join(self._parts), []
                self._message(whole)
        elif kind == WSMsgType.BINARY:
            self._bad("binary frame (Twilio wants text frames)")
        elif kind == WSMsgType.CLOSE:
            code: Any = frame.get_close_code()
            self.close_code = int(getattr(code, "value", code)) or None
            if not self._hung_up:
                self.closed_by_server = True
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self._hung_up:
            self.closed_by_server = True  # with or without a close frame
        self.closed = True
        self.clock.leave(self)
        self._wake()

    def _message(self, raw: Any) -> None:
        try:
            msg = _decode(raw)
        except msgspec.DecodeError as exc:
            self._bad(f"invalid message: {exc}")
            return
        if msg.streamSid != self.stream_sid:
            self._bad(f"streamSid {msg.streamSid!r} is not this stream's")
            return
        event = msg.event
        if event == "media" and msg.media is not None:
            self._audio(_b64_length(msg.media.payload))
        elif event == "mark" and msg.mark is not None:
            if self.play_end <= time.monotonic():
                self._echo(msg.mark.name)  # nothing left to play: echoed at once
            elif len(self._marks) < MAX_MARKS:
                self._marks.append((self.play_end, msg.mark.name))
            else:
                self._bad("too many marks pending")
        elif event == "clear":
            # Twilio drops what has not played and echoes every pending mark, in order
            self.clears += 1
            now = time.monotonic()
            if self.play_end > now:
                self.dropped_bytes += round((self.play_end - now) * RATE)
                self.play_end = now
            marks, self._marks = self._marks, deque()
            for _, name in marks:
                self._echo(name)
        else:
            self._bad(f"unexpected event {event!r}")

    def _audio(self, size: int) -> None:
        now = time.monotonic()
        self.last_audio = now
        if self._await_reply:
            self._await_reply = False
            self.first_audio[-1] = now
            self._wake()
        start = self.play_end if self.play_end > now else now
        room = round((MAX_PLAYBACK - (start - now)) * RATE)
        if size > room:
            self.dropped_bytes += size - max(room, 0)
            size = max(room, 0)
        self.received_bytes += size
        self.play_end = start + size / RATE

    # ---------------------------------------------------------------------- plumbing

    def _event(self, event: str, body: Any) -> dict[str, Any]:
        self._seq += 1
        return {
            "event": event,
            event: body,
            "sequenceNumber": str(self._seq),
            "streamSid": self.stream_sid,
        }

    def _echo(self, name: str) -> None:
        self.marks_echoed.append(name)
        self._send(_encode(self._event("mark", {"name": name})))

    def _send(self, message: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed and not transport.is_close_frame_sent:
            transport.send(WSMsgType.TEXT, message)

    def _bad(self, what: str) -> None:
        self.errors.append(what)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _until(self, done: Any, timeout: float | None, what: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    if self.closed:
                        raise CallEnded(f"stream closed (code {self.close_code}) awaiting {what}")
                    self._waiter = loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
        except TimeoutError:
            raise TimeoutError(f"no {what} within {timeout:g}s") from None
