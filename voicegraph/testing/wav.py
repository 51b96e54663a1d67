"""WAV files and caller audio: read, write, and turn any audio source into carrier wire bytes.

WAV support is what the stdlib ``wave`` module reads: 16-bit PCM, mono or stereo (stereo is
mixed down). µ-law conversion uses the project's G.711 codec; rate conversion uses soxr.
"""

from __future__ import annotations

import os
import wave

import numpy as np

from voicegraph.frames import AudioFormat

__all__ = ["AudioSource", "read_wav", "to_wire", "wire_to_pcm16", "write_wav"]

AudioSource = bytes | np.ndarray | str | os.PathLike[str]
"""What the simulated callers accept as audio (documented in :func:`to_wire`)."""


def read_wav(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """Read a 16-bit PCM WAV file: ``(mono PCM16 LE bytes, sample rate)``.

    Raises ``ValueError`` naming the file for any other sample width."""
    with wave.open(os.fspath(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        data = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{os.fspath(path)}: {8 * width}-bit WAV; convert it to 16-bit PCM")
    if channels > 1:
        samples = np.frombuffer(data, "<i2").reshape(-1, channels).astype(np.int32)
        data = samples.mean(axis=1).astype("<i2").tobytes()
    return data, rate


def write_wav(path: str | os.PathLike[str], pcm16: bytes, sample_rate: int) -> None:
    """Write mono PCM16 LE bytes as a WAV file."""
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)


def wire_to_pcm16(data: bytes, fmt: AudioFormat) -> bytes:
    """Audio in ``fmt`` (µ-law or PCM16) as PCM16 LE bytes at the same rate."""
    if fmt.encoding == "mulaw":
        from voicegraph.nodes.audio.g711 import ulaw_to_pcm16

        return ulaw_to_pcm16(data)
    return data


def to_wire(audio: AudioSource, fmt: AudioFormat, sample_rate: int | None = None) -> bytes:
    """Turn ``audio`` into bytes in the stream's wire format ``fmt``.

    ``audio`` is one of: ``bytes`` already in ``fmt`` (sent as is); a numpy array of int16
    samples (or floats in [-1, 1]) at ``sample_rate`` (default: ``fmt``'s rate); or the path
    of a 16-bit PCM WAV file. Arrays and files are resampled and µ-law encoded as needed."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = bytes(audio)
        if fmt.encoding == "pcm16" and len(data) % 2:
            raise ValueError(
                f"{len(data)} bytes is not whole PCM16 samples; pass even-length audio"
            )
        return data
    if isinstance(audio, (str, os.PathLike)):
        pcm, rate = read_wav(audio)
        samples = np.frombuffer(pcm, "<i2")
    elif isinstance(audio, np.ndarray):
        rate = sample_rate or fmt.sample_rate
        samples = audio
        if samples.dtype.kind == "f":
            samples = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
        elif samples.dtype != np.dtype("<i2"):
            samples = samples.astype("<i2")
        if samples.ndim != 1:
            raise ValueError(f"audio array has shape {samples.shape}; pass mono (1-D) samples")
    else:
        raise TypeError(
            f"audio must be bytes, a numpy array or a WAV path, not {type(audio).__name__}"
        )
    if rate != fmt.sample_rate:
        import soxr

        out = soxr.resample(samples.astype(np.float32) / 32768.0, rate, fmt.sample_rate)
        samples = np.clip(np.round(out * 32768.0), -32768, 32767).astype("<i2")
    pcm = samples.astype("<i2").tobytes()
    if fmt.encoding == "mulaw":
        from voicegraph.nodes.audio.g711 import pcm16_to_ulaw

        return pcm16_to_ulaw(pcm)
    return pcm
