"""PocketsphinxSTT: streaming speech recognition with pocketsphinx in process (extra ``offline``).

Same contract as the network STT nodes, so presets can swap them: input ``audio`` takes PCM16
:class:`AudioFrame` s plus :class:`SpeechStarted` / :class:`SpeechStopped`; output ``out`` emits
interim (``is_final=False``) and final (``is_final=True, speech_final=True``) :class:`Transcript`
s with word timings.

The English model shipped in the ``pocketsphinx`` wheel is 16 kHz. Free-form recognition with
its general language model is weak, especially on synthetic speech: give a JSGF ``grammar`` or a
``keyphrases`` list for reliable results. Decoding is CPU-bound, so every decoder call runs in a
worker thread; the node batches ``chunk_ms`` of audio per call, and audio waiting while a batch
decodes stays in the node's bounded inbox.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio
import msgspec

from voicegraph.channel import EndOfInput
from voicegraph.frames import (
    AudioFormat,
    AudioFrame,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from voicegraph.node import Actor, In, Out

from ..audio.pcm import check_audio
from ._sphinx import Recognizer, SphinxConfigError

__all__ = ["PocketsphinxSTT", "PocketsphinxSTTOptions", "SphinxConfigError"]

_MAX_EVENTS = 64  # VAD events waiting for their audio; more means the audio stopped coming


class PocketsphinxSTTOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options of :class:`PocketsphinxSTT`.

    ``sample_rate``: rate of the PCM16 audio on the ``audio`` port (8000 or 16000; 8 kHz is
    resampled to the model's 16 kHz, but the wheel's model is wideband and does poorly on
    telephone-band audio: give an 8 kHz ``model_dir`` for telephony). At most one of:
    ``grammar``, JSGF grammar text; ``phrases``, a list of phrases of which the caller says one
    or more in a row (built into a grammar: the reliable choice for demos); ``keyphrases``,
    phrases to spot anywhere in free speech, each with ``keyphrase_threshold`` (smaller misses
    less but false-alarms more; synthetic speech needs 1e-30 or lower). With none of them,
    free-form recognition with the wheel's general language model (weak). ``endpointing``:
    ``"internal"`` finds utterances with pocketsphinx's own voice-activity endpointer;
    ``"external"`` waits for ``SpeechStarted`` / ``SpeechStopped`` from an upstream VAD (keeping
    ``preroll_ms`` of audio from before the start). ``interim_interval``: least audio time
    between interim results. ``stop_wait``: how long to wait for the audio a
    ``SpeechStarted`` / ``SpeechStopped`` marks (they overtake queued audio) before applying them
    without it.
    ``max_utterance_seconds``: a longer utterance is finalised anyway.
    ``model_dir`` / ``dictionary``: another acoustic model and pronunciation dictionary.
    """

    sample_rate: int = 16000
    grammar: str | None = None
    phrases: tuple[str, ...] = ()
    keyphrases: tuple[str, ...] = ()
    keyphrase_threshold: float = 1e-30
    endpointing: Literal["internal", "external"] = "internal"
    preroll_ms: int = 300
    interim_interval: float = 0.25
    max_utterance_seconds: float = 30.0
    chunk_ms: int = 100
    stop_wait: float = 0.5
    model_dir: str | None = None
    dictionary: str | None = None

    def __post_init__(self) -> None:
        if self.sample_rate not in (8000, 16000):
            raise SphinxConfigError(
                f"PocketsphinxSTT sample_rate must be 8000 or 16000, got {self.sample_rate}; "
                "resample upstream (Graph.connect(..., convert=True))"
            )
        if sum((self.grammar is not None, bool(self.phrases), bool(self.keyphrases))) > 1:
            raise SphinxConfigError(
                "PocketsphinxSTT takes one of grammar, phrases or keyphrases; drop the others"
            )
        if self.endpointing not in ("internal", "external"):
            raise SphinxConfigError(
                f"PocketsphinxSTT endpointing must be 'internal' or 'external', "
                f"not {self.endpointing!r}"
            )
        if not 10 <= self.chunk_ms <= 1000:
            raise SphinxConfigError(
                f"PocketsphinxSTT chunk_ms must be 10..1000, got {self.chunk_ms}"
            )
        if not 0 <= self.preroll_ms <= 2000:
            raise SphinxConfigError(
                f"PocketsphinxSTT preroll_ms must be 0..2000, got {self.preroll_ms}"
            )
        if not 1.0 <= self.max_utterance_seconds <= 600.0:
            raise SphinxConfigError("PocketsphinxSTT max_utterance_seconds must be 1..600")
        if not 0 <= self.stop_wait <= 10:
            raise SphinxConfigError("PocketsphinxSTT stop_wait must be 0..10 seconds")
        if self.interim_interval < 0:
            raise SphinxConfigError("PocketsphinxSTT interim_interval must be >= 0")
        if not 0 < self.keyphrase_threshold < 1:
            raise SphinxConfigError("PocketsphinxSTT keyphrase_threshold must be in (0, 1)")


