"""Deepgram live speech-to-text (``/v1/listen`` over a WebSocket).

Audio goes out as binary frames in the pinned format; ``Finalize`` when the local VAD says the
caller stopped; ``KeepAlive`` while no audio flows; ``CloseStream`` at end of input. Results come
back as :class:`~voicegraph.frames.Transcript` (interim and final, with word timings) and
``UtteranceEnd`` as :class:`~voicegraph.frames.EndOfTurn`. Reconnects, buffering and metrics
are the base's (:mod:`voicegraph.nodes.providers.base`).

One piece: the options and the node that reads them, whose audio path (the node's ``handle``
and its inbox's direct handler) shares one pending batch and one speaking state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlencode

import msgspec
import numpy as np

from voicegraph.channel import EndOfInput
from voicegraph.frames import (
    AudioFormat,
    AudioFrame,
    EndOfTurn,
    Frame,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TimelineMark,
    Transcript,
    Word,
)
from voicegraph.node import In, Out
from voicegraph.wsio import SocketClosed

from ..audio.g711 import ulaw_to_pcm16
from ..providers.base import (
    ProviderProtocolError,
    ReconnectPolicy,
    Secret,
    WebSocketProvider,
)

__all__ = ["DeepgramOptions", "DeepgramSTT"]

API_KEY_ENV = "DEEPGRAM_API_KEY"
# A model family, optionally followed by word suffixes (nova-2-phonecall, whisper-large), or the
# UUID of a custom-trained model. "nova-9" is refused: versions are part of the family name.
_MODEL = re.compile(
    r"(nova-3|nova-2|nova|enhanced|base|whisper|flux)(-[a-z][a-z0-9]*)*"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
_LANGUAGE = re.compile(r"multi|[a-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?")


class DeepgramOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options of :class:`DeepgramSTT` (query parameters of ``/v1/listen`` and node knobs)."""

    base_url: str = "wss://api.deepgram.com"
    """Where the service is; point it at a :class:`~voicegraph.testing.FakeDeepgram` in tests."""
    model: str = "nova-3"
    language: str = "en-US"
    encoding: Literal["mulaw", "pcm16"] = "mulaw"
    """Audio on the ``audio`` port: µ-law (Twilio/Plivo pass-through) or PCM16 LE."""
    sample_rate: int = 8000
    interim_results: bool = True
    endpointing: int | None = 300
    """Milliseconds of silence that end an utterance (``speech_final``); ``None`` disables."""
    utterance_end_ms: int | None = 1000
    """Word-gap that sends ``UtteranceEnd`` (needs ``interim_results``); ``None`` disables."""
    vad_events: bool = True
    smart_format: bool = True
    punctuate: bool = True
    keepalive_interval: float = 4.0
    """Seconds without audio after which ``KeepAlive`` is sent, up to 5 % late (Deepgram closes
    after 10 s)."""
    extra: tuple[tuple[str, str], ...] = ()
    """Further query parameters, e.g. ``(("keyterm", "voicegraph"),)``."""
    audio_batch: float = 0.1
    """Seconds of audio per binary message while the caller is not speaking (per the local
    VAD's ``SpeechStarted``/``SpeechStopped``): fewer, larger messages cost less CPU on both
    ends. ``0`` sends each frame as it arrives."""
    audio_batch_speaking: float = 0.1
    """The same while the caller speaks, from ``SpeechStarted`` to ``SpeechStopped``, except
    that a quiet frame (see ``quiet_level``) goes out at once with the batch before it, and so
    does each quiet frame after it: the silence Deepgram's endpointing counts arrives frame by
    frame, as it happens, so the final transcript is not delayed. Interim results come up to
    one batch later. ``0`` sends each frame as it arrives. Without a VAD wired to the node,
    ``audio_batch`` applies throughout."""
    quiet_level: float = -40.0
    """dBFS: while the caller speaks, a frame with less than 1 ms of samples above this level
    is quiet and flushes the batch (a pause, or the silence that ends the turn). A line whose
    noise is above it never looks quiet; then the VAD's ``SpeechPaused``/``SpeechStopped``
    still flush, but Deepgram's own endpointing may see its silence up to a batch later."""

    def __post_init__(self) -> None:
        if self.encoding not in ("mulaw", "pcm16"):
            raise ValueError(
                f"DeepgramOptions: encoding={self.encoding!r} is not phone audio; use 'mulaw' "
                "(Twilio, Plivo µ-law) or 'pcm16' (Plivo L16, or after a decoder)"
            )
        if not isinstance(self.model, str) or not _MODEL.fullmatch(self.model):
            raise ValueError(
                f"DeepgramOptions: model={self.model!r} is not a Deepgram model; use e.g. "
                "'nova-3', 'nova-2-phonecall', 'nova-3-medical' or a custom model's UUID"
            )
        if not isinstance(self.language, str) or not _LANGUAGE.fullmatch(self.language):
            raise ValueError(
                f"DeepgramOptions: language={self.language!r} is not a language tag; use a "
                "BCP-47 tag such as 'en-US', 'es' or 'fr-CA', or 'multi'"
            )
        if self.encoding == "mulaw" and self.sample_rate != 8000:
            raise ValueError(
                f"DeepgramOptions: µ-law audio is 8000 Hz, got sample_rate={self.sample_rate}; "
                "use sample_rate=8000 or encoding='pcm16'"
            )
        if self.encoding == "pcm16" and self.sample_rate not in (8000, 16000, 24000, 48000):
            raise ValueError(
                f"DeepgramOptions: sample_rate={self.sample_rate} is not a supported PCM rate; "
                "use 8000 or 16000 for phone audio"
            )
        if self.utterance_end_ms is not None and not self.interim_results:
            raise ValueError(
                "DeepgramOptions: utterance_end_ms needs interim_results=True "
                "(or set utterance_end_ms=None)"
            )
        for name in ("audio_batch", "audio_batch_speaking"):
            if not 0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"DeepgramOptions: {name}={getattr(self, name)!r} must be 0..1 s "
                    "(0 sends each frame as it arrives; 0.1 is the default)"
                )
        if not -90.0 <= self.quiet_level <= 0.0:
            raise ValueError(
                f"DeepgramOptions: quiet_level={self.quiet_level!r} must be -90..0 dBFS "
                "(-40 is the default: below most speech, above a phone line's noise)"
            )
        if not 0 < self.keepalive_interval <= 9.5:
            # the keep-alive may go out up to 5 % late (see nodes.providers.base)
            raise ValueError(
                "DeepgramOptions: keepalive_interval must be above 0 and at most 9.5 s "
                "(Deepgram closes an idle stream after 10 s)"
            )

    @property
    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.encoding, self.sample_rate)

    def query(self) -> str:
        """The ``/v1/listen`` query string for these options."""

        def b(v: bool) -> str:
            return "true" if v else "false"

        params = [
            ("model", self.model),
            ("language", self.language),
            ("encoding", "mulaw" if self.encoding == "mulaw" else "linear16"),
            ("sample_rate", str(self.sample_rate)),
            ("channels", "1"),
            ("interim_results", b(self.interim_results)),
            ("endpointing", "false" if self.endpointing is None else str(self.endpointing)),
            ("vad_events", b(self.vad_events)),
            ("smart_format", b(self.smart_format)),
            ("punctuate", b(self.punctuate)),
        ]
        if self.utterance_end_ms is not None:
            params.append(("utterance_end_ms", str(self.utterance_end_ms)))
        params.extend(self.extra)
        return urlencode(params)


