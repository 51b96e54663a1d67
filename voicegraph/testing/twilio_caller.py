"""A simulated Twilio caller for Media Streams: Twilio's side of a call, over real HTTP and a
real WebSocket, to test an agent server end to end.

``TwilioCaller.dial()`` POSTs the inbound-call webhook signed with ``X-Twilio-Signature``,
follows the TwiML ``<Connect><Stream url>`` (with its ``<Parameter>`` s) to the WebSocket
(handshake signed too), sends ``connected`` and ``start``, and yields a :class:`TwilioCall`:
send caller audio at real-time pace (20 ms µ-law chunks), press keys, hang up; what the agent
sends is played out at real-time pace -- marks are echoed only once the audio before them has
played, ``clear`` drops unplayed audio and echoes pending marks, as Twilio does.

Example::

    caller = TwilioCaller("http://127.0.0.1:8080", auth_token, to="+14155550199")
    async with caller.dial() as call:
        await call.send_audio("hello.wav")
        await call.wait_for_audio(1.0)
        call.save_wav("heard.wav")
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import msgspec

from voicegraph.frames import AudioFormat
from voicegraph.server.signatures import compute_twilio_signature
from voicegraph.transports.twilio import messages as m
from voicegraph.wsio import MessageSocket, connect_websocket

from ._simcall import CallRejected, Dialer, SimulatedCall, local_target, post_webhook
from .wav import AudioSource

__all__ = ["TwilioCall", "TwilioCaller", "twilio_webhook_form"]

ULAW_8K = AudioFormat("mulaw", 8000)
_decoder = msgspec.json.Decoder(m.MediaOutbound)
_DIGITS = frozenset("0123456789*#ABCD")


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def twilio_webhook_form(
    call_sid: str, account_sid: str, from_: str, to: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The form parameters of Twilio's inbound voice webhook (plus ``extra`` ones: Twilio adds
    parameters without notice, so servers must sign-check whatever arrives)."""
    form = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": from_,
        "To": to,
        "Caller": from_,
        "Called": to,
    }
    form.update(extra or {})
    return form


class TwilioCall(SimulatedCall):
    """One live Media Streams call (see module docs). ``custom_parameters`` are what the TwiML's
    ``<Parameter>`` s said; ``clears`` counts ``clear`` messages received."""

    def __init__(
        self,
        socket: MessageSocket,
        *,
        call_sid: str,
        account_sid: str,
        custom_parameters: dict[str, str],
        playback_rate: float = 1.0,
    ) -> None:
        super().__init__(socket, ULAW_8K, playback_rate=playback_rate)
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.stream_sid = _sid("MZ")
        self.custom_parameters = custom_parameters
        self.clears = 0
        self._seq = 0
        self._chunk = 0
        self._media_ms = 0

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _begin(self) -> None:
        await self.send_message(m.Connected())
        body = m.StartBody(
            streamSid=self.stream_sid,
            accountSid=self.account_sid,
            callSid=self.call_sid,
            tracks=["inbound"],
            customParameters=dict(self.custom_parameters),
            mediaFormat=m.MediaFormat(encoding="audio/x-mulaw", sampleRate=8000, channels=1),
        )
        await self.send_message(
            m.Start(start=body, sequenceNumber=self._next_seq(), streamSid=self.stream_sid)
        )

    # ------------------------------------------------------------------ from the server

    async def _handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self._bad("binary frame (Twilio wants text frames)")
        try:
            msg = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._bad(f"invalid message: {exc}")
            return
        self.messages.append(msg)
        if msg.streamSid != self.stream_sid:
            self._bad(f"streamSid {msg.streamSid!r} is not this stream's")
            return
        assert self.playback is not None
        if isinstance(msg, m.OutMedia):
            self.playback.add_audio(msg.media.payload)
        elif isinstance(msg, m.Mark):
            self.playback.add_mark(msg.mark.name)
        else:  # Clear: Twilio echoes every pending mark, in order
            self.clears += 1
            for name in self.playback.clear():
                self.marks_echoed.append(name)
                await self._send_mark(name)

    async def _mark_reached(self, name: str) -> None:
        self.marks_echoed.append(name)
        await self._send_mark(name)

    async def _send_mark(self, name: str) -> None:
        await self.send_message(
            m.Mark(
                mark=m.MarkBody(name), streamSid=self.stream_sid, sequenceNumber=self._next_seq()
            )
        )

    # ------------------------------------------------------------------- to the server

    async def send_audio(
        self, audio: AudioSource, *, sample_rate: int | None = None, speed: float = 1.0
    ) -> None:
        """Speak: stream ``audio`` as 20 ms ``media`` messages.

        ``audio``: µ-law 8 kHz bytes, a numpy array of samples at ``sample_rate`` (default
        8000), or a 16-bit WAV path (converted as needed). ``speed``: 1 is real time, 2 twice as
        fast, 0 as fast as possible. Media timestamps advance 20 ms per chunk, like Twilio's. Raises
        ``SocketClosed`` once the stream has ended."""
        data = self._wire(audio, sample_rate)
        chunks = [data[i : i + 160] for i in range(0, len(data), 160)]
        await self._pace(chunks, self._send_media, speed)

    async def send_silence(self, seconds: float, *, speed: float = 1.0) -> None:
        """Stream ``seconds`` of µ-law silence (what a quiet caller's line sends). If the agent
        hangs up meanwhile, it ends early and quietly (:attr:`closed_by_server` is then true)."""
        await self._quiet(b"\xff" * ULAW_8K.bytes_for(seconds), speed)

    async def _send_media(self, chunk: bytes) -> None:
        self._chunk += 1
        body = m.MediaBody(
            payload=chunk, track="inbound", chunk=str(self._chunk), timestamp=str(self._media_ms)
        )
        self._media_ms += len(chunk) // 8
        await self.send_message(
            m.Media(media=body, sequenceNumber=self._next_seq(), streamSid=self.stream_sid)
        )

    async def send_dtmf(self, digits: str) -> None:
        """Press keys: one ``dtmf`` message per digit (``0-9``, ``*``, ``#``, ``A-D``)."""
        for digit in digits:
            if digit not in _DIGITS:
                raise ValueError(f"DTMF digit {digit!r}: use 0-9, *, # or A-D")
            await self.send_message(
                m.Dtmf(
                    dtmf=m.DtmfBody(digit=digit),
                    sequenceNumber=self._next_seq(),
                    streamSid=self.stream_sid,
                )
            )

    async def _goodbye(self) -> None:
        stop = m.StopBody(accountSid=self.account_sid, callSid=self.call_sid)
        await self.send_message(
            m.Stop(stop=stop, sequenceNumber=self._next_seq(), streamSid=self.stream_sid)
        )