class PocketsphinxSTT(Actor):
    """Offline streaming recognition. See the module docs and :class:`PocketsphinxSTTOptions`.

    Input ``audio`` (format ``pcm16`` at ``options.sample_rate``): :class:`AudioFrame`,
    :class:`SpeechStarted`, :class:`SpeechStopped` (the latter two matter only with
    ``endpointing="external"``). Output ``out``: :class:`Transcript`. Word and segment times are
    seconds of audio received on the port. An utterance in which nothing was recognised yields
    no final. The decoder loads in :meth:`start` (about a quarter of a second with a grammar or
    keyphrases, more with the full language model); configuration errors (bad grammar, word
    not in the dictionary) raise :class:`SphinxConfigError` there.
    """

    def __init__(self, options: PocketsphinxSTTOptions | None = None) -> None:
        super().__init__()
        self.options = o = options or PocketsphinxSTTOptions()
        self.format = AudioFormat("pcm16", o.sample_rate)
        self.inputs = (In("audio", AudioFrame, SpeechStarted, SpeechStopped, format=self.format),)
        self.outputs = (Out("out", Transcript),)
        self._recognizer: Recognizer | None = None
        self._batch = bytearray()
        self._batch_bytes = o.sample_rate * o.chunk_ms // 1000 * 2
        self._capture_time = 0.0
        self._media_end = 0.0
        self._events: deque[SpeechStarted | SpeechStopped] = deque()
        self._deadline = 0.0
        self._endpointer_external = o.endpointing == "external"

    def clone(self) -> PocketsphinxSTT:
        """A fresh node with the same options, for another call."""
        return type(self)(self.options)

    async def start(self) -> None:
        self._recognizer = await anyio.to_thread.run_sync(Recognizer, self.options)

    async def run(self) -> None:
        rec = self._recognizer
        assert rec is not None, "start() loads the decoder"
        events = self._events
        while True:
            try:
                if not events:
                    _, frame = await self.inbox.receive()
                else:
                    got = await self.inbox.receive_until(self._deadline)
                    if got is None:  # the audio these events mark never came: apply them now
                        await self._apply_due(rec, float("inf"))
                        continue
                    frame = got[1]
            except EndOfInput:
                break
            if isinstance(frame, AudioFrame):
                check_audio(self.name, frame, self.format)
                if events:
                    await self._apply_due(rec, frame.timestamp)
                    self._deadline = anyio.current_time() + self.options.stop_wait
                self._batch += frame.data
                self._capture_time = frame.capture_time
                self._media_end = frame.timestamp + frame.duration
                if len(self._batch) >= self._batch_bytes:
                    await self._decode(rec.audio)
            elif isinstance(frame, (SpeechPaused, SpeechResumed)):
                # A grammar decodes whole utterances: cutting one at every short pause would
                # split "make it | three people" into pieces that match nothing.
                continue
            elif isinstance(frame, (SpeechStarted, SpeechStopped)):
                if self._endpointer_external:
                    # Control frames overtake queued audio, so a VAD event is applied when the
                    # audio reaches its media time, not when it arrives.
                    if len(events) >= _MAX_EVENTS:
                        await self._apply_due(rec, events[0].timestamp)
                    if not events:
                        self._deadline = anyio.current_time() + self.options.stop_wait
                    events.append(frame)
                    await self._apply_due(rec, self._media_end)
        await self._apply_due(rec, float("inf"))
        await self._decode(rec.audio)
        await self._emit(await anyio.to_thread.run_sync(rec.finish))

    async def _apply_due(self, rec: Recognizer, media_time: float) -> None:
        """Apply the queued VAD events stamped at or before ``media_time``."""
        events = self._events
        while events and events[0].timestamp <= media_time + 1e-6:
            event = events.popleft()
            await self._decode(rec.audio)
            step = rec.speech_started if isinstance(event, SpeechStarted) else rec.speech_stopped
            await self._emit(await anyio.to_thread.run_sync(step))

    async def _decode(self, step: Callable[[bytes], list[Transcript]]) -> None:
        if not self._batch:
            return
        data, self._batch = bytes(self._batch), bytearray()
        results = await anyio.to_thread.run_sync(step, data)
        await self._emit(results)

    async def _emit(self, results: list[Transcript]) -> None:
        for t in results:
            if self._capture_time:
                t = msgspec.structs.replace(t, capture_time=self._capture_time)
            await self.send("out", t)
