"""Errors raised at the carrier boundary."""

from __future__ import annotations

__all__ = ["CarrierFormatError", "ProtocolError"]


class ProtocolError(Exception):
    """A carrier peer broke its wire protocol (malformed JSON, unknown event, media before start,
    bad base64, oversized message, impossible audio length...).

    ``reason`` says what was wrong. It ends only the one stream it belongs to: the transport
    closes that socket and the call ends; nothing else is affected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CarrierFormatError(ValueError):
    """A graph sent the carrier edge audio in a format the carrier stream does not carry.

    The message names both formats; put a converter before ``carrier_out`` (or connect with
    ``convert=True``)."""
