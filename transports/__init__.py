"""Carrier edges (installed as ``voicegraph.transports``).

Each carrier has an accept function (read the stream's first message from a fresh socket) and a
node factory returning ``(carrier_in, carrier_out)``; see :mod:`voicegraph.session` for their
port contract. Names are imported lazily, so importing one carrier does not load the others.
"""

from __future__ import annotations

from voicegraph._lazy import lazy_exports

from .errors import CarrierFormatError, ProtocolError

_TWILIO = ".twilio"
_PLIVO = ".plivo"
_SOFTPHONE = ".softphone"

# name -> subpackage that defines it
_LAZY: dict[str, str] = {
    "TWILIO_FORMAT": _TWILIO,
    "EndSession": _TWILIO,
    "Play": _TWILIO,
    "RelayIn": _TWILIO,
    "RelayInterrupt": _TWILIO,
    "RelayOptions": _TWILIO,
    "RelayOut": _TWILIO,
    "RelaySession": _TWILIO,
    "SendDigits": _TWILIO,
    "SetLanguage": _TWILIO,
    "TwilioMediaIn": _TWILIO,
    "TwilioMediaOptions": _TWILIO,
    "TwilioMediaOut": _TWILIO,
    "TwilioStart": _TWILIO,
    "accept_conversation_relay": _TWILIO,
    "accept_twilio_media": _TWILIO,
    "relay_nodes": _TWILIO,
    "twilio_media_nodes": _TWILIO,
    "PlivoStart": _PLIVO,
    "PlivoStreamIn": _PLIVO,
    "PlivoStreamOptions": _PLIVO,
    "PlivoStreamOut": _PLIVO,
    "accept_plivo_stream": _PLIVO,
    "content_type": _PLIVO,
    "parse_extra_headers": _PLIVO,
    "plivo_stream_nodes": _PLIVO,
    "Softphone": _SOFTPHONE,
    "SoftphoneIn": _SOFTPHONE,
    "SoftphoneOptions": _SOFTPHONE,
    "SoftphoneOut": _SOFTPHONE,
    "accept_softphone": _SOFTPHONE,
    "enable_softphone": _SOFTPHONE,
    "softphone_nodes": _SOFTPHONE,
}

__all__ = ["CarrierFormatError", "ProtocolError", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
