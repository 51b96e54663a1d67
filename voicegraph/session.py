"""What a graph factory receives for one carrier call: identifiers, the carrier's audio format,
and the carrier edge nodes already connected to the call's socket.

The server (``AgentRuntime``) builds a :class:`CallSession` once a carrier stream is accepted and
authorised, then asks the call's interface for a graph (a preset, or a user's own factory). The
graph must contain ``session.carrier_in`` and ``session.carrier_out`` (conventionally named
``"carrier_in"`` and ``"carrier_out"``).

Port contract of carrier edge nodes (see ``voicegraph.transports``):

* media carriers (Twilio Media Streams, Plivo Audio Streams) -- ``carrier_in`` outputs
  ``"audio"`` (AudioFrame in ``audio_format``), ``"control"`` (DTMF, Hangup) and ``"events"``
  (StreamStarted, MarkAck, Cleared); ``carrier_out`` input ``"in"`` takes AudioFrame in
  ``audio_format``, PlaybackMark, Clear and Hangup.
* ConversationRelay (managed mode) -- ``carrier_in`` outputs ``"text"`` (final Transcript per
  caller prompt), ``"control"`` (Interrupt, DTMF, Hangup) and ``"events"``; ``carrier_out``
  input ``"in"`` takes AgentText (tokens, ``last`` ends a reply, ``end_call`` ends the call) and
  Hangup. ``audio_format`` is ``None``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .frames import AudioFormat
from .node import Actor

__all__ = ["CallSession"]


@dataclass
class CallSession:
    """One accepted carrier call, handed to the graph factory."""

    call_id: str
    carrier: str
    mode: str
    stream_id: str
    carrier_in: Actor
    carrier_out: Actor
    audio_format: AudioFormat | None
    from_number: str = ""
    to_number: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    interface: Any = None
    hangup: Callable[[], Awaitable[None]] | None = None
    """Ends the call through the carrier's REST API (None where the carrier socket suffices)."""
    transfer: Callable[[str], Awaitable[None]] | None = None
    """Transfers the call to an E.164 number through the carrier's REST API (Twilio); None where
    the carrier offers no transfer here (Plivo), and the agent then gets no transfer tool."""
