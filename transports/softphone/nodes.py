"""Softphone edge nodes: the page's WebSocket as a media carrier (PCM16 16 kHz both ways).

:func:`accept_softphone` reads and checks ``start`` (format and token); :func:`softphone_nodes`
builds the carrier edge nodes, which follow the media-carrier port contract of
:mod:`voicegraph.session`:

* :class:`SoftphoneIn` (``carrier_in``) -- outputs ``"audio"`` (AudioFrame pcm16/16000;
  ``timestamp`` counts samples received, ``capture_time`` is arrival), ``"control"`` (DTMF,
  Hangup) and ``"events"`` (StreamStarted, MarkAck for marks the page played, Cleared). A
  ``hangup`` message or a closed socket emits Hangup and ends the node.
* :class:`SoftphoneOut` (``carrier_out``) -- input ``"in"``: AudioFrame pcm16/16000 -> binary
  frames, PlaybackMark -> ``mark``, Clear -> ``clear``, Hangup -> close the socket. It also sends
  ``event`` messages for the page to show: lines given to :meth:`SoftphoneOut.post` (by a
  :class:`TranscriptTap`) and each turn's latency, assembled from the call's ``TimelineMark``
  events. Events are best effort: at most ``max_events`` wait to be sent; beyond that the
  oldest are dropped and counted in :attr:`SoftphoneOut.dropped_events`.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable

import anyio
import msgspec

from voicegraph.frames import (
    DTMF,
    AgentText,
    AudioFormat,
    AudioFrame,
    Clear,
    Cleared,
    EndOfTurn,
    Frame,
    Hangup,
    MarkAck,
    PlaybackMark,
    StreamStarted,
    TimelineMark,
    Transcript,
)
from voicegraph.node import In, Out, Stage
from voicegraph.timeline import TurnRecord
from voicegraph.wsio import MessageSocket, SocketClosed

from .._base import CarrierIn, CarrierOut, Emit
from .._wire import check_payload, decode
from ..errors import ProtocolError
from . import messages as m

__all__ = [
    "SOFTPHONE_FORMAT",
    "SoftphoneIn",
    "SoftphoneOptions",
    "SoftphoneOut",
    "SoftphoneRefused",
    "SoftphoneStart",
    "TranscriptTap",
    "accept_softphone",
    "softphone_nodes",
]

SOFTPHONE_FORMAT = AudioFormat("pcm16", 16000)
"""The one format the softphone carries, both ways."""

_decoder = msgspec.json.Decoder(m.Inbound)
_DIGITS = frozenset("0123456789*#ABCD")


class SoftphoneRefused(ProtocolError):
    """The page's ``start`` carried no valid softphone token."""


