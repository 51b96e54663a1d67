"""Twilio Media Streams edge: µ-law 8 kHz audio over Twilio's JSON WebSocket protocol.

Server side: :func:`accept_twilio_media` reads ``connected`` and ``start`` from a fresh socket and
returns a :class:`TwilioStart`; :func:`twilio_media_nodes` builds the two carrier edge nodes:

* :class:`TwilioMediaIn` (``carrier_in``) -- outputs ``"audio"`` (AudioFrame mulaw/8000, with
  ``timestamp`` from Twilio's media timestamp and ``capture_time`` on arrival), ``"control"``
  (DTMF, Hangup) and ``"events"`` (StreamStarted, MarkAck). ``stop`` or a closed socket emits
  ``Hangup`` and ends the node.
* :class:`TwilioMediaOut` (``carrier_out``) -- input ``"in"``: AudioFrame mulaw/8000 -> ``media``,
  PlaybackMark -> ``mark``, Clear -> ``clear``, Hangup -> close the socket (which ends
  ``<Connect>``; the call hangs up unless the TwiML continues).
"""

from __future__ import annotations

import time

import anyio
import msgspec

from voicegraph.frames import (
    DTMF,
    AudioFormat,
    AudioFrame,
    Clear,
    Frame,
    Hangup,
    MarkAck,
    PlaybackMark,
    StreamStarted,
)
from voicegraph.node import In, Out
from voicegraph.wsio import MessageSocket, SocketClosed

from .._base import CarrierIn, CarrierOut, Emit
from .._wire import DEFAULT_MAX_MESSAGE, as_float, check_payload, decode
from ..errors import ProtocolError
from . import messages as m

__all__ = [
    "TWILIO_FORMAT",
    "TwilioMediaIn",
    "TwilioMediaOptions",
    "TwilioMediaOut",
    "TwilioStart",
    "accept_twilio_media",
    "twilio_media_nodes",
]

TWILIO_FORMAT = AudioFormat("mulaw", 8000)
"""The only format Media Streams carries, both ways."""

_decoder = msgspec.json.Decoder(m.MediaInbound)
_DIGITS = frozenset("0123456789*#ABCD")


class TwilioMediaOptions(msgspec.Struct, frozen=True):
    """Options of the Twilio Media Streams edge.

    ``start_timeout``: seconds to wait for ``connected``/``start``. ``max_message``: largest
    inbound message in bytes. ``max_chunk``: largest inbound audio payload in bytes (Twilio sends
    160; a full second is the most we accept). ``max_payload``: outbound audio is split into
    ``media`` messages of at most this many bytes. ``backlog``: caller audio frames buffered
    between socket and graph before the oldest is dropped."""

    start_timeout: float = 10.0
    max_message: int = DEFAULT_MAX_MESSAGE
    max_chunk: int = 8000
    max_payload: int = 8000
    backlog: int = 256


class TwilioStart(msgspec.Struct, frozen=True):
    """A parsed ``start``: who is calling, and the ``<Parameter>`` values of the TwiML."""

    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str]
    media_format: AudioFormat
    tracks: tuple[str, ...] = ()


async def accept_twilio_media(
    socket: MessageSocket, options: TwilioMediaOptions | None = None
) -> TwilioStart:
    """Read ``connected`` then ``start`` from a new Media Streams socket.

    Raises :class:`ProtocolError` for anything else first (``media`` before ``start`` included),
    a malformed message, a format other than µ-law 8 kHz mono, or no ``start`` within
    ``options.start_timeout`` seconds. The caller closes the socket on error. ``connected`` may
    be missing (reported behind some proxies); ``start`` may not."""
    opts = options or TwilioMediaOptions()
    with anyio.move_on_after(opts.start_timeout):
        while True:
            try:
                raw = await socket.receive()
            except SocketClosed:
                raise ProtocolError("socket closed before start") from None
            msg = decode(_decoder, raw, opts.max_message, "event")
            if isinstance(msg, m.Connected):
                continue
            if not isinstance(msg, m.Start):
                raise ProtocolError(f"{_name(msg)!r} received before 'start'")
            return _parse_start(msg)
    raise ProtocolError(f"no 'start' within {opts.start_timeout:g}s")


def _name(msg: msgspec.Struct) -> str:
    return type(msg).__struct_config__.tag  # type: ignore[return-value]


