"""EspeakTTS: text-to-speech with espeak-ng in process, phrase by phrase (extra ``offline``).

Same contract as the network TTS nodes, so presets can swap them: input ``text`` takes
:class:`AgentText` deltas and :class:`Interrupt`; output ``audio`` emits :class:`AudioFrame`,
:class:`WordTimestamps` and :class:`AudioDone`. espeak-ng is GPL-3.0-or-later (see
``docs/offline.md``).

Two tasks: the receiver reads the inbox and never waits on synthesis, so an ``Interrupt``
(which overtakes queued text) takes effect at once; the speaker synthesises one phrase at a time
in a worker thread and sends its audio, waiting for room downstream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import numpy as np

from voicegraph.channel import EndOfInput
from voicegraph.frames import (
    AgentText,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Encoding,
    Interrupt,
    TimelineMark,
    Word,
    WordTimestamps,
)
from voicegraph.node import Actor, In, Out

from .espeak import EspeakSynth
from .phrases import PhraseSplitter

__all__ = ["EspeakTTS", "EspeakTTSOptions", "TTSBacklogFull"]

_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


class TTSBacklogFull(RuntimeError):
    """More text is waiting to be spoken than ``max_pending_chars`` allows."""


class EspeakTTSOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options of :class:`EspeakTTS`.

    ``voice``, ``rate_wpm``, ``pitch``, ``volume``: espeak-ng voice and prosody (see
    :class:`~voicegraph.nodes.offline.espeak.EspeakSynth`). ``encoding``/``sample_rate``: the
    output format (espeak-ng's 22,050 Hz is resampled with soxr; ``"mulaw"`` for telephony).
    ``frame_ms``: audio per output frame. ``max_phrase_chars`` / ``min_clause_chars``: phrase
    cutting (see :class:`~voicegraph.nodes.offline.phrases.PhraseSplitter`).
    ``max_pending_chars``: text accepted but not yet spoken; more raises
    :class:`TTSBacklogFull`. ``max_open_utterances``: utterances whose text is still arriving.
    """

    voice: str = "en-us"
    rate_wpm: int = 175
    pitch: int = 50
    volume: int = 100
    encoding: Encoding = "pcm16"
    sample_rate: int = 16000
    frame_ms: int = 20
    max_phrase_chars: int = 250
    min_clause_chars: int = 40
    max_pending_chars: int = 20_000
    max_open_utterances: int = 8

    def __post_init__(self) -> None:
        if self.sample_rate not in _RATES:
            raise ValueError(
                f"EspeakTTS sample_rate {self.sample_rate} is not supported; use one of {_RATES}"
            )
        if self.encoding not in ("pcm16", "mulaw"):
            raise ValueError(
                f"EspeakTTS encoding must be 'pcm16' or 'mulaw', not {self.encoding!r}"
            )
        if not 5 <= self.frame_ms <= 1000:
            raise ValueError(f"EspeakTTS frame_ms must be 5..1000, got {self.frame_ms}")
        if self.max_pending_chars < self.max_phrase_chars:
            raise ValueError("EspeakTTS max_pending_chars must be at least max_phrase_chars")
        if self.max_open_utterances < 1:
            raise ValueError("EspeakTTS max_open_utterances must be >= 1")


class _Job(msgspec.Struct):
    utterance_id: int
    text: str
    last: bool


class _Progress:
    """Where an utterance's audio has got to (seconds sent, first audio seen)."""

    __slots__ = ("first", "offset")

    def __init__(self) -> None:
        self.offset = 0.0
        self.first = True