class SoftphoneOptions(msgspec.Struct, frozen=True):
    """Options of the softphone edge.

    ``start_timeout``: seconds to wait for ``start``. ``max_message``: largest text message in
    bytes. ``max_chunk``: largest binary audio message in bytes (the page sends 20 ms, 640
    bytes). ``max_payload``: agent audio is sent in binary frames of at most this many bytes.
    ``backlog``: caller audio frames buffered between socket and graph before the oldest is
    dropped. ``max_events``: display events waiting to be sent before the oldest is dropped."""

    start_timeout: float = 10.0
    max_message: int = 4096
    max_chunk: int = 32_000
    max_payload: int = 16_000
    backlog: int = 256
    max_events: int = 256

    def __post_init__(self) -> None:
        if not 0 < self.start_timeout <= 300:
            raise ValueError("start_timeout must be in (0, 300] seconds")
        for name in ("max_message", "max_chunk", "max_payload", "backlog", "max_events"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2")


class SoftphoneStart(msgspec.Struct, frozen=True):
    """A checked ``start``: the call id the server gave the call and its audio format."""

    call_id: str
    media_format: AudioFormat = SOFTPHONE_FORMAT


async def accept_softphone(
    socket: MessageSocket, call_id: str, token: str, options: SoftphoneOptions | None = None
) -> SoftphoneStart:
    """Read the ``start`` message of a new softphone socket and check it.

    Raises :class:`SoftphoneRefused` when its token is not ``token``, and
    :class:`ProtocolError` if anything else comes first, the message is malformed, the format is
    not PCM16 at 16 kHz, or no ``start`` arrives within ``options.start_timeout`` seconds."""
    opts = options or SoftphoneOptions()
    with anyio.move_on_after(opts.start_timeout):
        try:
            raw = await socket.receive()
        except SocketClosed:
            raise ProtocolError("socket closed before start") from None
        if isinstance(raw, bytes):
            raise ProtocolError("audio received before 'start'")
        msg = decode(_decoder, raw, opts.max_message, "type")
        if not isinstance(msg, m.Start):
            raise ProtocolError(f"{type(msg).__struct_config__.tag!r} received before 'start'")
        if not hmac.compare_digest(msg.token.encode(), token.encode()):
            raise SoftphoneRefused("start without a valid softphone token")
        fmt = SOFTPHONE_FORMAT
        if msg.encoding != fmt.encoding or msg.sampleRate != fmt.sample_rate:
            raise ProtocolError(
                f"the softphone carries pcm16 at {fmt.sample_rate} Hz, not "
                f"{msg.encoding[:20]} at {msg.sampleRate} Hz; resample in the page"
            )
        return SoftphoneStart(call_id=call_id)
    raise ProtocolError(f"no 'start' within {opts.start_timeout:g}s")


class SoftphoneIn(CarrierIn):
    """Reads the page's socket after ``start`` (see module docs for ports).

    Marks the page reports as not played (dropped by a clear) prove nothing and are only
    counted, in :attr:`unplayed_marks`; :attr:`played_marks` counts the others."""

    skip_unknown_events = False  # our own page's protocol: an unknown type is a bug

    def __init__(
        self, socket: MessageSocket, start: SoftphoneStart, options: SoftphoneOptions | None = None
    ) -> None:
        opts = options or SoftphoneOptions()
        super().__init__(socket, backlog=opts.backlog)
        self.outputs = (
            Out("audio", AudioFrame, format=start.media_format),
            Out("control", DTMF, Hangup),
            Out("events", StreamStarted, MarkAck, Cleared),
        )
        self.start_info = start
        self.options = opts
        self.played_marks = 0
        self.unplayed_marks = 0
        self._samples = 0

    def stream_started(self) -> StreamStarted:
        fmt = self.start_info.media_format
        return StreamStarted(
            stream_id=self.start_info.call_id,
            call_sid=self.start_info.call_id,
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
        )

    def closed_reason(self, exc: SocketClosed) -> str:
        return "caller hung up"

    def translate(self, raw: str | bytes) -> Emit:
        if isinstance(raw, bytes):
            return self._audio(raw)
        msg = decode(_decoder, raw, self.options.max_message, "type")
        if isinstance(msg, m.MarkIn):
            if not msg.played:
                self.unplayed_marks += 1
                return ()
            self.played_marks += 1
            return (("events", MarkAck(name=msg.name)),)
        if isinstance(msg, m.ClearedIn):
            return (("events", Cleared()),)
        if isinstance(msg, m.DtmfIn):
            if len(msg.digit) != 1 or msg.digit not in _DIGITS:
                raise ProtocolError(f"invalid DTMF digit {msg.digit[:8]!r}")
            return (("control", DTMF(digit=msg.digit, timestamp=self._seconds())),)
        if isinstance(msg, m.HangupIn):
            self.end()
            return (("control", Hangup(reason="caller hung up")),)
        raise ProtocolError("second 'start' on one call")

    def _seconds(self) -> float:
        return self._samples / self.start_info.media_format.sample_rate

    def _audio(self, data: bytes) -> Emit:
        check_payload(data, 2, self.options.max_chunk)
        fmt = self.start_info.media_format
        frame = AudioFrame(
            data=data,
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            timestamp=self._seconds(),
            capture_time=time.monotonic(),
        )
        self._samples += len(data) // 2
        return (("audio", frame),)


class SoftphoneOut(CarrierOut):
    """Writes agent audio, marks, clears and display events to the page (see module docs)."""

    def __init__(
        self, socket: MessageSocket, start: SoftphoneStart, options: SoftphoneOptions | None = None
    ) -> None:
        opts = options or SoftphoneOptions()
        fmt = start.media_format
        super().__init__(socket, fmt, max_payload=opts.max_payload - opts.max_payload % 2)
        self.inputs = (In("in", AudioFrame, PlaybackMark, Clear, Hangup, format=fmt),)
        self.options = opts
        self.dropped_events = 0
        self._events: deque[m.EventOut] = deque()
        self._wake: anyio.Event | None = None
        self._lock: anyio.Lock | None = None
        self._turns: dict[int, dict[str, float]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    def post(self, event: m.TranscriptEvent | m.LatencyEvent) -> None:
        """Queue a display event for the page (never waits; see module docs for overflow)."""
        events = self._events
        if len(events) >= self.options.max_events:
            events.popleft()
            self.dropped_events += 1
        events.append(m.EventOut(event=event))
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        if self.call is not None:
            self._unsubscribe = self.call.subscribe(self._on_event)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await super().stop()

    async def run(self) -> None:
        self._lock = anyio.Lock()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._send_events)
            try:
                await super().run()
            finally:
                tg.cancel_scope.cancel()
        if self.dropped_events:
            self.log.warning("dropped %d display events (page too slow)", self.dropped_events)

    async def send_message(self, message: msgspec.Struct) -> None:
        assert self._lock is not None, "send_message is for run()"
        async with self._lock:  # the event task and the frame loop share the socket
            await super().send_message(message)

    async def write(self, frame: Frame) -> None:
        if isinstance(frame, AudioFrame):
            assert self._lock is not None
            for chunk in self.chunks(frame):
                async with self._lock:
                    await self.socket.send(chunk)
        elif isinstance(frame, PlaybackMark):
            await self.send_message(m.MarkOut(name=frame.name))
        elif isinstance(frame, Clear):
            await self.send_message(m.Clear())

    async def _send_events(self) -> None:
        events = self._events
        try:
            while True:
                while events:
                    await self.send_message(events.popleft())
                self._wake = anyio.Event()
                await self._wake.wait()
        except SocketClosed:
            return

    def _on_event(self, ev: Frame) -> None:
        # Latency per turn, from the same TimelineMark events TurnTimeline logs.
        if not isinstance(ev, TimelineMark) or ev.turn < 0:
            return
        stages = self._turns.get(ev.turn)
        if stages is None:
            if len(self._turns) >= 16:  # bounded: a turn never acknowledged is forgotten
                del self._turns[min(self._turns)]
            stages = self._turns[ev.turn] = {}
        stages.setdefault(ev.stage, ev.time)
        if ev.stage == "first_mark_ack":
            del self._turns[ev.turn]
            ms = TurnRecord(self.call_id, ev.turn, stages).durations_ms()
            self.post(m.LatencyEvent(turn=ev.turn, ms={k: round(v, 1) for k, v in ms.items()}))


class TranscriptTap(Stage):
    """Shows the conversation on the page: caller turns (EndOfTurn, final Transcript) and the
    agent's text (AgentText) become ``transcript`` events of ``out``. Input ``"in"``; it never
    waits and emits no frames, so tapping an edge costs the graph nothing."""

    def __init__(self, out: SoftphoneOut) -> None:
        super().__init__()
        self.inputs = (In("in", EndOfTurn, Transcript, AgentText, required=False),)
        self.out = out

    def process(self, port: str, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            if frame.text or frame.last:
                self.out.post(
                    m.TranscriptEvent(
                        role="agent",
                        text=frame.text,
                        final=frame.last,
                        utterance=frame.utterance_id,
                    )
                )
        elif isinstance(frame, EndOfTurn):
            if frame.text:
                self.out.post(m.TranscriptEvent(role="caller", text=frame.text))
        elif isinstance(frame, Transcript) and frame.is_final and frame.text:
            self.out.post(m.TranscriptEvent(role="caller", text=frame.text))
        return None


def softphone_nodes(
    socket: MessageSocket, start: SoftphoneStart, options: SoftphoneOptions | None = None
) -> tuple[SoftphoneIn, SoftphoneOut]:
    """The ``(carrier_in, carrier_out)`` pair for an accepted softphone socket."""
    return SoftphoneIn(socket, start, options), SoftphoneOut(socket, start, options)
