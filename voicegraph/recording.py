"""``CallInterface(record=...)``: the :class:`~voicegraph.nodes.audio.recorder.CallRecorder`
node added to a media preset graph, tapping the carrier's audio in and playout's audio out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .frames import AudioFrame, Clear

if TYPE_CHECKING:
    from .graph import Graph
    from .session import CallSession

__all__ = ["with_recorder"]


def with_recorder(g: Graph, session: CallSession) -> Graph:
    """Add a ``"recorder"`` node: the caller from ``carrier_in.audio``, the agent from
    ``playout.out`` (audio, and clears that cut what was never heard); both edges drop their
    oldest frames rather than slow the call."""
    from voicegraph.nodes.audio.recorder import CallRecorder

    assert session.audio_format is not None
    g.add("recorder", CallRecorder(session.audio_format, session.interface.record))
    g.connect("carrier_in.audio", "recorder.caller", policy="drop_oldest", capacity=500)
    g.connect(
        "playout.out",
        "recorder.agent",
        types=(AudioFrame, Clear),
        policy="drop_oldest",
        capacity=500,
    )
    return g
