"""The graph a :class:`~voicegraph.interface.CallInterface` runs for one accepted carrier call:
the line's preset, its providers localized, and what a line or a placed call adds (machine
detection, recording)."""

from __future__ import annotations

from typing import Any

from ..graph import Graph, GraphError
from ..session import CallSession
from .cascading_graph import cascading
from .managed_graph import managed
from .realtime_graph import realtime, realtime_model_for

__all__ = ["build_for_session"]


def build_for_session(session: CallSession) -> Graph:
    """The graph ``CallInterface(pipeline=...)`` runs for one accepted carrier call."""
    iface = session.interface
    if iface is None:
        raise GraphError("session has no CallInterface; build the graph with a preset function")
    agent = iface.new_agent()
    if agent is None:
        raise GraphError("CallInterface(agent=...) is required to build a preset graph")
    mode = session.mode
    if mode == "managed":
        return managed(
            carrier_in=session.carrier_in,
            carrier_out=session.carrier_out,
            agent=agent,
            transfer=session.transfer,
        )
    if session.audio_format is None:
        raise GraphError(f"{mode} mode needs a media stream with an audio format")
    return _extras(_media_preset(session, agent), session)


def _extras(g: Graph, session: CallSession) -> Graph:
    """What a line or a placed call adds to a media preset: machine detection, recording."""
    if session.params.get("dial") == "amd":
        from ..nodes.conversation.amd import with_machine_detection

        with_machine_detection(g, session)
    if session.interface.record is not None:
        from ..recording import with_recorder

        with_recorder(g, session)
    return g


def _localized(iface: Any, node: Any) -> Any:
    """``node`` with the line's language and voice applied (GraphError if it cannot take them)."""
    from ..localization import LocalizationError, localize

    try:
        return localize(node, iface.language, iface.voice)
    except LocalizationError as exc:
        raise GraphError(str(exc)) from None


def _media_preset(session: CallSession, agent: Any) -> Graph:
    iface, mode = session.interface, session.mode
    assert session.audio_format is not None

    def localized(node: Any) -> Any:
        return _localized(iface, node)

    if mode == "cascading":
        return cascading(
            carrier_in=session.carrier_in,
            carrier_out=session.carrier_out,
            carrier_format=session.audio_format,
            stt=localized(iface.new_stt()),
            tts=localized(iface.new_tts()),
            agent=agent,
            greeting=iface.greeting,
            interruptible=iface.interruptible,
            sensitivity=iface.interrupt_sensitivity,
            hangup=session.hangup,
            transfer=session.transfer,
        )
    if mode == "realtime":
        held = session.params.get("dial") == "amd"  # the greeting waits for the verdict
        model = realtime_model_for(
            localized(iface.new_realtime()),
            agent,
            greeting=None if held else iface.greeting,
            sensitivity=iface.interrupt_sensitivity,
            audio_format=session.audio_format,
            voice=iface.voice,
            can_transfer=session.transfer is not None,
            interruptible=iface.interruptible,
        )
        return realtime(
            carrier_in=session.carrier_in,
            carrier_out=session.carrier_out,
            carrier_format=session.audio_format,
            model=model,
            agent=agent,
            interruptible=iface.interruptible,
            sensitivity=iface.interrupt_sensitivity,
            hangup=session.hangup,
            transfer=session.transfer,
        )
    raise GraphError(f"unknown pipeline mode {mode!r}")
