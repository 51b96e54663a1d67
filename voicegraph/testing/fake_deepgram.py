"""A protocol-faithful fake of Deepgram's live ``/v1/listen`` WebSocket, on 127.0.0.1.

It checks the handshake (``Authorization: Token``/``Bearer``, query parameters) and every client
message the way the real service does (wrong handshake -> HTTP 400/401 with ``dg-error``;
undecodable data or an empty binary frame -> close ``1008 DATA-0000``; nothing for 10 s ->
close ``1011 NET-0001``), segments the audio it hears by energy, and answers each speech
segment with the next scripted transcript: interim results while speech lasts, a
``speech_final`` result after ``endpointing`` ms of silence, ``UtteranceEnd`` after
``utterance_end_ms``, ``SpeechStarted`` when ``vad_events=true``; ``Finalize`` flushes with
``from_finalize: true``; ``CloseStream`` flushes, sends ``Metadata`` and closes with 1000.

Times are audio time (seconds of audio received), so tests are deterministic. Every client
message is recorded in :attr:`FakeDeepgram.received`.

This module is the server and its connections; the wire (handshake parameters and their
checks, control messages, the messages sent back) is in ``_deepgram_protocol.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec
import numpy as np

from voicegraph.nodes.audio.g711 import ulaw_to_pcm16
from voicegraph.wsio import SocketClosed

from ._deepgram_protocol import (
    NET0001,
    DeepgramFaults,
    ReceivedMessage,
    _CloseStream,
    _Config,
    _control,
    _Finalize,
    _metadata,
    _Reject,
    _results,
    _Segment,
)
from .fakeserver import Accept, Engine, FakeServer, Refuse, WebSocketPeer

__all__ = ["DeepgramFaults", "FakeDeepgram", "ReceivedMessage"]

_encode = msgspec.json.encode


class FakeDeepgram(FakeServer):
    """Fake Deepgram live STT. Use as ``async with FakeDeepgram(...) as dg``; point the client
    at :attr:`url`.

    ``transcripts``: texts returned in order, one per detected speech segment (exhausted ->
    empty results). ``first_interim_delay``: seconds of speech before the first interim.
    ``endpointing_delay``: seconds of silence before ``speech_final`` (default: the client's
    ``endpointing`` parameter). ``latency``: wall-clock seconds added before each result.
    ``threshold``: RMS level (PCM16 units) above which a 20 ms block counts as speech.
    ``engine``: ``"hypercorn"`` or ``"picows"`` (asyncio only; cheaper per message), see
    :class:`~voicegraph.testing.fakeserver.FakeServer`.
    """

    def __init__(
        self,
        transcripts: Sequence[str] = (),
        *,
        api_key: str = "test-deepgram-key",
        first_interim_delay: float = 0.3,
        interim_interval: float = 0.4,
        endpointing_delay: float | None = None,
        latency: float = 0.0,
        idle_timeout: float = 10.0,
        threshold: float = 500.0,
        faults: DeepgramFaults | None = None,
        engine: Engine = "hypercorn",
    ) -> None:
        super().__init__(engine=engine)
        self.transcripts = list(transcripts)
        self.api_key = api_key
        self.first_interim_delay = first_interim_delay
        self.interim_interval = interim_interval
        self.endpointing_delay = endpointing_delay
        self.latency = latency
        self.idle_timeout = idle_timeout
        self.threshold = threshold
        self.faults = faults or DeepgramFaults()
        self.received: list[ReceivedMessage] = []
        self.sent: list[dict[str, Any]] = []
        self.handshakes = 0
        self.connections = 0
        self.close_codes: list[tuple[int, str]] = []
        self.queries: list[dict[str, list[str]]] = []
        self._next = 0

    @property
    def url(self) -> str:
        """Base URL for ``DeepgramOptions(base_url=...)``."""
        return self.ws_url

    def kinds(self, connection: int | None = None) -> list[str]:
        """Kinds of the received messages (optionally of one connection)."""
        return [m.kind for m in self.received if connection in (None, m.connection)]

    # ------------------------------------------------------------ handshake

    def handshake(self, ws: WebSocketPeer) -> Accept | Refuse:
        self.handshakes += 1
        rid = str(uuid.uuid4())
        if ws.path != "/v1/listen":
            return Refuse(404, {"dg-request-id": rid}, b"not found")
        scheme, _, key = ws.headers.get("authorization", "").partition(" ")
        if (
            self.faults.refuse_auth
            or scheme.lower() not in ("token", "bearer")
            or key != self.api_key
        ):
            err = "Invalid credentials."
            return Refuse(401, {"dg-request-id": rid, "dg-error": err}, err.encode())
        if self.faults.fail_connects > 0:
            self.faults.fail_connects -= 1
            return Refuse(503, {"dg-request-id": rid, "dg-error": "unavailable"}, b"unavailable")
        try:
            cfg = _Config(ws)
        except _Reject as exc:
            return Refuse(
                exc.status, {"dg-request-id": rid, "dg-error": exc.error}, exc.error.encode()
            )
        self.queries.append(ws.query)
        return Accept({"dg-request-id": rid}, (cfg, rid))

    async def websocket(self, ws: WebSocketPeer) -> None:
        cfg, rid = ws.state
        self.connections += 1
        await _Stream(self, ws, cfg, self.connections, rid).run()

    def _next_text(self) -> str:
        if self._next < len(self.transcripts):
            self._next += 1
            return self.transcripts[self._next - 1]
        return ""


class _Stream:
    """One accepted connection."""

    def __init__(self, fake: FakeDeepgram, ws: WebSocketPeer, cfg: _Config, n: int, rid: str):
        self.fake, self.ws, self.cfg, self.n, self.rid = fake, ws, cfg, n, rid
        self.time = 0.0  # seconds of audio received
        self.seen_audio = False
        self.seg: _Segment | None = None
        self.last_word_end: float | None = None  # pending UtteranceEnd
        self.gap = 0.0
        self.bps = 2 if cfg.encoding == "linear16" else 1
        self.samples = cfg.rate // 50  # per 20 ms block
        self.carry = b""
        self.malformed_sent = False
        # The idle timeout: one watcher task per connection instead of a timer per message.
        self.deadline = 0.0
        self.waiting = False  # the reader is parked in receive()
        self.parked: anyio.Event | None = None  # set when the reader parks (watcher waits)
        self.reading = anyio.CancelScope()

    async def close(self, code: int, reason: str) -> None:
        self.fake.close_codes.append((code, reason))
        await self.ws.close(code, reason)

    async def run(self) -> None:
        self.deadline = anyio.current_time() + self.fake.idle_timeout
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.watch_idle)
            try:
                with self.reading:
                    await self.read()
            except SocketClosed:
                pass
            finally:
                tg.cancel_scope.cancel()
        if self.reading.cancelled_caught:
            await self.close(1011, "NET-0001 " + NET0001)

    async def watch_idle(self) -> None:
        """Cancel the reader once nothing arrived by the deadline while it waited (as a
        timeout around each ``receive`` would, without arming one per message)."""
        while True:
            delay = self.deadline - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            elif self.waiting:
                self.reading.cancel()
                return
            else:  # busy answering: the timeout covers the wait for the next message only
                self.parked = anyio.Event()
                await self.parked.wait()

    async def read(self) -> None:
        fake = self.fake
        while not self.ws.closed:
            self.waiting = True
            if self.parked is not None:
                self.parked.set()
                self.parked = None
            try:
                msg = await self.ws.receive()
            finally:
                self.waiting = False
            # Only audio starts the clock's protection: text alone before any audio does not.
            if isinstance(msg, bytes) or self.seen_audio:
                self.deadline = anyio.current_time() + fake.idle_timeout
            if isinstance(msg, bytes):
                fake.received.append(ReceivedMessage(self.n, "audio", len(msg)))
                if not msg or len(msg) % self.bps:
                    await self.close(1008, "DATA-0000")
                    return
                self.seen_audio = True
                await self.on_audio(msg)
                limit = fake.faults.close_after_audio
                if limit is not None and self.n == 1 and self.time >= limit:
                    await self.close(1011, "NET-0000")
                    return
                continue
            try:
                ctl = _control.decode(msg)
            except (msgspec.DecodeError, msgspec.ValidationError):
                fake.received.append(ReceivedMessage(self.n, "invalid", len(msg)))
                await self.close(1008, "DATA-0000")
                return
            kind = type(ctl).__name__.lstrip("_")
            fake.received.append(ReceivedMessage(self.n, kind, len(msg)))
            if isinstance(ctl, _Finalize):
                await self.end_segment(speech_final=False, from_finalize=True)
            elif isinstance(ctl, _CloseStream):
                await self.end_segment(speech_final=False, from_finalize=False)
                await self.send(_metadata(self.rid, self.time))
                await self.close(1000, "")
                return

    # ---------------------------------------------------------------- audio

    def levels(self, data: bytes) -> np.ndarray[Any, Any]:
        """RMS level of each whole 20 ms block of ``data``, in one vectorised step. The same
        figure as block by block: squares of 16-bit samples sum exactly in float64 in any order."""
        pcm = ulaw_to_pcm16(data) if self.cfg.encoding == "mulaw" else data
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64).reshape(-1, self.samples)
        # np.mean's own arithmetic (sum, then divide by the count) without its per-call overhead
        rms: np.ndarray[Any, Any] = np.sqrt(np.add.reduce(x * x, axis=1) / self.samples)
        return rms

    async def on_audio(self, data: bytes) -> None:
        block = self.samples * self.bps
        buf = self.carry + data if self.carry else data
        n = len(buf) // block * block
        self.carry = buf[n:]
        if not n:
            return
        for speech in (self.levels(buf[:n]) >= self.fake.threshold).tolist():
            if speech or self.seg is not None or self.last_word_end is not None:
                await self.on_block(speech, 0.02)
            else:  # silence with nothing pending: on_block would only advance the clocks
                self.time += 0.02
                self.gap += 0.02

    async def on_block(self, speech: bool, dt: float) -> None:
        t0 = self.time
        self.time += dt
        seg = self.seg
        if speech:
            self.gap = 0.0
            if seg is None:
                seg = self.seg = _Segment(t0, self.fake._next_text())
                self.last_word_end = None
                if self.cfg.vad_events:
                    await self.send(
                        {"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(t0, 3)}
                    )
            seg.end = self.time
            seg.silence = 0.0
            spoken = seg.end - seg.start
            due = self.fake.first_interim_delay + seg.interims * self.fake.interim_interval
            if self.cfg.interim and spoken >= due and seg.interims < max(0, len(seg.words) - 1):
                seg.interims += 1
                await self.result(seg, seg.words[: seg.interims], False, False, False)
            return
        self.gap += dt
        if seg is not None:
            seg.silence += dt
            limit = self.fake.endpointing_delay
            if limit is None:
                limit = self.cfg.endpointing
            if limit is not None and seg.silence >= limit:
                await self.end_segment(speech_final=True, from_finalize=False)
        elif (
            self.last_word_end is not None
            and self.cfg.utterance_end is not None
            and self.gap >= self.cfg.utterance_end
        ):
            await self.send(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end}
            )
            self.last_word_end = None

    async def end_segment(self, *, speech_final: bool, from_finalize: bool) -> None:
        seg, self.seg = self.seg, None
        if seg is None:
            if from_finalize:  # nothing buffered: an empty flush result, as the service may send
                await self.result(_Segment(self.time, ""), [], True, False, True)
            return
        await self.result(seg, seg.words, True, speech_final, from_finalize)
        if seg.words:
            self.last_word_end = round(seg.end, 3)
        self.gap = seg.silence

    async def result(
        self,
        seg: _Segment,
        words: list[str],
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> None:
        msg = _results(self.rid, seg, words, is_final, speech_final, from_finalize)
        await self.send(msg)

    async def send(self, msg: dict[str, Any]) -> None:
        fake = self.fake
        if fake.faults.stall:
            return
        if fake.latency:
            await anyio.sleep(fake.latency)
        if fake.faults.malformed_first and not self.malformed_sent:
            self.malformed_sent = True
            await self.ws.send("{not json")
        fake.sent.append(msg)
        try:
            await self.ws.send(_encode(msg).decode())
        except SocketClosed:
            pass
