"""Playout: agent audio paced out to the carrier, with proof of what the caller heard.

Audio arrives faster than real time (TTS, realtime models) in any format. :class:`Playout`
converts it to the carrier's format, cuts it into 20 ms pieces and sends them, joined into
messages of up to ``chunk`` seconds, ``lead`` seconds ahead of real time, with a
:class:`~voicegraph.frames.PlaybackMark` after every ``mark_interval`` of audio and at the end
of each utterance. The carrier echoes a mark once the audio before it was played (Twilio
``mark``, Plivo ``playedStream``), and that echo is the only proof of playback.

Pacing model: the carrier plays what it has back to back, so everything sent so far finishes
playing at ``play_end = max(play_end, t_send) + m`` for a message of ``m`` seconds (the queued
pieces of one utterance, up to ``chunk``). It is sent once ``play_end + m - now <= lead``: a
longer ``chunk`` means fewer messages but never holds back audio that is all there is (the
first 20 ms of a reply leave at once). With audio queued, the carrier's buffer therefore never
runs dry (no gaps) and never holds more than ``lead`` (a barge-in has at most ``lead`` of stale
audio to clear). With nothing queued, nothing is sent.

Clear (an :class:`~voicegraph.frames.Interrupt` or :class:`~voicegraph.frames.Clear` on
``"control"``): everything queued is dropped, the playback generation is bumped (mark names
carry it, so marks of audio sent before the clear are ignored when they echo late),
``Clear(generation)`` goes to the carrier, and each unfinished utterance is reported with a
:class:`~voicegraph.frames.PlayedPosition` whose ``played`` is exactly the audio acknowledged by
marks. Later audio of an interrupted utterance is dropped (utterance id 0 is never tracked).

Timeline: publishes ``TimelineMark`` ``first_audio_sent`` and ``first_mark_ack`` per utterance
(keyed by utterance id) and ``clear_sent`` (turn -1) on every clear.

The options are :class:`~.playout_options.PlayoutOptions` (importable from here too); the mark
names, what awaits an echo and each utterance's progress are kept by
:class:`~.playout_marks.MarkLedger`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import anyio

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
from voicegraph.pacer import current_pacer

from ..convert import AudioConverter
from .pcm import check_audio
from .playout_marks import MarkLedger, UtteranceProgress
from .playout_options import PlayoutOptions

__all__ = ["Playout", "PlayoutOptions"]

_EPS = 1e-6  # seconds; absorbs float error so a wake-up at the deadline always sends
PIECE = 0.02
"""Seconds per queued piece of audio: a message joins the due pieces of one utterance, up to
``chunk`` (so a longer ``chunk`` never makes the first audio of a reply wait for more TTS)."""


@dataclass(slots=True)
class _Chunk:
    utt: int
    data: bytes
    seconds: float
    capture_time: float


@dataclass(slots=True)
class _Done:
    utt: int


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
        lead: float = 0.14,
        chunk: float = 0.06,
        *,
        options: PlayoutOptions | None = None,
    ) -> None:
        super().__init__()
        if options is None:
            tick = min(0.02, (lead - chunk) / 2) if lead >= chunk else 0.0
            options = PlayoutOptions(lead=lead, chunk=chunk, tick=tick)
        self.options = opts = options
        self.carrier_format = carrier_format
        width = bytes_per_sample(carrier_format.encoding)
        piece = min(opts.chunk, PIECE)
        self._piece_bytes = max(1, round(carrier_format.sample_rate * piece)) * width
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
        self._marks = MarkLedger(opts.mark_prefix, opts.max_unacked)
        self._queue: deque[_Chunk | _Done] = deque()
        self._queued_seconds = 0.0
        self._interrupted: dict[int, None] = {}  # insertion-ordered set, bounded
        self._converters: dict[int, AudioConverter] = {}
        self._partial: dict[int, bytearray] = {}
        self._play_end = -math.inf
        self._stream_time = 0.0
        self._unmarked = 0.0  # seconds sent since the last mark
        # counters (never reset): what was dropped or ignored, and why
        self.dropped_overflow = 0
        self.dropped_interrupted = 0
        self.underruns = 0
        self.clears_confirmed = 0

    # ------------------------------------------------------------- public state

    @property
    def speaking(self) -> bool:
        """True while audio is queued or sent but not yet acknowledged as played."""
        return self._marks.unacknowledged or bool(self._queue)

    @property
    def current_utterance(self) -> int:
        """The utterance being played (oldest unacknowledged), else the next queued, else 0."""
        oldest = self._marks.oldest_utterance
        if oldest is not None:
            return oldest
        for item in self._queue:
            return item.utt
        return 0

    @property
    def sent_seconds(self) -> float:
        """Seconds of the current utterance sent to the carrier."""
        u = self._marks.utts.get(self.current_utterance)
        return u.sent if u else 0.0

    @property
    def played_seconds(self) -> float:
        """Seconds of the current utterance the carrier acknowledged as played."""
        u = self._marks.utts.get(self.current_utterance)
        return u.played if u else 0.0

    @property
    def generation(self) -> int:
        """The playback generation: bumped by every clear, carried in mark names."""
        return self._marks.generation

    @property
    def late_marks(self) -> int:
        """Echoes of marks sent before a clear (ignored)."""
        return self._marks.late_marks

    @property
    def unknown_marks(self) -> int:
        """Echoes whose name is not one of this node's marks (ignored)."""
        return self._marks.unknown_marks

    @property
    def forgotten_marks(self) -> int:
        """Chunks forgotten unacknowledged beyond ``max_unacked``."""
        return self._marks.forgotten_marks

    # ------------------------------------------------------------------- loop

    async def run(self) -> None:
        inbox = self.inbox
        tick = self.options.tick
        # this call's slot on the pacing grid: calls' sends are spread through each tick
        phase = current_pacer().spread(tick) if tick > 0 else 0.0
        while True:
            await self._pump()
            wake = self._next_send_at()
            try:
                if wake == math.inf:
                    item: tuple[str, Frame] | None = await inbox.receive()
                else:
                    item = await inbox.receive_until(wake, tick, phase)
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
        if isinstance(self._queue[0], _Done):
            return -math.inf
        return self._play_end + self._next_message()[0] - self.options.lead

    def _next_message(self) -> tuple[float, int]:
        """Seconds and pieces the next message would carry: the queued pieces of the head's
        utterance, up to ``chunk``."""
        queue = self._queue
        head = queue[0]
        total = head.seconds  # type: ignore[union-attr]
        limit = self.options.chunk + _EPS
        n = 1
        for i in range(1, len(queue)):
            item = queue[i]
            if isinstance(item, _Done) or item.utt != head.utt or total + item.seconds > limit:
                break
            total += item.seconds
            n = i + 1
        return total, n

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
        self._marks.progress(utt)
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
        self._marks.progress(utt)
        self._cut(utt, buf, 0.0, final=True)
        self._queue.append(_Done(utt))

    def _cut(self, utt: int, buf: bytearray, capture_time: float, *, final: bool) -> None:
        step = self._piece_bytes
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
                u = self._marks.utts.get(item.utt)
                if u is not None:
                    u.all_sent = True
                    await self._maybe_complete(item.utt, u)
                continue
            now = anyio.current_time()
            seconds, pieces = self._next_message() if len(queue) > 1 else (item.seconds, 1)
            if now + _EPS < self._play_end + seconds - lead:
                return  # sending now would put more than `lead` in the carrier's buffer
            data = self._take(pieces)
            self._queued_seconds -= seconds
            u = self._marks.progress(item.utt)
            if u.chunks_sent and self._play_end < now - _EPS:
                self.underruns += 1  # the producer fell behind real time mid-utterance
            self._play_end = max(self._play_end, now) + seconds
            await self.send(
                "out",
                AudioFrame(
                    data=data,
                    encoding=fmt.encoding,
                    sample_rate=fmt.sample_rate,
                    timestamp=self._stream_time,
                    capture_time=item.capture_time,
                    utterance_id=item.utt,
                ),
            )
            self._stream_time += seconds
            mark = self._marks.next_chunk()
            self._unmarked += seconds
            if (
                self._unmarked >= self.options.mark_interval - _EPS
                or not queue
                or queue[0].utt != item.utt
                or isinstance(queue[0], _Done)
            ):
                self._unmarked = 0.0
                await self.send("out", PlaybackMark(name=mark))
            if not u.chunks_sent and item.utt:
                self.publish(TimelineMark(turn=item.utt, stage="first_audio_sent"))
            self._marks.sent(item.utt, u, seconds)

    def _take(self, pieces: int) -> bytes:
        """Pop the ``pieces`` head pieces (one utterance's, as counted by
        :meth:`_next_message`) and join them."""
        queue = self._queue
        if pieces == 1:
            return queue.popleft().data  # type: ignore[union-attr]
        return b"".join(queue.popleft().data for _ in range(pieces))  # type: ignore[union-attr]

    async def _ack(self, name: str) -> None:
        for utt, (u, first) in self._marks.ack(name).items():
            if first and utt:
                self.publish(TimelineMark(turn=utt, stage="first_mark_ack"))
            await self._maybe_complete(utt, u)

    async def _maybe_complete(self, utt: int, u: UtteranceProgress) -> None:
        if u.finished:
            del self._marks.utts[utt]
            await self._report(utt, u, self.generation, complete=True)

    async def _report(
        self, utt: int, u: UtteranceProgress, generation: int, *, complete: bool
    ) -> None:
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
        for utt in (target, *self._marks.utts):
            if utt and utt not in self._interrupted:
                self._interrupted[utt] = None
                if len(self._interrupted) > 1024:
                    del self._interrupted[next(iter(self._interrupted))]
        old, utts = self._marks.clear()
        self._queue.clear()
        self._queued_seconds = 0.0
        self._partial.clear()
        self._converters.clear()
        self._play_end = -math.inf
        self._unmarked = 0.0
        if self.log.isEnabledFor(10):
            self.log.debug("clear: generation %d -> %d", old, self.generation)
        await self.send("out", Clear(generation=self.generation))
        self.publish(TimelineMark(turn=-1, stage="clear_sent"))
        for utt, u in utts.items():
            await self._report(utt, u, old, complete=False)
