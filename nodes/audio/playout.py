"""Playout: agent audio paced out to the carrier, with proof of what the caller heard.

Audio arrives faster than real time (TTS, realtime models) in any format. :class:`Playout`
converts it to the carrier's format, cuts it into ``chunk``-second pieces and sends each piece
``lead`` seconds ahead of real time, with a :class:`~voicegraph.frames.PlaybackMark` after every
``mark_interval`` of audio and at the end of each utterance. The carrier echoes a mark once the
audio before it was played (Twilio ``mark``, Plivo ``playedStream``), and that echo is the only
proof of playback.

Pacing model: the carrier plays what it has back to back, so everything sent so far finishes
playing at ``play_end = max(play_end, t_send) + chunk`` (per chunk). A chunk is sent once
``play_end + chunk - now <= lead``; with audio queued, the carrier's buffer therefore never runs dry (no
gaps) and never holds more than ``lead`` (a barge-in has at most ``lead`` of stale audio to
clear). With nothing queued, nothing is sent.

Clear (an :class:`~voicegraph.frames.Interrupt` or :class:`~voicegraph.frames.Clear` on
``"control"``): everything queued is dropped, the playback generation is bumped (mark names
carry it, so marks of audio sent before the clear are ignored when they echo late),
``Clear(generation)`` goes to the carrier, and each unfinished utterance is reported with a
:class:`~voicegraph.frames.PlayedPosition` whose ``played`` is exactly the audio acknowledged by
marks. Later audio of an interrupted utterance is dropped (utterance id 0 is never tracked).

Timeline: publishes ``TimelineMark`` ``first_audio_sent`` and ``first_mark_ack`` per utterance
(keyed by utterance id) and ``clear_sent`` (turn -1) on every clear.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import anyio
import msgspec

from voicegraph.channel import EndOfInput
from voicegraph.frames import (
    AudioDone,
    AudioFormat,
    AudioFrame,
    Clear,
    Cleared,
    Frame,
    Interrupt,
    MarkAck,
    PlaybackMark,
    PlayedPosition,
    TimelineMark,
    bytes_per_sample,
)
from voicegraph.node import Actor, In, Out

from ..convert import AudioConverter
from .pcm import check_audio

__all__ = ["Playout", "PlayoutOptions"]

_EPS = 1e-6  # seconds; absorbs float error so a wake-up at the deadline always sends


class PlayoutOptions(msgspec.Struct, frozen=True):
    """Options of :class:`Playout` (seconds unless stated).

    ``lead``: how far ahead of real time audio is sent (the most stale audio a clear must drop).
    ``chunk``: duration of each piece sent (one ``media`` message). ``max_queued``: audio held
    waiting to be sent; frames beyond it are dropped and counted. ``max_unacked``: marks awaiting
    an echo; beyond it the oldest are forgotten (counted), so a carrier that never echoes cannot
    grow memory. ``mark_prefix``: start of every mark name.

    ``mark_interval``: seconds of audio between marks. A mark follows the chunk that completes
    the interval, the last chunk of an utterance, and the last chunk queued, so every utterance
    is acknowledged to its end; between marks, playback is known only up to the last echoed
    mark, so a barge-in reports up to ``mark_interval`` less than the caller heard (never more).
    ``mark_interval <= chunk`` marks every chunk. ``tick``: the pacing grid: a chunk is sent
    up to ``tick`` seconds after it is due, by the process-wide pacer shared with every other
    call (:mod:`voicegraph.pacer`); at most ``(lead - chunk) / 2``. ``0`` uses a timer of
    this call's own, exactly at the deadline."""

    lead: float = 0.1
    chunk: float = 0.02
    max_queued: float = 600.0
    max_unacked: int = 3000
    mark_prefix: str = "vg"
    mark_interval: float = 0.1
    tick: float = 0.005

    def __post_init__(self) -> None:
        if not 0.005 <= self.chunk <= 0.2:
            raise ValueError(f"chunk must be 0.005..0.2 s, got {self.chunk}")
        if not self.chunk <= self.lead <= 2.0:
            # with less than one chunk ahead the carrier would run dry between chunks
            raise ValueError(f"lead must be from chunk ({self.chunk}) to 2 s, got {self.lead}")
        if not self.max_queued > 0:
            raise ValueError("max_queued must be positive")
        if self.max_unacked < 1:
            raise ValueError("max_unacked must be >= 1")
        if not self.mark_prefix or "." in self.mark_prefix:
            raise ValueError("mark_prefix must be non-empty and contain no '.'")
        if not 0 <= self.mark_interval <= 1.0:
            raise ValueError(f"mark_interval must be 0..1 s, got {self.mark_interval}")
        if not 0 <= self.tick <= (self.lead - self.chunk) / 2 + 1e-9:
            # a later send than that could let the carrier's buffer run dry
            raise ValueError(
                f"tick must be 0..(lead - chunk) / 2 = {(self.lead - self.chunk) / 2:g} s, "
                f"got {self.tick}"
            )