# ------------------------------------------------------------ wire messages


class _Word(msgspec.Struct):
    word: str
    start: float
    end: float
    confidence: float | None = None
    punctuated_word: str | None = None


class _Alternative(msgspec.Struct):
    transcript: str = ""
    confidence: float | None = None
    words: list[_Word] = []


class _Channel(msgspec.Struct):
    alternatives: list[_Alternative] = []


class Results(msgspec.Struct, tag="Results", tag_field="type"):
    channel: _Channel
    start: float = 0.0
    duration: float = 0.0
    is_final: bool = False
    speech_final: bool = False
    from_finalize: bool = False


class Metadata(msgspec.Struct, tag="Metadata", tag_field="type"):
    request_id: str = ""


class UtteranceEnd(msgspec.Struct, tag="UtteranceEnd", tag_field="type"):
    last_word_end: float = 0.0


class SpeechStartedMsg(msgspec.Struct, tag="SpeechStarted", tag_field="type"):
    timestamp: float = 0.0


_decoder = msgspec.json.Decoder(Results | Metadata | UtteranceEnd | SpeechStartedMsg)

KEEPALIVE = '{"type":"KeepAlive"}'
FINALIZE = '{"type":"Finalize"}'
CLOSE_STREAM = '{"type":"CloseStream"}'


