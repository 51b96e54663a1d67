"""Cartesia's TTS WebSocket as FakeCartesia checks it: the fault knobs, the record of what a
client sent, the client message schema and its checks, the error messages (current and legacy
shape), and the audio the fake renders (a tone per word, in the requested encoding)."""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Collection
from typing import Any, Literal

import msgspec
import numpy as np

ENCODINGS = {"pcm_f32le", "pcm_s16le", "pcm_mulaw", "pcm_alaw"}
RATES = {8000, 16000, 22050, 24000, 44100, 48000}
SECONDS_PER_CHAR = 0.06
"""Default tone length per character (a word of n letters lasts (n + 1) × this): "Hi." is
0.24 s of audio. ``FakeCartesia(seconds_per_char=...)`` changes it."""


class CartesiaFaults(msgspec.Struct, kw_only=True):
    """Fault injection (mutable: change knobs between connections to script scenarios)."""

    refuse_auth: bool = False
    """Refuse every handshake with 401."""
    fail_connects: int = 0
    """Refuse the next this-many handshakes with 503 (decremented per refusal)."""
    close_after_chunks: int | None = None
    """Close the first connection with 1011 after sending this many chunks."""
    stall: bool = False
    """Accept requests but never answer."""
    malformed_first: bool = False
    """Send one non-JSON text message before the first chunk."""


class CartesiaRequest(msgspec.Struct, frozen=True):
    """A client message as the fake saw it. ``kind``: ``generate``, ``cancel`` or ``invalid``."""

    connection: int
    kind: str
    context_id: str | None = None
    transcript: str = ""
    continue_: bool = False
    flush: bool = False
    error: str = ""
    language: str | None = None
    voice_id: str | None = None


class _Voice(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    mode: Literal["id"] = "id"


class _Format(msgspec.Struct, forbid_unknown_fields=True):
    container: str
    encoding: str
    sample_rate: int


class _Request(msgspec.Struct, rename={"continue_": "continue"}):
    """Any client message: a cancel has ``cancel``; a generation request the rest."""

    context_id: str | None = None
    cancel: bool = False
    model_id: str | None = None
    transcript: str | None = None
    voice: _Voice | None = None
    output_format: _Format | None = None
    language: str | None = None
    continue_: bool = False
    flush: bool = False
    add_timestamps: bool = False
    add_phoneme_timestamps: bool = False
    use_normalized_timestamps: bool | None = None
    max_buffer_delay_ms: int | None = None
    pronunciation_dict_id: str | None = None
    generation_config: dict[str, Any] | None = None
    duration: float | None = None
    speed: str | float | None = None


_decode = msgspec.json.Decoder(_Request).decode
_SAME = ("model_id", "voice", "output_format", "language", "add_timestamps", "max_buffer_delay_ms")


class _Bad(Exception):
    def __init__(self, code: str, title: str, message: str, context_id: str | None) -> None:
        super().__init__(message)
        self.code, self.title, self.message, self.context_id = code, title, message, context_id


def _validate(
    req: _Request, known: Collection[str] | None, first: _Request | None, closed: bool
) -> None:
    """Refuse ``req`` as the service does: required fields, a known voice (``known``:
    ``None``, any), a supported raw output format, and on a context already open (``first``:
    its first request; ``closed``: it had ``continue: false``) the same settings."""
    cid = req.context_id
    for name in ("model_id", "transcript", "voice", "output_format"):
        if getattr(req, name) is None:
            raise _Bad("invalid_request", "Invalid request", f"{name} is required", cid)
    voice = req.voice
    if voice is not None and known is not None and voice.id not in known:
        raise _Bad("voice_not_found", "Voice not found", f"no voice with id {voice.id!r}", cid)
    fmt = req.output_format
    assert fmt is not None
    if fmt.container != "raw":
        raise _Bad(
            "invalid_output_format",
            "Invalid output format",
            "WebSocket supports container 'raw' only",
            cid,
        )
    if fmt.encoding not in ENCODINGS:
        raise _Bad(
            "invalid_output_format",
            "Invalid output format",
            f"unsupported encoding {fmt.encoding!r}",
            cid,
        )
    if fmt.sample_rate not in RATES:
        raise _Bad(
            "invalid_output_format",
            "Invalid output format",
            f"unsupported sample_rate {fmt.sample_rate}",
            cid,
        )
    if req.max_buffer_delay_ms is not None and not 0 <= req.max_buffer_delay_ms <= 5000:
        raise _Bad("invalid_request", "Invalid request", "max_buffer_delay_ms must be 0-5000", cid)
    if first is not None:
        if closed:
            raise _Bad(
                "context_closed",
                "Context closed",
                f"context {cid} already received continue=false",
                cid,
            )
        for name in _SAME:
            if getattr(req, name) != getattr(first, name):
                raise _Bad(
                    "invalid_request",
                    "Invalid request",
                    f"{name} must not change within a context",
                    cid,
                )


def _error_message(bad: _Bad, shape: Literal["current", "legacy"]) -> dict[str, Any]:
    """The ``error`` message for ``bad``, in the current or the legacy shape."""
    if shape == "legacy":
        msg: dict[str, Any] = {
            "type": "error",
            "context_id": bad.context_id,
            "status_code": 400,
            "done": True,
            "error": bad.message,
        }
    else:
        msg = {
            "type": "error", "context_id": bad.context_id, "done": True, "status_code": 400,
            "error_code": bad.code, "title": bad.title, "message": bad.message,
            "doc_url": "https://docs.cartesia.ai/", "request_id": str(uuid.uuid4()),
        }  # fmt: skip
    return msg


def _tone(
    text: str, rate: int, per_char: float
) -> tuple[np.ndarray[Any, Any], list[tuple[str, float, float]]]:
    parts: list[np.ndarray[Any, Any]] = []
    words: list[tuple[str, float, float]] = []
    t = 0.0
    for i, w in enumerate(text.split()):
        dur = per_char * (len(w) + 1)
        n = int(rate * dur)
        k = np.arange(n) / rate
        freq = 300.0 + 40.0 * (i % 5)
        env = np.minimum(1.0, np.minimum(k, dur - k) / 0.01)
        parts.append(6000.0 * env * np.sin(2 * math.pi * freq * k))
        words.append((w, round(t, 3), round(t + dur * 0.9, 3)))
        t += n / rate
    x = np.concatenate(parts) if parts else np.zeros(0)
    return x.astype(np.int16), words


@functools.lru_cache(maxsize=256)
def _tone_audio(
    text: str, encoding: str, rate: int, per_char: float
) -> tuple[bytes, tuple[tuple[str, float, float], ...]]:
    """The tone audio of ``text`` in ``encoding``/``rate`` and its word timings, kept for the
    next time: a fake's script repeats its lines, and rendering is its costliest step."""
    x, words = _tone(text, rate, per_char)
    return _encode_audio(x, encoding), tuple(words)


def _encode_audio(x: np.ndarray[Any, Any], encoding: str) -> bytes:
    if encoding == "pcm_mulaw":
        from voicegraph.nodes.audio.g711 import pcm16_to_ulaw

        return pcm16_to_ulaw(x.astype("<i2").tobytes())
    if encoding == "pcm_f32le":
        return (x.astype("<f4") / 32768.0).tobytes()
    if encoding == "pcm_alaw":
        raise _Bad("unsupported", "Unsupported", "the fake does not produce pcm_alaw", None)
    return x.astype("<i2").tobytes()