def _parse_start(msg: m.Start) -> TwilioStart:
    body = msg.start
    fmt = body.mediaFormat
    if fmt.encoding != "audio/x-mulaw" or fmt.sampleRate != 8000 or fmt.channels != 1:
        raise ProtocolError(
            f"unsupported media format {fmt.encoding}/{fmt.sampleRate}/{fmt.channels}ch; "
            "Media Streams carries audio/x-mulaw/8000/1"
        )
    if not body.streamSid:
        raise ProtocolError("'start' without streamSid")
    return TwilioStart(
        stream_sid=body.streamSid,
        call_sid=body.callSid,
        account_sid=body.accountSid,
        custom_parameters=dict(body.customParameters),
        media_format=TWILIO_FORMAT,
        tracks=tuple(body.tracks),
    )


class TwilioMediaIn(CarrierIn):
    """Reads a Media Streams socket after ``start`` (see module docs for ports)."""

    outputs = (
        Out("audio", AudioFrame, format=TWILIO_FORMAT),
        Out("control", DTMF, Hangup),
        Out("events", StreamStarted, MarkAck),
    )

    def __init__(
        self, socket: MessageSocket, start: TwilioStart, options: TwilioMediaOptions | None = None
    ) -> None:
        opts = options or TwilioMediaOptions()
        super().__init__(socket, backlog=opts.backlog)
        self.start_info = start
        self.options = opts
        self.other_tracks = 0

    def stream_started(self) -> StreamStarted:
        s = self.start_info
        return StreamStarted(
            stream_id=s.stream_sid,
            call_sid=s.call_sid,
            encoding="mulaw",
            sample_rate=8000,
            params=tuple(s.custom_parameters.items()),
        )

    def translate(self, raw: str | bytes) -> Emit:
        opts = self.options
        msg = decode(_decoder, raw, opts.max_message, "event")
        if isinstance(msg, m.Media):
            body = msg.media
            if body.track != "inbound":
                # only unidirectional both_tracks streams send outbound audio; counted, not used
                self.other_tracks += 1
                return ()
            data = body.payload
            check_payload(data, 1, opts.max_chunk)
            ts = as_float(body.timestamp, "media timestamp") / 1000.0 if body.timestamp else 0.0
            frame = AudioFrame(
                data=data,
                encoding="mulaw",
                sample_rate=8000,
                timestamp=ts,
                capture_time=time.monotonic(),
            )
            return (("audio", frame),)
        if isinstance(msg, m.Mark):
            return (("events", MarkAck(name=msg.mark.name)),)
        if isinstance(msg, m.Dtmf):
            digit = msg.dtmf.digit
            if len(digit) != 1 or digit not in _DIGITS:
                raise ProtocolError(f"invalid DTMF digit {digit!r}")
            return (("control", DTMF(digit=digit)),)
        if isinstance(msg, m.Stop):
            self.end()
            return (("control", Hangup(reason="caller hung up")),)
        raise ProtocolError(f"unexpected {_name(msg)!r} after 'start'")


class TwilioMediaOut(CarrierOut):
    """Writes audio, marks and clears to a Media Streams socket (see module docs)."""

    inputs = (In("in", AudioFrame, PlaybackMark, Clear, Hangup, format=TWILIO_FORMAT),)

    def __init__(
        self, socket: MessageSocket, start: TwilioStart, options: TwilioMediaOptions | None = None
    ) -> None:
        opts = options or TwilioMediaOptions()
        super().__init__(socket, TWILIO_FORMAT, max_payload=opts.max_payload)
        self.stream_sid = start.stream_sid

    async def write(self, frame: Frame) -> None:
        sid = self.stream_sid
        if isinstance(frame, AudioFrame):
            for chunk in self.chunks(frame):
                await self.send_message(m.OutMedia(streamSid=sid, media=m.OutMediaBody(chunk)))
        elif isinstance(frame, PlaybackMark):
            await self.send_message(m.Mark(streamSid=sid, mark=m.MarkBody(frame.name)))
        elif isinstance(frame, Clear):
            await self.send_message(m.Clear(streamSid=sid))


def twilio_media_nodes(
    socket: MessageSocket, start: TwilioStart, options: TwilioMediaOptions | None = None
) -> tuple[TwilioMediaIn, TwilioMediaOut]:
    """The ``(carrier_in, carrier_out)`` pair for an accepted Media Streams socket."""
    return TwilioMediaIn(socket, start, options), TwilioMediaOut(socket, start, options)