class EspeakTTS(Actor):
    """espeak-ng speech for agent text, cut into phrases so first audio comes early.

    Input ``text``: :class:`AgentText` (deltas of one utterance; ``last=True`` closes it) and
    :class:`Interrupt` (``utterance_id`` 0: every utterance in progress). Output ``audio``:
    per phrase a :class:`WordTimestamps` (seconds from the start of the utterance's audio), then
    its :class:`AudioFrame` s (``utterance_id`` set, ``timestamp`` from the utterance start),
    and :class:`AudioDone` after an utterance's last audio. An interrupted utterance gets no
    ``AudioDone``; text that arrives for it later is dropped and counted in
    :attr:`dropped_frames`. Publishes ``TimelineMark(stage="tts_first_audio")`` per utterance.
    """

    inputs = (In("text", AgentText, Interrupt),)

    def __init__(self, options: EspeakTTSOptions | None = None) -> None:
        super().__init__()
        self.options = o = options or EspeakTTSOptions()
        self.format = AudioFormat(o.encoding, o.sample_rate)
        self.outputs = (Out("audio", AudioFrame, WordTimestamps, AudioDone, format=self.format),)
        self._encode = _mulaw_encoder() if o.encoding == "mulaw" else None
        self._synth = EspeakSynth(o.voice, rate_wpm=o.rate_wpm, pitch=o.pitch, volume=o.volume)
        self._frame_samples = o.sample_rate * o.frame_ms // 1000
        self._jobs: deque[_Job] = deque()
        self._pending_chars = 0
        self._open: dict[int, PhraseSplitter] = {}
        self._progress: dict[int, _Progress] = {}
        self._cancelled: deque[int] = deque(maxlen=256)
        self._current: tuple[int, threading.Event, anyio.CancelScope] | None = None
        self._wake: anyio.Event | None = None
        self._input_done = False
        self.dropped_frames = 0
        """AgentText frames dropped because their utterance had been interrupted."""
        self.interrupted_phrases = 0
        """Phrases not spoken (or cut short) because of an Interrupt."""

    # ------------------------------------------------------------- receiving

    def clone(self) -> EspeakTTS:
        """A fresh node with the same options, for another call."""
        return type(self)(self.options)

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._speak_loop)
                await self._receive_loop()
        except BaseExceptionGroup as group:
            # Report a single failure as itself, so the call's error names the real cause.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise

    async def _receive_loop(self) -> None:
        while True:
            try:
                _, frame = await self.inbox.receive()
            except EndOfInput:
                break
            if isinstance(frame, Interrupt):
                self._interrupt(frame.utterance_id)
            elif isinstance(frame, AgentText):
                self._accept(frame)
        self._input_done = True
        self._notify()

    def _accept(self, frame: AgentText) -> None:
        uid = frame.utterance_id
        if uid in self._cancelled:
            self.dropped_frames += 1
            return
        splitter = self._open.get(uid)
        if splitter is None:
            if len(self._open) >= self.options.max_open_utterances:
                raise TTSBacklogFull(
                    f"{self.name}: {len(self._open)} utterances are open at once (ids "
                    f"{sorted(self._open)}); close each with AgentText(last=True) or raise "
                    "max_open_utterances"
                )
            o = self.options
            splitter = self._open[uid] = PhraseSplitter(o.max_phrase_chars, o.min_clause_chars)
            self._progress.setdefault(uid, _Progress())
        if (
            self._pending_chars + splitter.pending + len(frame.text)
            > self.options.max_pending_chars
        ):
            raise TTSBacklogFull(
                f"{self.name}: more than {self.options.max_pending_chars} characters are waiting "
                "to be spoken; send shorter replies or raise max_pending_chars"
            )
        phrases = splitter.feed(frame.text)
        if frame.last:
            rest = splitter.flush()
            if rest:
                phrases.append(rest)
            del self._open[uid]
        for i, phrase in enumerate(phrases):
            self._push(_Job(uid, phrase, frame.last and i == len(phrases) - 1))
        if frame.last and not phrases:
            self._push(_Job(uid, "", True))

    def _push(self, job: _Job) -> None:
        self._jobs.append(job)
        self._pending_chars += len(job.text)
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def _interrupt(self, utterance_id: int) -> None:
        if utterance_id:
            targets = {utterance_id}
        else:
            targets = set(self._open) | {j.utterance_id for j in self._jobs}
            if self._current is not None:
                targets.add(self._current[0])
        for uid in targets:
            # Id 0 is "no id": remembering it would mute every later utterance sent without one.
            if uid and uid not in self._cancelled:
                self._cancelled.append(uid)
            self._open.pop(uid, None)
            self._progress.pop(uid, None)
        kept: deque[_Job] = deque()
        for job in self._jobs:
            if job.utterance_id in targets:
                self._pending_chars -= len(job.text)
                self.interrupted_phrases += 1
            else:
                kept.append(job)
        self._jobs = kept
        if self._current is not None and self._current[0] in targets:
            _, stop, scope = self._current
            stop.set()  # espeak-ng's callback sees this and aborts the synthesis
            scope.cancel()  # and a send waiting for room downstream gives up
            self.interrupted_phrases += 1
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("interrupted utterances %s", sorted(targets))

    # -------------------------------------------------------------- speaking

    async def _speak_loop(self) -> None:
        while True:
            while not self._jobs:
                if self._input_done:
                    return
                self._wake = wake = anyio.Event()
                await wake.wait()
            job = self._jobs.popleft()
            self._pending_chars -= len(job.text)
            stop = threading.Event()
            with anyio.CancelScope() as scope:
                self._current = (job.utterance_id, stop, scope)
                try:
                    await self._speak(job, stop.is_set)
                finally:
                    self._current = None

    async def _speak(self, job: _Job, should_stop: Callable[[], bool]) -> None:
        uid = job.utterance_id
        progress = self._progress.get(uid)
        if progress is None:  # interrupted between queueing and now
            return
        if any(c.isalnum() for c in job.text):
            syn = await anyio.to_thread.run_sync(
                self._synth.synthesize_words, job.text, should_stop
            )
            if syn.stopped:
                return
            samples = self._resample(syn.audio)
            base = progress.offset
            if syn.words:
                words = tuple(Word(w.text, base + w.start, base + w.end) for w in syn.words)
                await self.send("audio", WordTimestamps(utterance_id=uid, words=words))
            await self._send_audio(uid, samples, progress)
        if job.last:
            self._progress.pop(uid, None)
            await self.send("audio", AudioDone(utterance_id=uid))

    async def _send_audio(self, uid: int, samples: np.ndarray[Any, Any], p: _Progress) -> None:
        rate, step = self.options.sample_rate, self._frame_samples
        encoding = self.options.encoding
        for i in range(0, len(samples), step):
            chunk = samples[i : i + step]
            data = self._encode(chunk) if self._encode is not None else chunk.tobytes()
            if p.first:
                p.first = False
                self.publish(TimelineMark(turn=uid, stage="tts_first_audio"))
            frame = AudioFrame(
                data=data,
                encoding=encoding,
                sample_rate=rate,
                timestamp=p.offset,
                capture_time=time.monotonic(),
                utterance_id=uid,
            )
            p.offset += len(chunk) / rate
            await self.send("audio", frame)

    def _resample(self, audio: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        rate = self.options.sample_rate
        if rate == self._synth.sample_rate or not len(audio):
            return audio.astype("<i2", copy=False)
        import soxr

        out = soxr.resample(audio, self._synth.sample_rate, rate, quality="HQ")
        return np.asarray(out).astype("<i2", copy=False)


def _mulaw_encoder() -> Callable[[np.ndarray[Any, Any]], bytes]:
    try:
        from voicegraph.nodes.audio.g711 import pcm16_to_ulaw
    except ImportError as exc:
        raise RuntimeError(
            "EspeakTTS with encoding='mulaw' needs voicegraph.nodes.audio.g711; "
            "use encoding='pcm16' and convert downstream"
        ) from exc

    def encode(chunk: np.ndarray[Any, Any]) -> bytes:
        return bytes(pcm16_to_ulaw(chunk.tobytes()))

    return encode