# --------------------------------------------------------------------- node


def quiet_test(fmt: AudioFormat, level: float) -> Callable[[bytes], bool]:
    """``quiet(data)``: whether fewer than 1 ms of a frame's samples reach ``level`` dBFS."""
    threshold = round(32768 * 10 ** (level / 20))
    least = fmt.sample_rate // 1000  # samples in 1 ms
    if fmt.encoding == "mulaw":
        # the codes below the level, deleted by bytes.translate (C, no per-sample Python)
        pcm = np.frombuffer(ulaw_to_pcm16(bytes(range(256))), "<i2").astype(np.int32)
        codes = bytes(c for c in range(256) if abs(int(pcm[c])) < threshold)

        def quiet(data: bytes) -> bool:
            return len(data.translate(None, codes)) < least

        return quiet

    def quiet_pcm16(data: bytes) -> bool:
        # whole samples only: the test must not raise in a sender's call (the direct handler)
        samples = np.abs(np.frombuffer(data, "<i2", count=len(data) // 2).astype(np.int32))
        return int(np.count_nonzero(samples >= threshold)) < least

    return quiet_pcm16


class DeepgramSTT(WebSocketProvider):
    """Streaming speech-to-text with Deepgram.

    Input ``audio``: :class:`AudioFrame` in ``options.audio_format`` (drop-oldest: a stalled
    socket must not stall the carrier; drops are counted by the inbox), plus
    :class:`SpeechStarted` / :class:`SpeechStopped` from a local VAD (stopped -> ``Finalize``;
    an early :class:`SpeechPaused` finalizes at once, so the final transcript arrives while the
    turn is still being judged, and the ``SpeechStopped`` after it sends nothing more).
    Output ``out``: :class:`Transcript` (interim and final; ``speech_final`` from Deepgram's
    endpointing) and ``EndOfTurn(reason="utterance_end")`` once per turn on ``UtteranceEnd``.

    ``metrics.ttfb`` holds, per ``Finalize``, the time until the next final result. Times in
    transcripts are seconds of caller audio since the node started, across reconnects.
    """

    provider = "deepgram"
    default_stall_timeout = 5.0  # Deepgram answers a Finalize well within a second

    def __init__(
        self,
        options: DeepgramOptions | None = None,
        *,
        api_key: str | Secret | None = None,
        reconnect: ReconnectPolicy | None = None,
        **overrides: object,
    ) -> None:
        super().__init__(reconnect=reconnect)
        opts = options or DeepgramOptions()
        self.options = msgspec.structs.replace(opts, **overrides) if overrides else opts
        self._key = Secret.load(api_key, API_KEY_ENV, "deepgram")
        fmt = self.options.audio_format
        self._format = fmt
        self.inputs = (
            In("audio", AudioFrame, SpeechStarted, SpeechStopped, format=fmt, policy="drop_oldest"),
        )
        self.outputs = (Out("out", Transcript, EndOfTurn),)
        self.keepalive_interval = self.options.keepalive_interval
        self._url = f"{self.options.base_url.rstrip('/')}/v1/listen?{self.options.query()}"
        self._audio_bytes = 0  # handed to transmit, whole life of the node
        self._audio_on_conn = False
        self._offset = 0.0  # caller-audio seconds at the start of the current connection
        self._turn_text: list[str] = []
        self._finalizes = 0
        self._flushed = False  # Finalize already sent for the current silence
        bytes_per_second = fmt.sample_rate * (2 if fmt.encoding == "pcm16" else 1)
        self._batch_bytes = round(self.options.audio_batch * bytes_per_second)
        self._batch_bytes_speaking = round(self.options.audio_batch_speaking * bytes_per_second)
        self._pending = bytearray()  # audio not yet handed to transmit (one batch at most)
        self._speaking = False
        self._quiet = quiet_test(fmt, self.options.quiet_level)
        self.malformed = 0
        """Provider messages that could not be decoded (logged and skipped)."""

    def url(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._key.reveal()}"}

    async def on_connected(self, reconnect: bool) -> None:
        self._audio_on_conn = False
        bps = 2 if self._format.encoding == "pcm16" else 1
        # The new stream's time 0 is the oldest audio still buffered (older was dropped or
        # already transcribed), so map its times onto caller time from there.
        pending = self._audio_bytes - self._buffer.binary_bytes()
        self._offset = pending / (bps * self._format.sample_rate)

    def keepalive_message(self) -> str | bytes | None:
        if not self._audio_on_conn:
            # Deepgram ignores KeepAlive until some audio arrived; 20 ms of silence counts.
            silence = b"\xff" if self._format.encoding == "mulaw" else b"\x00\x00"
            self._note_audio(len(silence) * self._format.sample_rate // 50)
            return silence * (self._format.sample_rate // 50)
        return KEEPALIVE

    def _note_audio(self, nbytes: int) -> None:
        self._audio_bytes += nbytes
        self._audio_on_conn = True

    def close_error(self, closed: SocketClosed) -> ProviderProtocolError | None:
        if closed.code == 1008:
            return ProviderProtocolError(
                "deepgram",
                f"audio rejected ({closed.reason or 'DATA-0000'}); check that options.encoding "
                f"and sample_rate ({self._format}) match the audio sent",
            )
        return None  # NET-0000/NET-0001 and plain closes: reconnect

    async def run(self) -> None:
        self.inbox.set_direct("audio", self._direct_audio)
        try:
            await super().run()
        finally:
            self.inbox.set_direct("audio", None)

    def _direct_audio(self, frame: Frame) -> bool:
        """What :meth:`handle` does with an audio frame, done in the sender's call while this
        node waits with nothing queued (see :meth:`~voicegraph.channel.Inbox.set_direct`): no
        task switch per caller frame. Declines (the frame is queued for :meth:`handle`) for
        anything else: other frames, a format error to raise, a socket that is down or
        would make the send wait."""
        if type(frame) is not AudioFrame or self._send_now is None:
            return False
        data, fmt = frame.data, self._format
        if not data or frame.encoding != fmt.encoding or frame.sample_rate != fmt.sample_rate:
            return False
        pending = self._pending
        if not self._due(data):
            pending += data
            return True
        message = bytes(pending) + data if pending else data
        if not self.transmit_nowait(message):
            if pending:
                self.inbox.set_wake_batch("audio", 1)  # the queued frame completes a batch
            return False
        pending.clear()
        self._note_audio(len(message))
        return True

    async def handle(self, port: str, frame: Frame) -> None:
        if type(frame) is AudioFrame:
            if (
                frame.encoding != self._format.encoding
                or frame.sample_rate != self._format.sample_rate
            ):
                raise ValueError(
                    f"{self.name}: got {frame.format} audio but Deepgram was opened for "
                    f"{self._format}; set DeepgramOptions(encoding=..., sample_rate=...) to match "
                    "or connect through a converter"
                )
            data = frame.data
            if data:  # an empty binary frame would close the stream
                due = self._due(data)
                self._pending += data
                if due:
                    await self._send_audio()
                if self._speaking:
                    self.inbox.set_wake_batch(port, 1)  # each frame is tested for quiet
                else:
                    # be woken when the batch can fill, not per frame (the sender queues the rest)
                    missing = -(-(self._batch_bytes - len(self._pending)) // len(data))
                    self.inbox.set_wake_batch(port, max(1, missing))
        elif isinstance(frame, (SpeechStarted, SpeechResumed)):
            self._flushed = False
            self._speaking = True
            self.inbox.set_wake_batch(port, 1)  # each frame is tested for quiet
            await self._send_audio()  # the speech onset goes out now
        elif isinstance(frame, (SpeechStopped, SpeechPaused)):
            if self._flushed:
                return  # this silence was already finalized at its early pause
            self._flushed = isinstance(frame, SpeechPaused)
            # Control frames overtake queued media, so audio the VAD judged before this
            # SpeechStopped may still be queued: send it first, or Finalize would cut it off.
            try:
                while (item := self.inbox.receive_nowait()) is not None:
                    await self.handle(*item)
            except EndOfInput:
                pass
            self._speaking = False
            await self._send_audio()
            self._finalizes += 1
            self.metrics.request_started(self._finalizes)
            await self.transmit(FINALIZE)

    def _due(self, data: bytes) -> bool:
        """Whether the pending batch and ``data`` go out now: a full batch, or, while the
        caller speaks, a quiet frame."""
        if self._speaking:
            return len(self._pending) + len(data) >= self._batch_bytes_speaking or self._quiet(data)
        return len(self._pending) + len(data) >= self._batch_bytes

    async def _send_audio(self) -> None:
        """Hand the pending audio to the socket as one binary message."""
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._note_audio(len(data))
            await self.transmit(data)

    async def end_of_input(self) -> None:
        await self._send_audio()
        if await self.transmit(CLOSE_STREAM, buffer=False):
            await self.wait_closed()

    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = _decoder.decode(message)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Unknown message types are expected as the API grows: skip, count, say so.
            self.malformed += 1
            self.log.warning("deepgram: skipping undecodable message: %s", exc)
            return
        if type(msg) is Results:
            await self._on_results(msg)
        elif type(msg) is UtteranceEnd:
            if self._turn_text:
                text = " ".join(self._turn_text)
                self._turn_text = []
                await self.send("out", EndOfTurn(text=text, reason="utterance_end"))

    async def _on_results(self, r: Results) -> None:
        alts = r.channel.alternatives
        if not alts or not alts[0].transcript:
            if r.is_final or r.from_finalize:
                # a Finalize answered with silence is answered: the stall watch must not wait on
                self.metrics.request_abandoned(self._finalizes)
            return  # silence results are normal
        alt = alts[0]
        off = self._offset
        words = tuple(
            Word(w.punctuated_word or w.word, w.start + off, w.end + off, w.confidence)
            for w in alt.words
        )
        # speech_final implies is_final; one doc example contradicts that, so accept either.
        is_final = r.is_final or r.speech_final
        await self.send(
            "out",
            Transcript(
                text=alt.transcript,
                is_final=is_final,
                speech_final=r.speech_final,
                words=words,
                start=r.start + off,
                end=r.start + r.duration + off,
                confidence=alt.confidence,
            ),
        )
        if is_final:
            self._turn_text.append(alt.transcript)
            self.metrics.first_byte(self._finalizes)
            if r.speech_final or r.from_finalize:
                self.publish(TimelineMark(turn=0, stage="stt_final"))
