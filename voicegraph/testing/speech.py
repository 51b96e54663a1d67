"""Caller audio for tests: real synthesised speech, or a speech-like signal.

* :func:`caller_speech` -- ``text`` spoken by espeak-ng, offline (needs the ``offline`` extra).
  Use it where something must *recognise* the words (pocketsphinx, a real STT).
* :func:`speech_like` -- a gliding harmonic buzz with syllable-rate loudness, no dependencies.
  The WebRTC VAD and the fakes' energy detectors take it for speech; the fakes' scripted
  transcripts supply the words. Use it to drive a call through the fakes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["caller_speech", "speech_like"]


@lru_cache(maxsize=64)
def caller_speech(text: str, rate: int = 16000) -> np.ndarray[Any, Any]:
    """``text`` spoken by espeak-ng, as int16 samples at ``rate`` (results are cached).

    Raises ``EspeakNotInstalled`` (saying what to install) without the ``offline`` extra."""
    import soxr

    from voicegraph.nodes.offline.espeak import EspeakSynth

    synth = EspeakSynth()
    audio = synth.synthesize(text).astype(np.float32) / 32768
    out: np.ndarray[Any, Any] = (soxr.resample(audio, synth.sample_rate, rate) * 32767).astype(
        np.int16
    )
    out.setflags(write=False)  # cached: callers share it
    return out


def speech_like(seconds: float, rate: int = 8000, f0: float = 120.0) -> np.ndarray[Any, Any]:
    """``seconds`` of a speech-like signal as int16 samples at ``rate`` (see module docs)."""
    if not 0 < seconds <= 600:
        raise ValueError(f"seconds must be in (0, 600], got {seconds}")
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    samples: np.ndarray[Any, Any] = (x / np.max(np.abs(x)) * 8000).astype(np.int16)
    return samples
