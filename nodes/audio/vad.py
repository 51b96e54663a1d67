"""Voice activity detection: speech started / stopped control frames from caller audio.

:class:`VAD` is an inline stage. It passes every frame through unchanged and, when its analyser's
probabilities cross the thresholds of the chosen sensitivity for long enough, emits
:class:`~voicegraph.frames.SpeechStarted` or :class:`~voicegraph.frames.SpeechStopped` right
after the audio frame that decided it, with that frame's media ``timestamp`` and
``capture_time``.

Hysteresis: speech starts after ``min_speech`` seconds of windows at or above
``start_threshold`` (a window below ``stop_threshold`` resets the count; one between the two
holds it), and stops after ``min_silence`` seconds of windows below ``stop_threshold`` (any window
at or above it resets the count). :data:`SENSITIVITY` is the one table of these numbers; the
barge-in controller reads it too.

Early pause (``pause``, off by default): while speech lasts, once the caller has been quiet for
``pause`` seconds (much less than ``min_silence``) a :class:`~voicegraph.frames.SpeechPaused`
follows the frame, and if voice comes back before ``SpeechStopped``, a
:class:`~voicegraph.frames.SpeechResumed`. Quiet means a window below ``stop_threshold`` or a
frame level :data:`PAUSE_DROP_DB` below the speech's running level: the level test sees a
pause at once, where some analysers (WebRTC's) keep saying "speech" for ~100 ms after it. Turn-taking uses the pair to
prepare a reply early and to drop it the moment the caller goes on; the speaking state and the
started/stopped events are unchanged by it.

Binary analysers (``binary = True``: WebRTC, whose every window is 0 or 1) would make the
thresholds meaningless, so for them the probability compared with the thresholds is the share
of speech among the last :data:`BINARY_WINDOWS` windows: "0.8" then means four voiced windows
in five, and each sensitivity's thresholds keep their documented effect.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Literal

import msgspec
import numpy as np

from voicegraph.frames import (
    AudioFormat,
    AudioFrame,
    Frame,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
)
from voicegraph.node import In, Out, Stage

from .analysers import Analyser, EnergyAnalyser, require_rate
from .g711 import _AUDIOOP
from .pcm import AudioInputError, check_audio

__all__ = [
    "BINARY_WINDOWS",
    "PAUSE_DROP_DB",
    "SENSITIVITY",
    "Sensitivity",
    "VAD",
    "VADOptions",
    "VADProfile",
]

PAUSE_DROP_DB = 30.0
"""A frame this many dB below the speech's running level counts as quiet for the early pause."""

BINARY_WINDOWS = 5
"""Windows (of 20 ms) over which a binary analyser's decisions are averaged (100 ms)."""

Sensitivity = Literal["low", "medium", "high"]


def _level_db(data: bytes) -> float:
    """The level of PCM16 LE ``data`` in dBFS (the C codec's RMS where there is one)."""
    if _AUDIOOP is not None:
        rms = float(_AUDIOOP.rms(data, 2))
        return 10.0 * math.log10(rms * rms / 32768.0**2 + 1e-10)
    x = np.frombuffer(data, dtype="<i2").astype(np.float32)
    return 10.0 * math.log10(float(np.dot(x, x)) / len(x) / 32768.0**2 + 1e-10)


class VADProfile(msgspec.Struct, frozen=True):
    """Thresholds of one sensitivity: probabilities 0..1 and durations in seconds."""

    start_threshold: float
    stop_threshold: float
    min_speech: float
    min_silence: float

    def __post_init__(self) -> None:
        if not 0.0 < self.stop_threshold <= self.start_threshold <= 1.0:
            raise ValueError("need 0 < stop_threshold <= start_threshold <= 1")
        if self.min_speech < 0 or self.min_silence < 0:
            raise ValueError("min_speech and min_silence must be >= 0 seconds")


