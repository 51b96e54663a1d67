"""Errors raised at the carrier boundary."""

from __future__ import annotations

__all__ = ["CarrierFormatError", "ProtocolError", "UnknownEvent"]


class ProtocolError(Exception):
    """A carrier peer broke its wire protocol (malformed JSON, unknown event, media before start,
    bad base64, oversized message, impossible audio length...).

    ``reason`` says what was wrong. It ends only the one stream it belongs to: the transport
    closes that socket and the call ends; nothing else is affected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownEvent(ProtocolError):
    """A well-formed message whose event type this edge does not know (``name``). Carriers add
    event types; after the stream started, readers log, count and skip these."""

    def __init__(self, reason: str, name: str) -> None:
        super().__init__(reason)
        self.name = name


class CarrierFormatError(ValueError):
    """A graph sent the carrier edge audio in a format the carrier stream does not carry.

    The message names both formats; put a converter before ``carrier_out`` (or connect with
    ``convert=True``)."""
