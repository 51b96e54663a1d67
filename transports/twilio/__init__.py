"""Twilio carrier edges: Media Streams (:mod:`.media`) and ConversationRelay (:mod:`.relay`)."""

from .media import (
    TWILIO_FORMAT,
    TwilioMediaIn,
    TwilioMediaOptions,
    TwilioMediaOut,
    TwilioStart,
    accept_twilio_media,
    twilio_media_nodes,
)
from .relay import (
    EndSession,
    Play,
    RelayIn,
    RelayInterrupt,
    RelayOptions,
    RelayOut,
    RelaySession,
    SendDigits,
    SetLanguage,
    accept_conversation_relay,
    relay_nodes,
)

__all__ = [
    "TWILIO_FORMAT",
    "EndSession",
    "Play",
    "RelayIn",
    "RelayInterrupt",
    "RelayOptions",
    "RelayOut",
    "RelaySession",
    "SendDigits",
    "SetLanguage",
    "TwilioMediaIn",
    "TwilioMediaOptions",
    "TwilioMediaOut",
    "TwilioStart",
    "accept_conversation_relay",
    "accept_twilio_media",
    "relay_nodes",
    "twilio_media_nodes",
]
