"""Decoding helpers shared by the carrier wire modules: size limits, JSON, payload checks."""

from __future__ import annotations

import math
from typing import Any, TypeVar

import msgspec

from .errors import ProtocolError, UnknownEvent

T = TypeVar("T")

DEFAULT_MAX_MESSAGE = 64 * 1024
"""Largest inbound carrier message accepted, in bytes (Plivo's documented limit; Twilio sends
~400-byte media frames)."""


class _Probe(msgspec.Struct):
    """Just enough of a message to name it in an error."""

    event: Any = None
    type: Any = None


_probe = msgspec.json.Decoder(_Probe)


def decode(decoder: msgspec.json.Decoder[T], raw: str | bytes, max_size: int, tag: str) -> T:
    """Decode one carrier message with ``decoder`` or raise :class:`ProtocolError` saying why
    (:class:`UnknownEvent` when only the ``tag`` value is unknown).

    The size is checked before any parsing so an oversized message costs nothing."""
    if len(raw) > max_size:
        raise ProtocolError(f"message of {len(raw)} bytes exceeds the {max_size}-byte limit")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        name = discriminator(raw, tag)
        if name is not None and str(exc).endswith(f"`$.{tag}`"):
            raise UnknownEvent(f"unknown {tag} {name[:40]!r}", name[:40]) from None
        raise ProtocolError(f"invalid {name[:40] if name else 'message'}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None


def discriminator(raw: str | bytes, tag: str) -> str | None:
    """The ``tag`` field (``"event"`` or ``"type"``) of a JSON object, if it is a string."""
    try:
        value = getattr(_probe.decode(raw), tag)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return value if isinstance(value, str) else None


def check_payload(data: bytes, bytes_per_sample: int, max_bytes: int) -> None:
    """Reject audio payloads that are empty, oversized or not whole samples."""
    n = len(data)
    if n == 0:
        raise ProtocolError("media payload is empty")
    if n > max_bytes:
        raise ProtocolError(f"media payload of {n} bytes exceeds the {max_bytes}-byte limit")
    if n % bytes_per_sample:
        raise ProtocolError(
            f"media payload of {n} bytes is not whole {bytes_per_sample}-byte samples"
        )


_isfinite = math.isfinite


def as_float(value: str | int | float, what: str) -> float:
    """A number the carrier may send as a JSON string or number (both seen in the wild)."""
    try:
        out = float(value)
    except ValueError:
        raise ProtocolError(f"{what} {value!r} is not a number") from None
    if not _isfinite(out):  # NaN or ±inf
        raise ProtocolError(f"{what} {value!r} is not a finite number")
    return out
