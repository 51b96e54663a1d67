"""Cartesia Sonic text-to-speech over one multiplexed WebSocket.

One Cartesia *context* per agent utterance: text deltas are cut at sentence ends and sent with
``continue: true``; ``AgentText(last=True)`` sends the rest with ``continue: false``. Audio comes
back as raw PCM16 or µ-law at the rate the carrier wants (no resampling), word timestamps are
passed on for heard-text tracking, and an :class:`~voicegraph.frames.Interrupt` cancels the
context and drops whatever audio of it still arrives (Cartesia finishes requests already
generating). Reconnects, metrics and close are the base's; the wire messages and the sentence
cut are in :mod:`.cartesia_wire`.
"""

from __future__ import annotations

import re
import time
from typing import Literal
from urllib.parse import urlencode

import anyio
import msgspec

from voicegraph.frames import (
    AgentText,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Frame,
    Interrupt,
    TimelineMark,
    Word,
    WordTimestamps,
)
from voicegraph.node import In, Out

from ..providers.base import WebSocketProvider
from ..providers.reconnect import ReconnectPolicy
from ..providers.secret import Secret
from . import cartesia_wire as w

__all__ = ["CartesiaOptions", "CartesiaTTS"]

API_KEY_ENV = "CARTESIA_API_KEY"
_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class CartesiaOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options of :class:`CartesiaTTS`."""

    base_url: str = "wss://api.cartesia.ai"
    """Where the service is; point it at a :class:`~voicegraph.testing.FakeCartesia` in tests."""
    version: str = "2026-08-14"
    """``Cartesia-Version`` (header and query): the version the official cartesia library 4.x
    sends. Error and response shapes differ by version, so it is pinned; the messages this node
    sends and reads are the same from 2025-04-16 on, so an older pin works too."""
    model_id: str = "sonic-3"
    voice_id: str = "a0e99841-438c-4a64-b679-ae501e7d6091"
    language: str = "en"
    encoding: Literal["mulaw", "pcm16"] = "mulaw"
    """Output audio: µ-law (Twilio/Plivo pass-through) or PCM16 LE."""
    sample_rate: int = 8000
    add_timestamps: bool = True
    max_buffer_delay_ms: int = 0
    """Server-side text buffering; 0 because this node already sends whole sentences."""
    auth: Literal["x-api-key", "bearer"] = "bearer"
    """Key header style: ``Authorization: Bearer`` (what the official library 4.x sends) or
    ``X-API-Key`` (the AsyncAPI spec's scheme); the service takes both."""
    max_chunk_chars: int = 250
    """Send buffered text at a word boundary past this many characters even without a full stop."""

    def __post_init__(self) -> None:
        if not isinstance(self.voice_id, str) or not _UUID.fullmatch(self.voice_id):
            raise ValueError(
                f"CartesiaOptions: voice_id={self.voice_id!r} is not a Cartesia voice id; copy "
                "the voice's UUID from the Cartesia playground, like "
                "'a0e99841-438c-4a64-b679-ae501e7d6091'"
            )
        if self.encoding not in ("mulaw", "pcm16"):
            raise ValueError(
                f"CartesiaOptions: encoding={self.encoding!r} is not offered; use 'mulaw' or 'pcm16'"
            )
        if self.sample_rate not in _RATES:
            raise ValueError(
                f"CartesiaOptions: sample_rate={self.sample_rate} is not offered; use one of {_RATES}"
            )
        if self.encoding == "mulaw" and self.sample_rate != 8000:
            raise ValueError(
                "CartesiaOptions: use µ-law at 8000 Hz (the carriers' rate) or encoding='pcm16'"
            )
        if not 0 <= self.max_buffer_delay_ms <= 5000:
            raise ValueError("CartesiaOptions: max_buffer_delay_ms must be between 0 and 5000")

    @property
    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.encoding, self.sample_rate)


class _Utterance:
    __slots__ = ("audio", "carry", "closed", "context_id", "pending", "sent", "uid")

    def __init__(self, uid: int, context_id: str) -> None:
        self.uid = uid
        self.context_id = context_id
        self.pending = ""  # text not yet sent (incomplete sentence)
        self.sent: list[str] = []  # text sent on this context, for a replay after reconnect
        self.closed = False  # continue:false sent
        self.audio = 0  # bytes of audio emitted
        self.carry = b""


# --------------------------------------------------------------------- node


