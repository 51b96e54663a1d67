"""The base of every frame: its scheduling class (:class:`Kind`), and the msgpack codec
(:func:`encode_frame` / :func:`decode_frame`) that knows every subclass.

The codec lives with the base class because the two share one registry: every subclass
registers itself when it is defined, and that invalidates the cached decoder.
"""

from __future__ import annotations

import enum
from functools import reduce
from operator import or_
from typing import Any, ClassVar

import msgspec

__all__ = ["Frame", "Kind", "decode_frame", "encode_frame"]


class Kind(enum.IntEnum):
    """Scheduling class of a frame type."""

    MEDIA = 0
    CONTROL = 1
    EVENT = 2


_registry: dict[str, type[Frame]] = {}


class Frame(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every frame. Subclasses set ``kind`` (default ``Kind.MEDIA``)."""

    kind: ClassVar[Kind] = Kind.MEDIA

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _registry[cls.__name__] = cls
        global _decoder
        _decoder = None


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Any] | None = None


def encode_frame(frame: Frame) -> bytes:
    """Serialise a frame to msgpack (the class name is the tag)."""
    return _encoder.encode(frame)


def decode_frame(data: bytes) -> Frame:
    """Decode msgpack written by :func:`encode_frame` back into the same frame class.

    Raises ``msgspec.ValidationError`` for unknown frame types or malformed fields."""
    global _decoder
    if _decoder is None:
        union = tuple(_registry.values())
        _decoder = msgspec.msgpack.Decoder(union[0] if len(union) == 1 else _union(union))
    return _decoder.decode(data)  # type: ignore[no-any-return]


def _union(types: tuple[type, ...]) -> Any:
    return reduce(or_, types)
