"""A simulated Plivo caller for Audio Streams: Plivo's side of a call.

``PlivoCaller.dial()`` POSTs the answer-URL webhook signed with ``X-Plivo-Signature-V3`` (and
``-Ma-V3``, and the nonce), follows the XML ``<Stream>`` (URL in the element text; its
``contentType`` picks L16 16 kHz, L16 8 kHz or µ-law 8 kHz; its ``extraHeaders`` come back in
``start``), opens the WebSocket with a V3-signed GET handshake and sends ``start``. The
:class:`PlivoCall` streams caller audio as 20 ms ``media`` messages, presses keys (``dtmf``) and
hangs up (closes the socket: Plivo has no ``stop`` message). What the agent sends is played at
real-time pace: ``playedStream`` answers a ``checkpoint`` once the audio before it has played;
``clearAudio`` drops unplayed audio *and* pending checkpoints (no ack for those, as on Plivo)
and is answered with ``clearedAudio``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import msgspec

from voicegraph.frames import AudioFormat
from voicegraph.server.signatures import compute_plivo_v3_signature
from voicegraph.transports.plivo import messages as m
from voicegraph.transports.plivo.stream import content_type
from voicegraph.wsio import MessageSocket, connect_websocket

from ._simcall import CallRejected, Dialer, SimulatedCall, local_target, post_webhook
from .wav import AudioSource

__all__ = ["PlivoCall", "PlivoCaller"]

_decoder = msgspec.json.Decoder(m.Outbound)
_DIGITS = frozenset("0123456789*#ABCD")
_FORMATS = {
    "audio/x-l16;rate=16000": AudioFormat("pcm16", 16000),
    "audio/x-l16;rate=8000": AudioFormat("pcm16", 8000),
    "audio/x-mulaw;rate=8000": AudioFormat("mulaw", 8000),
}


class PlivoCall(SimulatedCall):
    """One live Plivo Audio Streams call (see module docs). ``extra_headers`` is the raw
    ``extraHeaders`` string of the answer XML; ``clears`` counts ``clearAudio`` received."""

    def __init__(
        self,
        socket: MessageSocket,
        fmt: AudioFormat,
        *,
        call_uuid: str,
        auth_id: str,
        extra_headers: str,
        playback_rate: float = 1.0,
    ) -> None:
        # Plivo's playback queue holds about 60 s
        super().__init__(socket, fmt, playback_rate=playback_rate, max_playback=60.0)
        self.call_uuid = call_uuid
        self.auth_id = auth_id
        self.stream_id = str(uuid.uuid4())
        self.extra_headers = extra_headers
        self.clears = 0
        self._seq = 0
        self._chunk = 0
        self._epoch_ms = int(time.time() * 1000)
        self._media_ms = 0
        self._width = 1 if fmt.encoding == "mulaw" else 2
        self._content_type = content_type(fmt).partition(";")[0]

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _begin(self) -> None:
        assert self.format is not None
        body = m.StartBody(
            callId=self.call_uuid,
            streamId=self.stream_id,
            accountId=self.auth_id,
            tracks=["inbound"],
            mediaFormat=m.MediaFormat(
                encoding=self._content_type, sampleRate=self.format.sample_rate
            ),
        )
        await self.send_message(
            m.Start(start=body, sequenceNumber=self._next_seq(), extra_headers=self.extra_headers)
        )

    # ------------------------------------------------------------------ from the server

    async def _handle(self, raw: str | bytes) -> None:
        try:
            msg = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._bad(f"invalid message: {exc}")
            return
        self.messages.append(msg)
        assert self.playback is not None and self.format is not None
        if isinstance(msg, m.PlayAudio):
            media = msg.media
            if (
                media.contentType != self._content_type
                or media.sampleRate != self.format.sample_rate
            ):
                # Plivo garbles or drops audio that does not match the stream's contentType
                self._bad(f"playAudio {media.contentType}/{media.sampleRate} does not match stream")
                return
            if len(media.payload) % self._width:
                self._bad("playAudio payload is not whole samples")
                return
            self.playback.add_audio(media.payload)
        elif isinstance(msg, m.CheckpointOut):
            if msg.streamId != self.stream_id:
                self._bad(f"checkpoint for stream {msg.streamId!r}")
                return
            self.playback.add_mark(msg.name)
        else:  # ClearAudio: pending checkpoints are forgotten, then clearedAudio
            if msg.streamId != self.stream_id:
                self._bad(f"clearAudio for stream {msg.streamId!r}")
                return
            self.clears += 1
            self.playback.clear()
            await self.send_message(
                m.ClearedAudio(sequenceNumber=self._next_seq(), streamId=self.stream_id)
            )

    async def _mark_reached(self, name: str) -> None:
        self.marks_echoed.append(name)
        await self.send_message(
            m.PlayedStream(name=name, sequenceNumber=self._next_seq(), streamId=self.stream_id)
        )

    # ------------------------------------------------------------------- to the server

    async def send_audio(
        self, audio: AudioSource, *, sample_rate: int | None = None, speed: float = 1.0
    ) -> None:
        """Speak: stream ``audio`` as 20 ms ``media`` messages in the stream's format.

        ``audio``: bytes already in that format, a numpy array of samples at ``sample_rate``
        (default: the stream's rate), or a 16-bit WAV path (converted as needed). ``speed``: 1
        is real time, 0 as fast as possible. Raises ``SocketClosed`` once the stream has ended."""
        assert self.format is not None
        data = self._wire(audio, sample_rate)
        step = self.format.bytes_for(0.02)
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        await self._pace(chunks, self._send_media, speed)

    async def send_silence(self, seconds: float, *, speed: float = 1.0) -> None:
        """Stream ``seconds`` of silence. If the agent hangs up meanwhile, it ends early and
        quietly (:attr:`closed_by_server` is then true)."""
        assert self.format is not None
        fill = b"\xff" if self.format.encoding == "mulaw" else b"\x00"
        await self._quiet(fill * self.format.bytes_for(seconds), speed)

    async def _send_media(self, chunk: bytes) -> None:
        assert self.format is not None
        self._chunk += 1
        body = m.MediaBody(
            payload=chunk,
            track="inbound",
            timestamp=str(self._epoch_ms + self._media_ms),
            chunk=self._chunk,
        )
        self._media_ms += int(self.format.duration_of(len(chunk)) * 1000)
        await self.send_message(
            m.Media(
                media=body,
                sequenceNumber=self._next_seq(),
                streamId=self.stream_id,
                extra_headers=self.extra_headers,
            )
        )

    async def send_dtmf(self, digits: str) -> None:
        """Press keys: one ``dtmf`` message per digit (``0-9``, ``*``, ``#``, ``A-D``)."""
        for digit in digits:
            if digit not in _DIGITS:
                raise ValueError(f"DTMF digit {digit!r}: use 0-9, *, # or A-D")
            body = m.DtmfBody(
                digit=digit, track="inbound", timestamp=str(self._epoch_ms + self._media_ms)
            )
            await self.send_message(
                m.Dtmf(
                    dtmf=body,
                    sequenceNumber=self._next_seq(),
                    streamId=self.stream_id,
                    extra_headers=self.extra_headers,
                )
            )


class PlivoCaller(Dialer):
    """Places simulated Plivo calls to a server at ``base_url``.

    ``auth_token`` signs the answer webhook and the handshake (V3). ``public_url``: the URL the
    server checks signatures against, when it differs from ``base_url``. Numbers are sent the
    way Plivo does, country code without ``+``. ``playback_rate`` > 1 plays received audio
    faster than real time."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        *,
        auth_id: str = "MA" + "X" * 18,
        to: str = "14155550199",
        from_: str = "14155550100",
        public_url: str | None = None,
        playback_rate: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            base_url,
            auth_token,
            to=to,
            from_=from_,
            public_url=public_url,
            playback_rate=playback_rate,
            timeout=timeout,
        )
        self.auth_id = auth_id

    def _signed_headers(
        self, method: str, url: str, params: Mapping[str, str] | None
    ) -> dict[str, str]:
        nonce = secrets.token_hex(10)
        sig = compute_plivo_v3_signature(method, url, params, nonce, self._auth_token)
        return {
            "X-Plivo-Signature-V3": sig,
            "X-Plivo-Signature-Ma-V3": sig,
            "X-Plivo-Signature-V3-Nonce": nonce,
        }

    @asynccontextmanager
    async def dial(
        self,
        path: str = "/call/incoming",
        *,
        extra: Mapping[str, str] | None = None,
        call_uuid: str | None = None,
    ) -> AsyncIterator[PlivoCall]:
        """Call the server: answer webhook, XML, WebSocket, ``start``. ``path`` may carry a
        query; ``call_uuid`` defaults to a fresh one. Raises :class:`CallRejected` when the
        answer holds no bidirectional ``<Stream>``. Leaving the block hangs up (closes the
        socket) unless the call already ended."""
        call_uuid = call_uuid or str(uuid.uuid4())
        form = {
            "CallUUID": call_uuid,
            "From": self.from_,
            "To": self.to,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "Event": "StartApp",
        }
        form.update(extra or {})
        signed = (self.public_url or self.base_url) + path
        headers = self._signed_headers("POST", signed, form)
        xml = await post_webhook(self.base_url + path, form, headers, self.timeout)
        stream = xml.find("./Stream")
        url = (stream.text or "").strip() if stream is not None else ""
        if stream is None or not url:
            raise CallRejected("Plivo XML has no <Stream>wss://...</Stream>", 200)
        if stream.get("bidirectional") != "true":
            raise CallRejected("<Stream> is not bidirectional: the agent could not speak", 200)
        ctype = stream.get("contentType", "audio/x-l16;rate=8000").replace(" ", "")
        fmt = _FORMATS.get(ctype)
        if fmt is None:
            raise CallRejected(f"<Stream contentType={ctype!r}> is not one Plivo offers", 200)
        target = local_target(url, self.base_url, self.public_url)
        ws_headers = self._signed_headers("GET", url, None)
        async with connect_websocket(target, ws_headers, connect_timeout=self.timeout) as sock:
            call = PlivoCall(
                sock,
                fmt,
                call_uuid=call_uuid,
                auth_id=self.auth_id,
                extra_headers=stream.get("extraHeaders", ""),
                playback_rate=self.playback_rate,
            )
            async with call.running():
                yield call
