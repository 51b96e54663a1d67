"""Speech analysers for :class:`~voicegraph.nodes.audio.vad.VAD`: audio in, speech probabilities out.

An analyser turns int16 samples into a list of ``(probability, seconds)`` decisions, one per
window it completed (a window may span frames: Silero needs 32 ms, frames are 20 ms). The VAD
applies thresholds and hysteresis; analysers only measure. Each VAD owns its analyser (they keep
per-stream state), and calls :meth:`Analyser.configure` before the first samples.

* :class:`EnergyAnalyser` -- numpy only: level over an adaptive noise floor, gated by
  zero-crossing rate so hiss is not speech. Cheap; good on quiet lines, fooled by loud
  non-stationary noise (music, babble).
* :class:`WebRTCAnalyser` -- Google's WebRTC VAD (GMM), extra ``vad``. Binary decisions per
  20 ms; the sensitivity picks its aggressiveness mode.
* :class:`~voicegraph.nodes.audio.silero.SileroAnalyser` -- Silero's neural VAD on onnxruntime,
  extra ``silero``. Most robust to noise; costs the most.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

import numpy as np

__all__ = ["Analyser", "EnergyAnalyser", "WebRTCAnalyser", "require_rate"]

SUPPORTED_RATES = (8000, 16000)


class Analyser(Protocol):
    """What a VAD needs from an analyser."""

    name: str

    def configure(self, sample_rate: int, sensitivity: str) -> None:
        """Prepare for a stream at ``sample_rate`` (8000 or 16000) and start from scratch."""

    def analyse(self, samples: np.ndarray[Any, Any]) -> list[tuple[float, float]]:
        """Consume int16 samples; return ``(speech probability 0..1, seconds)`` per completed
        window (possibly none)."""
        ...


def require_rate(name: str, sample_rate: int) -> None:
    """Raise ``ValueError`` unless ``sample_rate`` is one a VAD analyser takes."""
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(
            f"{name} analyses 8000 or 16000 Hz audio, got {sample_rate} Hz; "
            "resample before the VAD (connect with convert=True)"
        )


class EnergyAnalyser:
    """Level above an adaptive noise floor, gated by zero-crossing rate (numpy only).

    Per frame: ``snr`` = level (dBFS) minus the noise floor; probability rises linearly from 0 at
    ``snr_low_db`` to 1 at ``snr_high_db``, times a voicing factor that falls from 1 to 0 as the
    zero-crossing rate goes from ``zcr_voiced`` to ``zcr_noise`` (voiced speech crosses zero
    rarely, hiss about every other sample). Frames quieter than ``min_level_db`` are silence.
    The noise floor is the quietest frame of the last ``floor_window`` seconds (minimum
    statistics): speech has pauses that short, so its floor stays low, while a steady hum or
    fan becomes the floor ``floor_window`` after it starts. Decisions cover whole frames.
    """

    name = "energy"

    def __init__(
        self,
        *,
        snr_low_db: float = 6.0,
        snr_high_db: float = 18.0,
        min_level_db: float = -50.0,
        zcr_voiced: float = 0.25,
        zcr_noise: float = 0.45,
        floor_window: float = 2.0,
    ) -> None:
        if not snr_high_db > snr_low_db:
            raise ValueError("snr_high_db must be greater than snr_low_db")
        if not 0.0 <= zcr_voiced < zcr_noise <= 1.0:
            raise ValueError("need 0 <= zcr_voiced < zcr_noise <= 1")
        self.snr_low_db = snr_low_db
        self.snr_span = snr_high_db - snr_low_db
        self.min_level_db = min_level_db
        self.zcr_voiced = zcr_voiced
        self.zcr_span = zcr_noise - zcr_voiced
        if not floor_window > 0:
            raise ValueError("floor_window must be positive seconds")
        self.floor_window = floor_window
        self.sample_rate = 8000
        # Sliding-window minimum of frame levels: (level dBFS, time it leaves the window), levels
        # increasing from the left, so the floor is always the first entry (O(1) per frame).
        self._window: deque[tuple[float, float]] = deque()
        self._clock = 0.0

    def configure(self, sample_rate: int, sensitivity: str) -> None:
        require_rate("EnergyAnalyser", sample_rate)
        self.sample_rate = sample_rate
        self._window.clear()
        self._clock = 0.0

    def analyse(self, samples: np.ndarray[Any, Any]) -> list[tuple[float, float]]:
        n = samples.size
        if n == 0:
            return []
        seconds = n / self.sample_rate
        x = samples.astype(np.float32)
        level = 10.0 * math.log10(float(x @ x) / (n * 1073741824.0) + 1e-12)  # dBFS
        self._clock = now = self._clock + seconds
        window = self._window
        while window and window[-1][0] >= level:
            window.pop()
        window.append((level, now + self.floor_window))
        while window[0][1] <= now:
            window.popleft()
        floor = max(window[0][0], -90.0)
        if level < self.min_level_db:
            return [(0.0, seconds)]
        loud = min(1.0, max(0.0, (level - floor - self.snr_low_db) / self.snr_span))
        if loud == 0.0:
            return [(0.0, seconds)]
        # Sign changes between neighbours: the XOR of two int16 is negative iff signs differ.
        zcr = np.count_nonzero((samples[1:] ^ samples[:-1]) < 0) / max(1, n - 1)
        voiced = min(1.0, max(0.0, 1.0 - (zcr - self.zcr_voiced) / self.zcr_span))
        return [(loud * voiced, seconds)]


_WEBRTC_MODE = {"low": 3, "medium": 3, "high": 2}


class WebRTCAnalyser:
    """Google's WebRTC VAD (``webrtcvad-wheels``, extra ``vad``) on 20 ms windows.

    ``mode`` 0-3 is its aggressiveness in filtering out non-speech; ``None`` (default) derives
    it from the VAD's sensitivity (low/medium → 3, high → 2; modes 0-1 call hiss speech).
    Probabilities are 0 or 1. Samples are re-chunked into 20 ms windows, so frames of any
    length work; a partial window waits for the next frame.
    """

    name = "webrtc"
    binary = True
    """Decisions are 0 or 1: the VAD averages them (see :data:`~.vad.BINARY_WINDOWS`)."""

    def __init__(self, mode: int | None = None) -> None:
        if mode is not None and mode not in (0, 1, 2, 3):
            raise ValueError(f"WebRTC VAD mode must be 0, 1, 2 or 3, got {mode!r}")
        try:
            import webrtcvad
        except ImportError as exc:
            raise ImportError(
                "WebRTCAnalyser needs webrtcvad-wheels: pip install 'voicegraph[vad]'"
            ) from exc
        self._module = webrtcvad
        self.mode = mode
        self._vad: Any = None
        self.sample_rate = 8000
        self._window = 160
        self._pending = np.zeros(0, dtype=np.int16)

    def configure(self, sample_rate: int, sensitivity: str) -> None:
        require_rate("WebRTCAnalyser", sample_rate)
        self.sample_rate = sample_rate
        self._window = sample_rate // 50
        mode = self.mode if self.mode is not None else _WEBRTC_MODE[sensitivity]
        self._vad = self._module.Vad(mode)
        self._pending = np.zeros(0, dtype=np.int16)

    def analyse_pcm(self, data: bytes) -> list[tuple[float, float]]:
        """:meth:`analyse` of PCM16 LE bytes: one whole window goes to WebRTC as it is."""
        if len(data) == 2 * self._window and not self._pending.size and self._vad is not None:
            return [(1.0 if self._vad.is_speech(data, self.sample_rate) else 0.0, 0.02)]
        return self.analyse(np.frombuffer(data, dtype="<i2"))

    def analyse(self, samples: np.ndarray[Any, Any]) -> list[tuple[float, float]]:
        if self._vad is None:
            raise RuntimeError("WebRTCAnalyser.configure() must be called before analyse()")
        w = self._window
        if samples.size == w and not self._pending.size:
            # the usual case, one whole window and nothing held back: no re-chunking copies
            speech = self._vad.is_speech(
                samples.astype("<i2", copy=False).tobytes(), self.sample_rate
            )
            return [(1.0 if speech else 0.0, 0.02)]
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size - samples.size % w
        self._pending = samples[whole:].copy()
        if whole == 0:
            return []
        data = samples[:whole].astype("<i2").tobytes()
        step, rate, vad = 2 * w, self.sample_rate, self._vad
        return [
            (1.0 if vad.is_speech(data[i : i + step], rate) else 0.0, 0.02)
            for i in range(0, len(data), step)
        ]