@dataclass(slots=True)
class _Chunk:
    utt: int
    data: bytes
    seconds: float
    capture_time: float


@dataclass(slots=True)
class _Done:
    utt: int


@dataclass(slots=True)
class _Utt:
    sent: float = 0.0
    played: float = 0.0
    chunks_sent: int = 0
    chunks_played: int = 0
    all_sent: bool = False  # AudioDone passed the send point


class Playout(Actor):
    """Paces agent audio to the carrier and tracks what was played (see module docs).

    Inputs: ``"audio"`` (AudioFrame in any format/rate, AudioDone), ``"control"`` (Interrupt,
    Clear; optional), ``"acks"`` (MarkAck, Cleared from the carrier-in node; optional, but
    without it nothing is ever known as played). Outputs: ``"out"`` (AudioFrame in
    ``carrier_format``, PlaybackMark, Clear; required) and ``"events"`` (PlayedPosition,
    optional; each is also published on the call's event bus).

    Read-only state for a barge-in controller in the same graph: :attr:`speaking`,
    :attr:`current_utterance`, :attr:`sent_seconds`, :attr:`played_seconds`. Raises
    :class:`~voicegraph.nodes.audio.pcm.AudioInputError` for empty or odd-length audio."""

    def __init__(
        self,
        carrier_format: AudioFormat,
        lead: float = 0.1,
        chunk: float = 0.02,
        *,
        options: PlayoutOptions | None = None,
    ) -> None:
        super().__init__()
        if options is None:
            tick = min(0.005, (lead - chunk) / 2) if lead >= chunk else 0.0
            options = PlayoutOptions(lead=lead, chunk=chunk, tick=tick)
        self.options = opts = options
        self.carrier_format = carrier_format
        width = bytes_per_sample(carrier_format.encoding)
        self._chunk_bytes = max(1, round(carrier_format.sample_rate * opts.chunk)) * width
        self._bytes_per_second = carrier_format.sample_rate * width
        self.inputs = (
            In("audio", AudioFrame, AudioDone),
            In("control", Interrupt, Clear, required=False),
            In("acks", MarkAck, Cleared, required=False),
        )
        self.outputs = (
            Out("out", AudioFrame, PlaybackMark, Clear, format=carrier_format, required=True),
            Out("events", PlayedPosition),
        )
        self.generation = 0
        self._seq = 0
        self._queue: deque[_Chunk | _Done] = deque()
        self._queued_seconds = 0.0
        self._utts: dict[int, _Utt] = {}
        self._outstanding: deque[tuple[int, int, float]] = deque()  # (seq, utt, seconds)
        self._interrupted: dict[int, None] = {}  # insertion-ordered set, bounded
        self._converters: dict[int, AudioConverter] = {}
        self._partial: dict[int, bytearray] = {}
        self._play_end = -math.inf
        self._stream_time = 0.0
        self._unmarked = 0.0  # seconds sent since the last mark
        # counters (never reset): what was dropped or ignored, and why
        self.dropped_overflow = 0
        self.dropped_interrupted = 0
        self.late_marks = 0
        self.unknown_marks = 0
        self.forgotten_marks = 0
        self.underruns = 0
        self.clears_confirmed = 0

    # ------------------------------------------------------------- public state

    @property
    def speaking(self) -> bool:
        """True while audio is queued or sent but not yet acknowledged as played."""
        return bool(self._outstanding or self._queue)

    @property
    def current_utterance(self) -> int:
        """The utterance being played (oldest unacknowledged), else the next queued, else 0."""
        if self._outstanding:
            return self._outstanding[0][1]
        for item in self._queue:
            return item.utt
        return 0

    @property
    def sent_seconds(self) -> float:
        """Seconds of the current utterance sent to the carrier."""
        u = self._utts.get(self.current_utterance)
        return u.sent if u else 0.0

    @property
    def played_seconds(self) -> float:
        """Seconds of the current utterance the carrier acknowledged as played."""
        u = self._utts.get(self.current_utterance)
        return u.played if u else 0.0

    # ------------------------------------------------------------------- loop

    async def run(self) -> None:
        inbox = self.inbox
        while True:
            await self._pump()
            wake = self._next_send_at()
            try:
                if wake == math.inf:
                    item: tuple[str, Frame] | None = await inbox.receive()
                else:
                    item = await inbox.receive_until(wake, self.options.tick)
            except EndOfInput:
                break
            if item is not None:
                await self.handle(*item)
        # Inputs are closed: what was accepted is still played out, paced as before.
        while self._queue:
            await self._pump()
            if self._queue:
                await anyio.sleep_until(self._next_send_at())

    def _next_send_at(self) -> float:
        if not self._queue:
            return math.inf
        head = self._queue[0]
        if isinstance(head, _Done):
            return -math.inf
        return self._play_end + head.seconds - self.options.lead

    async def handle(self, port: str, frame: Frame) -> None:
        if isinstance(frame, AudioFrame):
            self._accept_audio(frame)
        elif isinstance(frame, MarkAck):
            await self._ack(frame.name)
        elif isinstance(frame, AudioDone):
            self._accept_done(frame.utterance_id)
        elif isinstance(frame, Interrupt):
            await self._clear(frame.utterance_id)
        elif isinstance(frame, Clear):
            await self._clear(0)
        elif isinstance(frame, Cleared):
            self.clears_confirmed += 1

    # ------------------------------------------------------------------ input

    def _accept_audio(self, frame: AudioFrame) -> None:
        utt = frame.utterance_id
        if utt in self._interrupted:
            self.dropped_interrupted += 1
            return
        check_audio(self.name or "Playout", frame)
        if self._queued_seconds + frame.duration > self.options.max_queued:
            self.dropped_overflow += 1
            if self.dropped_overflow == 1 or self.log.isEnabledFor(10):
                self.log.warning(
                    "playout queue full (%.0f s); dropping agent audio of utterance %d",
                    self.options.max_queued,
                    utt,
                )
            return
        buf = self._partial.setdefault(utt, bytearray())
        if frame.format == self.carrier_format:
            buf += frame.data
        else:
            conv = self._converters.get(utt)
            if conv is None or conv.src != frame.format:
                if conv is not None:
                    self._flush_converter(utt, conv, buf)
                conv = self._converters[utt] = AudioConverter(frame.format, self.carrier_format)
            res = conv.process("in", frame)
            if res is not None:
                buf += res.data  # type: ignore[union-attr]
        self._utts.setdefault(utt, _Utt())
        self._cut(utt, buf, frame.capture_time, final=False)

    def _flush_converter(self, utt: int, conv: AudioConverter, buf: bytearray) -> None:
        tail = conv.finish()
        if tail is not None:
            buf += tail.data  # type: ignore[union-attr]
        del self._converters[utt]

    def _accept_done(self, utt: int) -> None:
        if utt in self._interrupted:
            return
        buf = self._partial.pop(utt, bytearray())
        conv = self._converters.get(utt)
        if conv is not None:
            self._flush_converter(utt, conv, buf)
        self._utts.setdefault(utt, _Utt())
        self._cut(utt, buf, 0.0, final=True)
        self._queue.append(_Done(utt))

    def _cut(self, utt: int, buf: bytearray, capture_time: float, *, final: bool) -> None:
        step = self._chunk_bytes
        limit = len(buf) if final else len(buf) - len(buf) % step
        bps = self._bytes_per_second
        for i in range(0, limit, step):
            data = bytes(buf[i : min(i + step, limit)])
            seconds = len(data) / bps
            self._queue.append(_Chunk(utt, data, seconds, capture_time))
            self._queued_seconds += seconds
        del buf[:limit]

    # ------------------------------------------------------------------ output

    async def _pump(self) -> None:
        """Send every queued chunk that is due now (and pass AudioDone markers)."""
        queue, lead, fmt = self._queue, self.options.lead, self.carrier_format
        while queue:
            item = queue[0]
            if isinstance(item, _Done):
                queue.popleft()
                u = self._utts.get(item.utt)
                if u is not None:
                    u.all_sent = True
                    await self._maybe_complete(item.utt, u)
                continue
            now = anyio.current_time()
            if now + _EPS < self._play_end + item.seconds - lead:
                return  # sending now would put more than `lead` in the carrier's buffer
            queue.popleft()
            self._queued_seconds -= item.seconds
            u = self._utts.setdefault(item.utt, _Utt())
            if u.chunks_sent and self._play_end < now - _EPS:
                self.underruns += 1  # the producer fell behind real time mid-utterance
            self._play_end = max(self._play_end, now) + item.seconds
            await self.send(
                "out",
                AudioFrame(
                    data=item.data,
                    encoding=fmt.encoding,
                    sample_rate=fmt.sample_rate,
                    timestamp=self._stream_time,
                    capture_time=item.capture_time,
                    utterance_id=item.utt,
                ),
            )
            self._stream_time += item.seconds
            self._seq += 1
            self._unmarked += item.seconds
            if (
                self._unmarked >= self.options.mark_interval - _EPS
                or not queue
                or queue[0].utt != item.utt
                or isinstance(queue[0], _Done)
            ):
                self._unmarked = 0.0
                await self.send(
                    "out",
                    PlaybackMark(name=f"{self.options.mark_prefix}{self.generation}.{self._seq}"),
                )
            if not u.chunks_sent and item.utt:
                self.publish(TimelineMark(turn=item.utt, stage="first_audio_sent"))
            u.sent += item.seconds
            u.chunks_sent += 1
            self._outstanding.append((self._seq, item.utt, item.seconds))
            if len(self._outstanding) > self.options.max_unacked:
                self._outstanding.popleft()
                self.forgotten_marks += 1

    async def _ack(self, name: str) -> None:
        gen, seq = self._parse_mark(name)
        if gen is None or seq is None:
            self.unknown_marks += 1
            return
        if gen != self.generation:
            self.late_marks += 1
            return
        touched: dict[int, _Utt] = {}
        out = self._outstanding
        while out and out[0][0] <= seq:
            _, utt, seconds = out.popleft()
            u = self._utts.get(utt)
            if u is not None:
                if not u.chunks_played and utt:
                    self.publish(TimelineMark(turn=utt, stage="first_mark_ack"))
                u.played += seconds
                u.chunks_played += 1
                touched[utt] = u
        for utt, u in touched.items():
            await self._maybe_complete(utt, u)

    def _parse_mark(self, name: str) -> tuple[int | None, int | None]:
        prefix = self.options.mark_prefix
        if not name.startswith(prefix):
            return None, None
        gen, _, seq = name[len(prefix) :].partition(".")
        if not (gen.isdigit() and seq.isdigit()):
            return None, None
        return int(gen), int(seq)

    async def _maybe_complete(self, utt: int, u: _Utt) -> None:
        if u.all_sent and u.chunks_played >= u.chunks_sent:
            del self._utts[utt]
            await self._report(utt, u, self.generation, complete=True)

    async def _report(self, utt: int, u: _Utt, generation: int, *, complete: bool) -> None:
        # generation: the one the audio was sent in (the old one when reporting a clear)
        pos = PlayedPosition(
            utterance_id=utt,
            played=round(u.played, 6),
            sent=round(u.sent, 6),
            generation=generation,
            complete=complete,
        )
        self.publish(pos)
        await self.send("events", pos)

    async def _clear(self, utterance_id: int) -> None:
        target = utterance_id or self.current_utterance
        for utt in (target, *self._utts):
            if utt and utt not in self._interrupted:
                self._interrupted[utt] = None
                if len(self._interrupted) > 1024:
                    del self._interrupted[next(iter(self._interrupted))]
        utts = self._utts
        self._utts = {}
        self._queue.clear()
        self._queued_seconds = 0.0
        self._outstanding.clear()
        self._partial.clear()
        self._converters.clear()
        self._play_end = -math.inf
        self._unmarked = 0.0
        old = self.generation
        self.generation += 1
        if self.log.isEnabledFor(10):
            self.log.debug("clear: generation %d -> %d", old, self.generation)
        await self.send("out", Clear(generation=self.generation))
        self.publish(TimelineMark(turn=-1, stage="clear_sent"))
        for utt, u in utts.items():
            await self._report(utt, u, old, complete=False)
