"""Presets built for looking at, not for calls: carrier nodes over an in-memory socket that
nothing is connected to (:func:`stand_in_carrier`), and a whole preset around them
(:func:`sketch`). Nothing connects until a graph runs, so both are safe anywhere: ``voicegraph
graph``, the docs' pictures and the server's start-up checks use them."""

from __future__ import annotations

from typing import NamedTuple

from ..frames import AudioFormat
from ..graph import Graph, GraphError
from ..node import Actor
from .cascading_graph import cascading
from .managed_graph import managed
from .realtime_graph import realtime, realtime_model_for

__all__ = ["StandInCarrier", "sketch", "stand_in_carrier"]


class StandInCarrier(NamedTuple):
    """A carrier's two nodes and the audio format they carry (``None`` in managed mode, where
    the carrier sends text)."""

    carrier_in: Actor
    carrier_out: Actor
    audio_format: AudioFormat | None


def stand_in_carrier(
    mode: str, carrier: str, plivo_format: AudioFormat = AudioFormat("pcm16", 16000)
) -> StandInCarrier:
    """The carrier nodes a call of ``mode`` on ``carrier`` would get, over an in-memory socket
    with placeholder identifiers: ConversationRelay in managed mode (Twilio only), else Twilio
    Media Streams (µ-law 8 kHz) or a Plivo audio stream in ``plivo_format``."""
    from voicegraph.testing.memsocket import socket_pair

    sock, _ = socket_pair()
    if mode == "managed":
        if carrier != "twilio":
            raise GraphError("managed mode is Twilio only (ConversationRelay)")
        from voicegraph.transports.twilio.relay import RelaySession, relay_nodes

        session = RelaySession(
            session_id="VX0",
            call_sid="CA0",
            account_sid="AC0",
            from_number="",
            to_number="",
            direction="inbound",
            custom_parameters={},
        )
        return StandInCarrier(*relay_nodes(sock, session), None)
    if carrier == "twilio":
        from voicegraph.transports.twilio.media import TwilioStart, twilio_media_nodes

        fmt = AudioFormat("mulaw", 8000)
        start = TwilioStart(
            stream_sid="MZ0",
            call_sid="CA0",
            account_sid="AC0",
            custom_parameters={},
            media_format=fmt,
        )
        return StandInCarrier(*twilio_media_nodes(sock, start), fmt)
    if carrier == "plivo":
        from voicegraph.transports.plivo.stream import PlivoStart, plivo_stream_nodes

        plivo = PlivoStart(
            call_id="c0",
            stream_id="s0",
            account_id="MA0",
            media_format=plivo_format,
            extra_headers={},
        )
        return StandInCarrier(*plivo_stream_nodes(sock, plivo), plivo_format)
    raise GraphError(f"unknown carrier {carrier!r}; use 'twilio' or 'plivo'")


def sketch(mode: str, carrier: str = "twilio", providers: str = "cloud") -> Graph:
    """A preset built for looking at: stand-in carrier nodes (:func:`stand_in_carrier`) and
    real provider nodes in the carrier's format -- ``providers="cloud"``: Deepgram, Cartesia
    and OpenAI Realtime with a dummy key; ``"offline"``: pocketsphinx and espeak-ng
    (cascading). ``voicegraph graph`` and the docs' pictures use it."""
    if providers not in ("cloud", "offline"):
        raise GraphError(f"providers must be 'cloud' or 'offline', not {providers!r}")
    if mode not in ("managed", "cascading", "realtime"):
        raise GraphError(f"unknown preset {mode!r}; use managed, cascading or realtime")
    from ..agent import Agent

    agent = Agent("Sketch.")
    cin, cout, fmt = stand_in_carrier(mode, carrier)
    if fmt is None:
        return managed(carrier_in=cin, carrier_out=cout, agent=agent)
    if mode == "cascading" and providers == "offline":
        from voicegraph.nodes import EspeakTTS, EspeakTTSOptions, PocketsphinxSTT

        tts = EspeakTTS(EspeakTTSOptions(encoding=fmt.encoding, sample_rate=fmt.sample_rate))
        return cascading(
            carrier_in=cin,
            carrier_out=cout,
            carrier_format=fmt,
            agent=agent,
            stt=PocketsphinxSTT(),
            tts=tts,
        )
    if mode == "cascading":
        from voicegraph.nodes import CartesiaTTS, DeepgramSTT

        return cascading(
            carrier_in=cin,
            carrier_out=cout,
            carrier_format=fmt,
            agent=agent,
            stt=DeepgramSTT(api_key="sketch", encoding=fmt.encoding, sample_rate=fmt.sample_rate),
            tts=CartesiaTTS(api_key="sketch", encoding=fmt.encoding, sample_rate=fmt.sample_rate),
        )
    from voicegraph.nodes.realtime import OpenAIRealtime

    model = realtime_model_for(
        OpenAIRealtime(api_key="sketch"),
        agent,
        greeting=None,
        sensitivity="medium",
        audio_format=fmt,
    )
    return realtime(carrier_in=cin, carrier_out=cout, carrier_format=fmt, model=model)
