"""PCM16 little-endian helpers and the checks every audio node runs at its boundary.

All PCM in voicegraph is signed 16-bit little-endian mono (Plivo's ``audio/x-l16``, Deepgram
``linear16``, Cartesia ``pcm_s16le``, OpenAI ``pcm16``). Big-endian L16 (RFC 2586) is converted
at the transport with :func:`swap_bytes`.

Bad audio is a user-visible error, not a crash deep in numpy: :func:`check_audio` raises
:class:`AudioInputError` naming the node, the frame's format and what to change, so the call that
sent it ends with a clear message and no other call is touched.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from voicegraph.frames import AudioFormat, AudioFrame, bytes_per_sample

__all__ = [
    "AudioInputError",
    "check_audio",
    "float_to_pcm16",
    "pcm16_to_samples",
    "samples_to_pcm16",
    "swap_bytes",
]

_LE_INT16 = np.dtype("<i2")
_LITTLE = sys.byteorder == "little"


class AudioInputError(ValueError):
    """An audio frame a node cannot take: wrong format, empty, odd-length PCM, non-finite."""


def check_audio(node: str, frame: AudioFrame, expected: AudioFormat | None = None) -> None:
    """Raise :class:`AudioInputError` unless ``frame`` holds whole samples of a known encoding
    (and, if given, is in format ``expected``). ``node`` names the node in the message."""
    data = frame.data
    if not data:
        raise AudioInputError(
            f"{node}: received an empty AudioFrame ({frame.encoding}/{frame.sample_rate}); "
            "senders must not emit frames without samples"
        )
    if expected is not None and (
        frame.encoding != expected.encoding or frame.sample_rate != expected.sample_rate
    ):
        raise AudioInputError(
            f"{node}: received {frame.encoding}/{frame.sample_rate} audio but expects {expected}; "
            "connect it with convert=True or insert a converter"
        )
    try:
        width = bytes_per_sample(frame.encoding)
    except ValueError as exc:
        raise AudioInputError(f"{node}: {exc}") from None
    if len(data) % width:
        raise AudioInputError(
            f"{node}: {frame.encoding} frame of {len(data)} bytes is not a whole number of "
            f"{width}-byte samples; PCM16 frames must have an even length"
        )
    if frame.sample_rate <= 0:
        raise AudioInputError(f"{node}: sample rate must be positive, got {frame.sample_rate}")


def pcm16_to_samples(data: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    """View PCM16 LE bytes as native int16 samples (no copy on little-endian hosts)."""
    if len(data) % 2:
        raise AudioInputError(f"PCM16 data of {len(data)} bytes has an odd length")
    arr = np.frombuffer(data, dtype=_LE_INT16)
    return arr if _LITTLE else arr.astype(np.int16)


def samples_to_pcm16(samples: np.ndarray[Any, Any]) -> bytes:
    """int16 samples to PCM16 LE bytes."""
    return np.asarray(samples, dtype=_LE_INT16).tobytes()


def float_to_pcm16(samples: np.ndarray[Any, Any]) -> bytes:
    """Float samples in [-1, 1] (e.g. Cartesia ``pcm_f32le``) to PCM16 LE, clipping overs.

    Raises :class:`AudioInputError` for NaN or infinite samples: they are a broken source, and
    clipping them would turn a fault into a loud click."""
    x = np.asarray(samples, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise AudioInputError(
            f"{bad} of {x.size} float samples are NaN or infinite; fix the audio source"
        )
    out: bytes = np.clip(np.rint(x * 32768.0), -32768, 32767).astype(_LE_INT16).tobytes()
    return out


def swap_bytes(data: bytes) -> bytes:
    """Big-endian PCM16 (RFC 2586 ``audio/L16``) to little-endian, or back."""
    if len(data) % 2:
        raise AudioInputError(f"PCM16 data of {len(data)} bytes has an odd length")
    return np.frombuffer(data, dtype=np.uint16).byteswap().tobytes()
