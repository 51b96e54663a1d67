"""Plivo Audio Streams edge: L16 16 kHz by default (L16 8 kHz or µ-law 8 kHz available).

Server side: :func:`accept_plivo_stream` reads ``start`` and returns a :class:`PlivoStart`
(``extra_headers`` parsed into a dict: the stream's parameters); :func:`plivo_stream_nodes`
builds the carrier edge nodes:

* :class:`PlivoStreamIn` (``carrier_in``) -- outputs ``"audio"`` (AudioFrame in the stream's
  format; ``timestamp`` from Plivo's epoch-ms timestamps relative to the first media message,
  ``capture_time`` on arrival), ``"control"`` (DTMF, Hangup) and ``"events"`` (StreamStarted,
  MarkAck for ``playedStream``, Cleared for ``clearedAudio``). A closed socket (Plivo's end of
  stream) or a ``stop`` emits Hangup and ends the node.
* :class:`PlivoStreamOut` (``carrier_out``) -- input ``"in"``: AudioFrame -> ``playAudio``,
  PlaybackMark -> ``checkpoint``, Clear -> ``clearAudio``, Hangup -> close the socket.
"""

from __future__ import annotations

import re
import time

import anyio
import msgspec

from voicegraph.frames import (
    DTMF,
    AudioFormat,
    AudioFrame,
    Clear,
    Cleared,
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
    "PlivoStart",
    "PlivoStreamIn",
    "PlivoStreamOptions",
    "PlivoStreamOut",
    "accept_plivo_stream",
    "content_type",
    "parse_extra_headers",
    "plivo_stream_nodes",
]

_decoder = msgspec.json.Decoder(m.Inbound)
_DIGITS = frozenset("0123456789*#ABCD")
_RATE = re.compile(r"rate\s*=\s*(\d+)")
_ENCODINGS = {"audio/x-mulaw": "mulaw", "audio/x-l16": "pcm16"}
_SUPPORTED = {AudioFormat("mulaw", 8000), AudioFormat("pcm16", 8000), AudioFormat("pcm16", 16000)}


class PlivoStreamOptions(msgspec.Struct, frozen=True):
    """Options of the Plivo Audio Streams edge.

    ``start_timeout``: seconds to wait for ``start``. ``max_message``: largest inbound message in
    bytes (Plivo's own limit is 64 KB). ``max_chunk``: largest inbound audio payload in bytes.
    ``max_payload``: outbound audio is split into ``playAudio`` messages of at most this many
    bytes (Plivo recommends at most 16 KB of base64, i.e. 12,000 bytes). ``backlog``: caller
    audio frames buffered between socket and graph before the oldest is dropped."""

    start_timeout: float = 10.0
    max_message: int = DEFAULT_MAX_MESSAGE
    max_chunk: int = 32_000
    max_payload: int = 12_000
    backlog: int = 256


class PlivoStart(msgspec.Struct, frozen=True):
    """A parsed ``start``: identifiers, audio format and the stream's ``extraHeaders``."""

    call_id: str
    stream_id: str
    account_id: str
    media_format: AudioFormat
    extra_headers: dict[str, str]
    tracks: tuple[str, ...] = ()


def content_type(fmt: AudioFormat) -> str:
    """The ``<Stream contentType>`` value for ``fmt`` (e.g. ``audio/x-l16;rate=16000``)."""
    if fmt not in _SUPPORTED:
        raise ValueError(
            f"Plivo streams carry mulaw/8000, pcm16/8000 or pcm16/16000, not {fmt}; "
            "pick one of those"
        )
    name = "audio/x-mulaw" if fmt.encoding == "mulaw" else "audio/x-l16"
    return f"{name};rate={fmt.sample_rate}"


def parse_extra_headers(value: str | dict[str, str]) -> dict[str, str]:
    """Parse ``extraHeaders``: ``k=v`` pairs separated by ``,`` (XML reference) or ``;``
    (streaming guide) -- the docs disagree, so both are accepted. Raises ``ProtocolError`` for
    a pair without ``=``."""
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, str] = {}
    for pair in re.split(r"[;,]", value):
        pair = pair.strip()
        if not pair:
            continue
        key, eq, val = pair.partition("=")
        if not eq or not key.strip():
            raise ProtocolError(f"extra_headers entry {pair[:40]!r} is not key=value")
        out[key.strip()] = val.strip()
    return out


def _format(fmt: m.MediaFormat) -> AudioFormat:
    base, _, rest = fmt.encoding.partition(";")
    encoding = _ENCODINGS.get(base.strip().lower())
    rate = fmt.sampleRate
    if not rate and (found := _RATE.search(rest)):
        rate = int(found.group(1))
    if encoding is None or AudioFormat(encoding, rate) not in _SUPPORTED:  # type: ignore[arg-type]
        raise ProtocolError(f"unsupported media format {fmt.encoding!r} at {rate} Hz")
    return AudioFormat(encoding, rate)  # type: ignore[arg-type]