SENSITIVITY: dict[str, VADProfile] = {
    # Higher sensitivity: less evidence and less time before speech counts as started (quicker
    # barge-in, more false starts on coughs and noise). Documented in docs/audio.md.
    "low": VADProfile(start_threshold=0.8, stop_threshold=0.5, min_speech=0.30, min_silence=0.6),
    "medium": VADProfile(start_threshold=0.6, stop_threshold=0.4, min_speech=0.20, min_silence=0.5),
    "high": VADProfile(start_threshold=0.5, stop_threshold=0.3, min_speech=0.10, min_silence=0.4),
}
"""Sensitivity → thresholds, minimum speech to start and minimum silence to stop."""


class VADOptions(msgspec.Struct, frozen=True):
    """Options of :class:`VAD`.

    ``sensitivity`` picks a row of :data:`SENSITIVITY`; ``profile`` replaces it wholesale.
    ``sample_rate`` (8000 or 16000) pins the input port's format so a wrong edge fails when the
    graph is built; ``None`` accepts either, checked per frame. ``pause`` (seconds, below the
    profile's ``min_silence``) turns on the early ``SpeechPaused`` / ``SpeechResumed`` pair."""

    sensitivity: Sensitivity = "medium"
    profile: VADProfile | None = None
    sample_rate: int | None = None
    pause: float | None = None