def stream_of(twiml: ET.Element) -> tuple[str, dict[str, str]]:
    """The URL and ``<Parameter>`` s of the TwiML's ``<Connect><Stream>``; raises
    :class:`CallRejected` when there is none."""
    stream = twiml.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise CallRejected("TwiML has no <Connect><Stream url=...>", 200, _text(twiml))
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


class TwilioCaller(Dialer):
    """Places simulated Twilio Media Streams calls to a server at ``base_url``.

    ``auth_token`` signs the webhook and the WebSocket handshake. ``public_url``: the URL the
    server believes it is reached at (what it checks signatures against), when that differs from
    ``base_url``. ``playback_rate`` > 1 plays received audio faster than real time (quicker
    tests); marks are still echoed only after the audio before them has "played"."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        *,
        account_sid: str = "AC" + "0" * 32,
        to: str = "+14155550199",
        from_: str = "+14155550100",
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
        self.account_sid = account_sid

    async def answer(
        self, path: str, call_sid: str, extra: Mapping[str, str] | None = None
    ) -> ET.Element:
        """POST the signed webhook and return the parsed TwiML (``CallRejected`` on failure)."""
        form = twilio_webhook_form(call_sid, self.account_sid, self.from_, self.to, extra)
        signed_url = (self.public_url or self.base_url) + path
        sig = compute_twilio_signature(signed_url, form, self._auth_token)
        return await post_webhook(
            self.base_url + path, form, {"X-Twilio-Signature": sig}, self.timeout
        )

    @asynccontextmanager
    async def dial(
        self,
        path: str = "/call/incoming",
        *,
        extra: Mapping[str, str] | None = None,
        via: str | None = None,
        call_sid: str | None = None,
    ) -> AsyncIterator[TwilioCall]:
        """Call the server: webhook, TwiML, WebSocket, ``connected`` + ``start``.

        ``path`` may carry a query; ``call_sid`` defaults to a fresh one (the fake REST API
        passes the SID it gave a placed call). ``via``: the base URL of the instance that takes
        the stream, when a load balancer sends it to another one than the webhook (default:
        ``base_url``). Raises :class:`CallRejected` when the answer holds no
        ``<Connect><Stream>``. Leaving the block hangs up (``stop``, then close) unless the
        call already ended."""
        call_sid = call_sid or _sid("CA")
        twiml = await self.answer(path, call_sid, extra)
        async with self.open_stream(twiml, call_sid, via=via) as call:
            yield call

    @asynccontextmanager
    async def open_stream(
        self, twiml: ET.Element, call_sid: str, *, via: str | None = None
    ) -> AsyncIterator[TwilioCall]:
        """Open the stream an :meth:`answer` named, as Twilio does (again, to replay it), on
        ``via`` (default: ``base_url``)."""
        url, params = stream_of(twiml)
        headers = {"X-Twilio-Signature": compute_twilio_signature(url, None, self._auth_token)}
        target = local_target(
            url, (via or self.base_url).rstrip("/"), self.public_url or self.base_url
        )
        async with connect_websocket(target, headers, connect_timeout=self.timeout) as sock:
            call = TwilioCall(
                sock,
                call_sid=call_sid,
                account_sid=self.account_sid,
                custom_parameters=params,
                playback_rate=self.playback_rate,
            )
            async with call.running():
                yield call


def _text(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")[:2000]