async def accept_plivo_stream(
    socket: MessageSocket, options: PlivoStreamOptions | None = None
) -> PlivoStart:
    """Read the ``start`` message of a new Plivo Audio Streams socket.

    Raises :class:`ProtocolError` if anything else comes first (``media`` before ``start``
    included), the message is malformed or its format unsupported, or no ``start`` arrives within
    ``options.start_timeout`` seconds."""
    opts = options or PlivoStreamOptions()
    with anyio.move_on_after(opts.start_timeout):
        try:
            raw = await socket.receive()
        except SocketClosed:
            raise ProtocolError("socket closed before start") from None
        msg = decode(_decoder, raw, opts.max_message, "event")
        if not isinstance(msg, m.Start):
            raise ProtocolError(f"{type(msg).__struct_config__.tag!r} received before 'start'")
        body = msg.start
        if not body.streamId:
            raise ProtocolError("'start' without streamId")
        return PlivoStart(
            call_id=body.callId,
            stream_id=body.streamId,
            account_id=body.accountId,
            media_format=_format(body.mediaFormat),
            extra_headers=parse_extra_headers(msg.extra_headers),
            tracks=tuple(body.tracks),
        )
    raise ProtocolError(f"no 'start' within {opts.start_timeout:g}s")


class PlivoStreamIn(CarrierIn):
    """Reads a Plivo Audio Streams socket after ``start`` (see module docs for ports)."""

    def __init__(
        self, socket: MessageSocket, start: PlivoStart, options: PlivoStreamOptions | None = None
    ) -> None:
        opts = options or PlivoStreamOptions()
        super().__init__(socket, backlog=opts.backlog)
        self.outputs = (
            Out("audio", AudioFrame, format=start.media_format),
            Out("control", DTMF, Hangup),
            Out("events", StreamStarted, MarkAck, Cleared),
        )
        self.start_info = start
        self.options = opts
        self.other_tracks = 0
        self.format = start.media_format
        self._width = 1 if start.media_format.encoding == "mulaw" else 2
        self._t0: float | None = None
        self._samples = 0

    def stream_started(self) -> StreamStarted:
        s = self.start_info
        return StreamStarted(
            stream_id=s.stream_id,
            call_sid=s.call_id,
            encoding=s.media_format.encoding,
            sample_rate=s.media_format.sample_rate,
            params=tuple(s.extra_headers.items()),
        )

    def closed_reason(self, exc: SocketClosed) -> str:
        return "caller hung up"

    def translate(self, raw: str | bytes) -> Emit:
        opts = self.options
        msg = decode(_decoder, raw, opts.max_message, "event")
        if isinstance(msg, m.Media):
            return self._media(msg.media)
        if isinstance(msg, m.PlayedStream):  # also the older "played"
            return (("events", MarkAck(name=msg.name)),)
        if isinstance(msg, m.ClearedAudio):
            return (("events", Cleared()),)
        if isinstance(msg, m.Dtmf):
            digit = msg.dtmf.digit
            if len(digit) != 1 or digit not in _DIGITS:
                raise ProtocolError(f"invalid DTMF digit {digit!r}")
            return (("control", DTMF(digit=digit, timestamp=self._media_time(msg.dtmf.timestamp))),)
        if isinstance(msg, m.Stop):
            self.end()
            return (("control", Hangup(reason="stream stopped")),)
        raise ProtocolError("second 'start' on one stream")

    def _media_time(self, stamp: int | str) -> float:
        # Plivo stamps are Unix epoch ms; media time counts from the first media message, and
        # from samples received when a stamp is missing.
        fmt = self.format
        if stamp == "":
            return self._samples / fmt.sample_rate
        ms = as_float(stamp, "media timestamp")
        if self._t0 is None:
            self._t0 = ms
        return max(0.0, (ms - self._t0) / 1000.0)

    def _media(self, body: m.MediaBody) -> Emit:
        if body.track not in ("inbound", ""):
            self.other_tracks += 1  # audioTrack="both" streams; counted, not used
            return ()
        data = body.payload
        check_payload(data, self._width, self.options.max_chunk)
        fmt = self.format
        ts = self._media_time(body.timestamp)
        self._samples += len(data) // self._width
        frame = AudioFrame(
            data=data,
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            timestamp=ts,
            capture_time=time.monotonic(),
        )
        return (("audio", frame),)


class PlivoStreamOut(CarrierOut):
    """Writes audio, checkpoints and clears to a Plivo socket (see module docs)."""

    def __init__(
        self, socket: MessageSocket, start: PlivoStart, options: PlivoStreamOptions | None = None
    ) -> None:
        opts = options or PlivoStreamOptions()
        fmt = start.media_format
        # whole samples per playAudio message
        payload = opts.max_payload - opts.max_payload % (1 if fmt.encoding == "mulaw" else 2)
        super().__init__(socket, fmt, max_payload=payload)
        self.inputs = (In("in", AudioFrame, PlaybackMark, Clear, Hangup, format=fmt),)
        self.stream_id = start.stream_id
        self._type = content_type(fmt).partition(";")[0]

    async def write(self, frame: Frame) -> None:
        sid = self.stream_id
        if isinstance(frame, AudioFrame):
            rate = frame.sample_rate
            for chunk in self.chunks(frame):
                await self.send_message(
                    m.PlayAudio(
                        media=m.PlayAudioBody(
                            contentType=self._type, sampleRate=rate, payload=chunk
                        ),
                        streamId=sid,
                    )
                )
        elif isinstance(frame, PlaybackMark):
            await self.send_message(m.CheckpointOut(streamId=sid, name=frame.name))
        elif isinstance(frame, Clear):
            await self.send_message(m.ClearAudio(streamId=sid))


def plivo_stream_nodes(
    socket: MessageSocket, start: PlivoStart, options: PlivoStreamOptions | None = None
) -> tuple[PlivoStreamIn, PlivoStreamOut]:
    """The ``(carrier_in, carrier_out)`` pair for an accepted Plivo socket."""
    return PlivoStreamIn(socket, start, options), PlivoStreamOut(socket, start, options)