class VAD(Stage):
    """Voice activity detector (see module docs).

    Input ``"in"``: :class:`~voicegraph.frames.AudioFrame` PCM16 at 8 or 16 kHz; other frames
    pass through. Output ``"out"``: the same frames, plus ``SpeechStarted`` / ``SpeechStopped``.
    ``analyser`` defaults to :class:`EnergyAnalyser`; pass one analyser per VAD (they keep
    stream state). At end of input an open speech segment is closed with ``SpeechStopped``.
    Latency: the decision comes ``min_speech`` / ``min_silence`` after the change, plus the
    analyser's window (20 ms; Silero 32 ms). Raises
    :class:`~voicegraph.nodes.audio.pcm.AudioInputError` for other formats, empty or odd frames,
    or a sample rate that changes mid-stream."""

    def __init__(
        self,
        analyser: Analyser | None = None,
        sensitivity: Sensitivity = "medium",
        *,
        profile: VADProfile | None = None,
        sample_rate: int | None = None,
        pause: float | None = None,
        options: VADOptions | None = None,
    ) -> None:
        super().__init__()
        opts = options or VADOptions(sensitivity, profile, sample_rate, pause)
        if opts.sensitivity not in SENSITIVITY:
            raise ValueError(
                f"sensitivity must be one of {', '.join(SENSITIVITY)}, got {opts.sensitivity!r}"
            )
        if opts.sample_rate is not None:
            require_rate("VAD", opts.sample_rate)
        self.options = opts
        self.profile = opts.profile or SENSITIVITY[opts.sensitivity]
        if opts.pause is not None and not 0 < opts.pause < self.profile.min_silence:
            raise ValueError(
                f"VAD pause={opts.pause} must be above 0 and below the profile's min_silence "
                f"({self.profile.min_silence} s); use a shorter pause or pause=None"
            )
        self.pause = opts.pause
        self._paused = False
        self._quiet = 0.0  # seconds quiet while speaking (early pause)
        self._level = -90.0  # running speech level, dBFS
        self.analyser: Analyser = analyser if analyser is not None else EnergyAnalyser()
        fmt = AudioFormat("pcm16", opts.sample_rate) if opts.sample_rate else None
        self.inputs = (In("in", format=fmt),)
        self.outputs = (Out("out", format=fmt),)
        self._rate: int | None = None
        self.speaking = False
        """True between an emitted SpeechStarted and the next SpeechStopped."""
        self.probability = 0.0
        """The analyser's latest speech probability."""
        self._run = 0.0  # seconds of evidence towards the next state change
        self._last: AudioFrame | None = None
        # a binary analyser's recent decisions (see module docs); None for graded analysers
        self._recent: deque[float] | None = (
            deque([0.0] * BINARY_WINDOWS, maxlen=BINARY_WINDOWS)
            if getattr(self.analyser, "binary", False)
            else None
        )
        self._recent_sum = 0.0
        # an analyser that reads PCM16 bytes as they come (WebRTC's) skips the numpy view
        self._analyse_pcm = getattr(self.analyser, "analyse_pcm", None)

    def process(self, port: str, frame: Frame) -> Frame | Iterable[Frame] | None:
        if type(frame) is not AudioFrame:
            return frame
        data = frame.data
        if (
            frame.sample_rate != self._rate
            or frame.encoding != "pcm16"
            or not data
            or len(data) & 1
        ):
            self._admit(frame)  # raises for bad audio; configures the analyser on the first frame
        self._last = frame
        event: Frame | None = None
        hint: Frame | None = None
        recent = self._recent
        analyse_pcm = self._analyse_pcm
        windows = (
            analyse_pcm(data)
            if analyse_pcm is not None
            else self.analyser.analyse(np.frombuffer(data, dtype="<i2"))
        )
        for p, seconds in windows:
            if recent is not None:
                self._recent_sum += p - recent[0]  # the window that drops out of the average
                recent.append(p)
                p = self._recent_sum / BINARY_WINDOWS
            self.probability = p
            if self._step(p, seconds):
                cls = SpeechStarted if self.speaking else SpeechStopped
                # Several flips within one frame (only when min durations are below a window)
                # cancel out in pairs; the frame's net effect is what is reported.
                event = (
                    None
                    if event is not None
                    else cls(timestamp=frame.timestamp, capture_time=frame.capture_time)
                )
                self._paused, self._quiet, self._level = False, 0.0, -90.0
        if self.pause is not None and self.speaking and event is None:
            hint = self._pause_hint(frame)
            if hint is not None:
                return (frame, hint)
        return frame if event is None else (frame, event)

    def _pause_hint(self, frame: AudioFrame) -> Frame | None:
        """SpeechPaused once quiet for ``pause``; SpeechResumed when voice comes back."""
        level = _level_db(frame.data)
        prof = self.profile
        if self.probability < prof.stop_threshold or level < self._level - PAUSE_DROP_DB:
            self._quiet += frame.duration
            if not self._paused and self._quiet >= self.pause - 1e-9:  # type: ignore[operator]
                self._paused = True
                return SpeechPaused(
                    timestamp=frame.timestamp, capture_time=frame.capture_time, silence=self._quiet
                )
            return None
        self._quiet = 0.0
        # follow the speech's level: quickly up, slowly down (quieter syllables are not pauses)
        self._level = level if level > self._level else self._level + 0.05 * (level - self._level)
        if self._paused:
            self._paused = False
            return SpeechResumed(timestamp=frame.timestamp, capture_time=frame.capture_time)
        return None

    def _admit(self, frame: AudioFrame) -> None:
        name = self.name or "VAD"
        check_audio(name, frame)
        if frame.encoding != "pcm16":
            raise AudioInputError(
                f"{name}: analyses pcm16 audio, got {frame.encoding}/{frame.sample_rate}; "
                "decode it first (connect with convert=True)"
            )
        if self._rate != frame.sample_rate:
            if self._rate is not None:
                raise AudioInputError(
                    f"{name}: sample rate changed mid-stream from {self._rate} to "
                    f"{frame.sample_rate} Hz; resample to one rate before the VAD"
                )
            try:
                require_rate(name, frame.sample_rate)
            except ValueError as exc:
                raise AudioInputError(str(exc)) from None
            self.analyser.configure(frame.sample_rate, self.options.sensitivity)
            self._rate = frame.sample_rate

    def _step(self, p: float, seconds: float) -> bool:
        prof = self.profile
        if not self.speaking:
            if p >= prof.start_threshold:
                self._run += seconds
                if self._run >= prof.min_speech - 1e-9:
                    self.speaking, self._run = True, 0.0
                    return True
            elif p < prof.stop_threshold:
                self._run = 0.0
            return False
        if p < prof.stop_threshold:
            self._run += seconds
            if self._run >= prof.min_silence - 1e-9:
                self.speaking, self._run = False, 0.0
                return True
        else:
            self._run = 0.0
        return False

    def finish(self) -> Frame | Iterable[Frame] | None:
        if not self.speaking or self._last is None:
            return None
        self.speaking, self._paused = False, False
        last = self._last
        return SpeechStopped(
            timestamp=last.timestamp + last.duration, capture_time=last.capture_time
        )