class CartesiaTTS(WebSocketProvider):
    """Streaming text-to-speech with Cartesia.

    Input ``text``: :class:`AgentText` deltas (``utterance_id`` names the utterance, ``last``
    ends it) and :class:`Interrupt` (cancel the current utterance, or ``utterance_id``).
    Output ``audio``: :class:`AudioFrame` in ``options.audio_format`` tagged with the
    utterance id, :class:`WordTimestamps` (seconds from the utterance's audio start) and
    :class:`AudioDone` after an utterance's last audio.

    ``metrics.ttfb`` holds, per utterance, the time from its first text sent to its first audio;
    ``TimelineMark(turn=utterance_id, stage="tts_first_audio")`` is published then.
    ``dropped_late_chunks`` counts audio chunks of cancelled utterances that were discarded.
    Text that arrives before the socket is up is sent once it is. After a reconnect, an
    utterance that had not produced audio yet is re-sent whole on a new context; one that had
    is ended early with ``AudioDone`` (its remaining audio is lost, and logged).
    """

    provider = "cartesia"
    default_stall_timeout = 5.0  # first audio normally comes within a few hundred ms

    def __init__(
        self,
        options: CartesiaOptions | None = None,
        *,
        api_key: str | Secret | None = None,
        reconnect: ReconnectPolicy | None = None,
        **overrides: object,
    ) -> None:
        super().__init__(reconnect=reconnect)
        opts = options or CartesiaOptions()
        self.options = msgspec.structs.replace(opts, **overrides) if overrides else opts
        o = self.options
        self._key = Secret.load(api_key, API_KEY_ENV, "cartesia")
        self._format = o.audio_format
        self.inputs = (In("text", AgentText, Interrupt),)
        self.outputs = (Out("audio", AudioFrame, WordTimestamps, AudioDone, format=self._format),)
        query = urlencode({"cartesia_version": o.version})
        self._url = f"{o.base_url.rstrip('/')}/tts/websocket?{query}"
        self._voice = w.Voice("id", o.voice_id)
        self._output = w.OutputFormat(
            "raw", "pcm_mulaw" if o.encoding == "mulaw" else "pcm_s16le", o.sample_rate
        )
        self._active: dict[str, _Utterance] = {}  # context id -> utterance
        self._by_uid: dict[int, _Utterance] = {}
        self._cancelled: set[int] = set()
        self._seq = 0
        self._newest = 0
        self._interrupted_upto = 0
        self._idle = anyio.Event()
        self._idle.set()
        self.dropped_late_chunks = 0
        self.malformed = 0

    def url(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        key = self._key.reveal()
        auth = (
            {"X-API-Key": key}
            if self.options.auth == "x-api-key"
            else {"Authorization": f"Bearer {key}"}
        )
        return {**auth, "Cartesia-Version": self.options.version}

    # ----------------------------------------------------------------- input

    async def handle(self, port: str, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            await self._on_text(frame)
        elif isinstance(frame, Interrupt):
            await self._interrupt(frame.utterance_id)

    def _new_context(self, uid: int) -> _Utterance:
        self._seq += 1
        utt = _Utterance(uid, f"{self.call_id or 'vg'}-u{uid}-{self._seq}")
        self._active[utt.context_id] = utt
        self._by_uid[uid] = utt
        self._idle = anyio.Event()
        return utt

    async def _on_text(self, frame: AgentText) -> None:
        uid = frame.utterance_id
        if uid in self._cancelled or uid <= self._interrupted_upto:
            return  # the agent may still stream text of an interrupted utterance
        utt = self._by_uid.get(uid)
        if utt is None or utt.closed:
            if uid > self._newest:
                self._newest = uid
                # A newer utterance means older unfinished ones were abandoned (e.g. their
                # Interrupt overtook their text): cancel them so they cannot hang the node.
                for old in list(self._active.values()):
                    if not old.closed and old.uid < uid:
                        await self._interrupt(old.uid)
            utt = self._new_context(uid)
        utt.pending += frame.text
        if frame.last:
            text, utt.pending = utt.pending, ""
            await self._send_text(utt, text, more=False)
            return
        cut = w.sentence_cut(utt.pending, self.options.max_chunk_chars)
        if cut:
            text, utt.pending = utt.pending[:cut], utt.pending[cut:]
            await self._send_text(utt, text, more=True)

    async def _send_text(self, utt: _Utterance, text: str, *, more: bool) -> None:
        if not utt.sent:
            self.metrics.request_started(utt.context_id)
        utt.sent.append(text)
        utt.closed = not more
        if self.connected or self.in_handover:
            # Not buffered by the base: after a reconnect the whole utterance is replayed on
            # a new context (see on_connected), which a buffered tail could not join.
            await self.transmit(self._request(utt.context_id, text, more), buffer=False)

    def _request(self, context_id: str, text: str, more: bool) -> str:
        o = self.options
        msg = w.Generate(
            model_id=o.model_id,
            transcript=text,
            voice=self._voice,
            output_format=self._output,
            context_id=context_id,
            language=o.language,
            continue_=more,
            add_timestamps=o.add_timestamps,
            max_buffer_delay_ms=o.max_buffer_delay_ms,
        )
        return w.encode(msg).decode()  # Cartesia wants JSON in text frames

    async def _interrupt(self, uid: int) -> None:
        if uid == 0:
            # Text of the interrupted utterance may still be queued behind this Interrupt
            # (control frames overtake media): drop anything up to the newest id seen so far.
            self._interrupted_upto = max(self._interrupted_upto, self._newest)
        else:
            self._cancelled.add(uid)
        targets = list(self._active.values()) if uid == 0 else [self._by_uid.get(uid)]
        for utt in targets:
            if utt is None or utt.context_id not in self._active:
                continue
            self._finish(utt)
            self._cancelled.add(utt.uid)
            self.metrics.request_abandoned(utt.context_id)
            if self.connected or self.in_handover:
                await self.transmit(
                    w.encode(w.CancelContext(utt.context_id)).decode(), buffer=False
                )
        if len(self._cancelled) > 1024:  # ids only grow; keep the recent ones
            self._cancelled = set(sorted(self._cancelled)[-512:])

    def _finish(self, utt: _Utterance) -> None:
        self.metrics.request_abandoned(utt.context_id)  # no-op once its audio came
        self._active.pop(utt.context_id, None)
        if self._by_uid.get(utt.uid) is utt:
            del self._by_uid[utt.uid]
        if not self._active:
            self._idle.set()

    async def end_of_input(self) -> None:
        await self._idle.wait()

    # -------------------------------------------------------------- reconnect

    async def on_connected(self, reconnect: bool) -> None:
        # Text that arrived while (re)connecting was kept, not sent: send it now, on a fresh
        # context (after a drop the service has forgotten the old one).
        for utt in list(self._active.values()):
            self._finish(utt)
            if utt.audio:
                self.log.warning(
                    "cartesia: connection lost mid-utterance %d; its remaining audio is lost",
                    utt.uid,
                )
                await self.send("audio", AudioDone(utterance_id=utt.uid))
                continue
            fresh = self._new_context(utt.uid)
            fresh.pending = utt.pending
            self.metrics.request_abandoned(utt.context_id)
            if utt.sent:
                await self._send_text(fresh, "".join(utt.sent), more=not utt.closed)

    # ----------------------------------------------------------------- output

    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = w.decoder.decode(message)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.malformed += 1
            self.log.warning("cartesia: skipping undecodable message: %s", exc)
            return
        kind = type(msg)
        if kind is w.Error:
            raise w.protocol_error(msg)
        utt = self._active.get(msg.context_id)
        if utt is None:
            if kind is w.Chunk:
                self.dropped_late_chunks += 1
            return
        if kind is w.Chunk:
            await self._on_chunk(utt, msg)
        elif kind is w.Timestamps:
            wt = msg.word_timestamps
            if wt is not None and wt.words:
                words = tuple(
                    Word(w, s, e) for w, s, e in zip(wt.words, wt.start, wt.end, strict=False)
                )
                await self.send("audio", WordTimestamps(utterance_id=utt.uid, words=words))
        elif kind is w.Done:
            self._finish(utt)
            await self.send("audio", AudioDone(utterance_id=utt.uid))

    async def _on_chunk(self, utt: _Utterance, msg: w.Chunk) -> None:
        data = msg.data
        if self._format.encoding == "pcm16":
            # Keep samples whole even if a chunk ever ends mid-sample.
            data = utt.carry + data
            if len(data) % 2:
                data, utt.carry = data[:-1], data[-1:]
            else:
                utt.carry = b""
        if not data:
            return
        if utt.audio == 0 and self.metrics.first_byte(utt.context_id) is not None:
            self.publish(TimelineMark(turn=utt.uid, stage="tts_first_audio"))
        fmt = self._format
        start = fmt.duration_of(utt.audio)
        utt.audio += len(data)
        await self.send(
            "audio",
            AudioFrame(
                data=data,
                encoding=fmt.encoding,
                sample_rate=fmt.sample_rate,
                timestamp=start,
                capture_time=time.monotonic(),
                utterance_id=utt.uid,
            ),
        )
