"""The kinds of carrier stream the runtime accepts, and how each becomes carrier edge nodes.

One :class:`CarrierRoute` per stream protocol: Twilio Media Streams (``"twilio-media"``),
Twilio ConversationRelay (``"twilio-relay"``, the managed pipeline) and Plivo Audio Streams
(``"plivo"``). :func:`route_for` names the one an interface's stream speaks;
:func:`carrier_route` builds its entry, importing that carrier's transport only then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ..frames import AudioFormat
from ..interface import CallInterface

__all__ = ["CarrierRoute", "carrier_route", "route_for"]


class CarrierRoute(NamedTuple):
    """How one kind of carrier stream is accepted and turned into carrier edge nodes."""

    name: str
    accept: Callable[[Any], Awaitable[Any]]
    nodes: Callable[[Any, Any], tuple[Any, Any]]
    params: Callable[[Any], dict[str, str]]
    call_id: Callable[[Any], str]
    stream_id: Callable[[Any], str]
    audio_format: Callable[[Any], AudioFormat | None]
    caller: Callable[[Any, dict[str, str]], str]


def route_for(iface: CallInterface) -> str:
    """The stream protocol an interface's stream speaks."""
    if iface.telephony == "plivo":
        return "plivo"
    return "twilio-relay" if iface.pipeline == "managed" else "twilio-media"


def carrier_route(name: str) -> CarrierRoute:
    """The route of the stream protocol ``name`` (a :func:`route_for` result)."""
    if name == "twilio-media":
        from ..transports.twilio import accept_twilio_media, twilio_media_nodes

        return CarrierRoute(
            name,
            accept_twilio_media,
            twilio_media_nodes,
            lambda s: dict(s.custom_parameters),
            lambda s: s.call_sid,
            lambda s: s.stream_sid,
            lambda s: s.media_format,
            lambda s, p: p.get("caller", ""),
        )
    if name == "twilio-relay":
        from ..transports.twilio import accept_conversation_relay, relay_nodes

        return CarrierRoute(
            name,
            accept_conversation_relay,
            relay_nodes,
            lambda s: dict(s.custom_parameters),
            lambda s: s.call_sid,
            lambda s: s.session_id,
            lambda s: None,
            lambda s, p: p.get("caller", ""),
        )
    from ..transports.plivo import accept_plivo_stream, plivo_stream_nodes

    return CarrierRoute(
        name,
        accept_plivo_stream,
        plivo_stream_nodes,
        lambda s: dict(s.extra_headers),
        lambda s: s.call_id,
        lambda s: s.stream_id,
        lambda s: s.media_format,
        lambda s, p: p.get("caller", ""),
    )
