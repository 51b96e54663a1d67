"""Conversation nodes (installed as ``voicegraph.nodes.conversation``): the nodes that turn
transcripts into turns and replies and keep the call's history true to what the caller heard.

* turn detection -- :class:`TurnDetector` and the adaptive :class:`AdaptiveTurnDetector` with
  its :class:`TurnPolicy` (:mod:`.turn_policy`), replies prepared early (:mod:`.preemptive`);
* barge-in -- :class:`BargeIn`;
* the agent node -- :class:`AgentNode`;
* realtime mode's conversation keeper -- :class:`RealtimeSupervisor`;
* the end of a call -- :class:`CallEnd`; answering-machine handling -- :class:`AnsweringMachine`.

Names are imported lazily on first use.
"""

from __future__ import annotations

from voicegraph._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "AgentFailing": ".agent",
    "AgentNode": ".agent",
    "BargeIn": ".barge_in",
    "FalseInterrupt": ".barge_in",
    "CallEnd": ".call_end",
    "TurnDetector": ".turns",
    "AdaptiveTurnDetector": ".turn_policy",
    "Backchannel": ".turn_policy",
    "EarlyTurn": ".turn_policy",
    "TurnContinues": ".turn_policy",
    "TurnPolicy": ".turn_policy",
    "turn_policy": ".turn_policy",
    "HeldReply": ".preemptive",
    "RealtimeSupervisor": ".realtime_supervisor",
    "AnsweringMachine": ".amd",
    "with_machine_detection": ".amd",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
