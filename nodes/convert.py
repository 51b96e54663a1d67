"""Audio format conversion between two ports: µ-law decode, resample, µ-law encode, in one stage.

:func:`make_converter` is what ``Graph.connect(..., convert=True)`` inserts when two ports pin
different audio formats. One stage does every step so a conversion costs one hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

import numpy as np

from voicegraph.frames import AudioFormat, AudioFrame, Encoding, Frame
from voicegraph.node import In, Out, Stage

from .audio.g711 import _DECODE, _ENCODE
from .audio.pcm import check_audio
from .audio.resample import StreamResampler

__all__ = ["AudioConverter", "make_converter"]

_ENCODINGS = get_args(Encoding)


def _check_format(label: str, fmt: AudioFormat) -> None:
    if fmt.encoding not in _ENCODINGS:
        raise ValueError(
            f"{label} format {fmt}: unknown encoding {fmt.encoding!r}; use one of {_ENCODINGS}"
        )
    if not isinstance(fmt.sample_rate, int) or not 1000 <= fmt.sample_rate <= 192_000:
        raise ValueError(f"{label} format {fmt}: sample rate must be an integer in 1000..192000")


class AudioConverter(Stage):
    """Converts audio from ``src`` to ``dst`` (any of pcm16/mulaw at any rate).

    Input ``"in"`` pins ``src``, output ``"out"`` pins ``dst``. Other frame types pass through.
    Latency is the resampler's (0 when the rates are equal, at most 30 ms otherwise);
    :meth:`finish` flushes it. Raises
    :class:`~voicegraph.nodes.audio.pcm.AudioInputError` for audio not in ``src``."""

    def __init__(self, src: AudioFormat, dst: AudioFormat, *, quality: str = "HQ") -> None:
        super().__init__()
        _check_format("source", src)
        _check_format("destination", dst)
        self.src = src
        self.dst = dst
        self.quality = quality
        self.inputs = (In("in", format=src),)
        self.outputs = (Out("out", format=dst),)
        self._rs = (
            StreamResampler(src.sample_rate, dst.sample_rate, quality)
            if src.sample_rate != dst.sample_rate
            else None
        )
        self._t0: float | None = None
        self._emitted = 0
        self._last: AudioFrame | None = None

    def process(self, port: str, frame: Frame) -> Frame | Iterable[Frame] | None:
        if type(frame) is not AudioFrame:
            return frame
        src, data = self.src, frame.data
        if (
            frame.encoding != src.encoding
            or frame.sample_rate != src.sample_rate
            or not data
            or (src.encoding == "pcm16" and len(data) & 1)
        ):
            check_audio(self.name or "AudioConverter", frame, src)  # raises
        if self._t0 is None:
            self._t0 = frame.timestamp
        self._last = frame
        if self.src.encoding == "mulaw":
            samples = _DECODE.take(np.frombuffer(frame.data, dtype=np.uint8))
        else:
            samples = np.frombuffer(frame.data, dtype="<i2")
        if self._rs is not None:
            samples = self._rs.push(samples)
            if not samples.size:
                return None
        return self._frame(samples, frame)

    def finish(self) -> Frame | Iterable[Frame] | None:
        if self._rs is None or self._last is None:
            return None
        tail = self._rs.flush()
        return self._frame(tail, self._last) if tail.size else None

    def _frame(self, samples: np.ndarray[Any, Any], src: AudioFrame) -> AudioFrame:
        if self.dst.encoding == "mulaw":
            data = _ENCODE.take(samples.astype("<i2").view("<u2")).tobytes()
        else:
            data = samples.astype("<i2").tobytes()
        if self._rs is None:
            timestamp = src.timestamp
        else:
            timestamp = (self._t0 or 0.0) + self._emitted / self.dst.sample_rate
            self._emitted += samples.size
        return AudioFrame(
            data=data,
            encoding=self.dst.encoding,
            sample_rate=self.dst.sample_rate,
            timestamp=timestamp,
            capture_time=src.capture_time,
            utterance_id=src.utterance_id,
        )


def make_converter(src: AudioFormat, dst: AudioFormat) -> Stage:
    """A stage converting audio frames from ``src`` to ``dst`` (see :class:`AudioConverter`).

    Raises ``ValueError`` for an unknown encoding or an out-of-range sample rate."""
    return AudioConverter(src, dst)
