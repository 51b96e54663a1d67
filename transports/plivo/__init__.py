"""Plivo carrier edge: Audio Streams (:mod:`.stream`)."""

from .stream import (
    PlivoStart,
    PlivoStreamIn,
    PlivoStreamOptions,
    PlivoStreamOut,
    accept_plivo_stream,
    content_type,
    parse_extra_headers,
    plivo_stream_nodes,
)

__all__ = [
    "PlivoStart",
    "PlivoStreamIn",
    "PlivoStreamOptions",
    "PlivoStreamOut",
    "accept_plivo_stream",
    "content_type",
    "parse_extra_headers",
    "plivo_stream_nodes",
]
