"""The managed preset: Twilio ConversationRelay does speech-to-text and text-to-speech; the
agent sees text."""

from __future__ import annotations

from typing import Any

from ..frames import DTMF, AgentText, Hangup, Interrupt
from ..graph import Graph
from ..node import Actor
from ..nodes.conversation.agent import AgentNode
from ..nodes.conversation.call_end import CallEnd

__all__ = ["managed"]


def managed(*, carrier_in: Actor, carrier_out: Actor, agent: Any, transfer: Any = None) -> Graph:
    """ConversationRelay in, agent, ConversationRelay out: Twilio does speech-to-text and
    text-to-speech (and speaks the greeting); the agent sees text. Relay interrupts carry what
    the caller heard, which is what the history keeps."""
    g = Graph("managed")
    g.add("carrier_in", carrier_in)
    g.add("agent", AgentNode(agent, None, acknowledged=False, transfer=transfer))
    g.add("carrier_out", carrier_out)
    g.add("call_end", CallEnd(None))
    g.connect("carrier_in.text", "agent.turns")
    g.connect("carrier_in.control", "agent.turns", types=(DTMF,))
    g.connect("carrier_in.control", "agent.control", types=(Interrupt,))
    g.connect("carrier_in.control", "call_end.caller", types=(Hangup,))
    # The relay ends the session itself after a reply with end_call (its ``end`` message); the
    # agent's Hangup is not sent to it, since a control frame would overtake the last tokens.
    g.connect("agent.text", "carrier_out", types=(AgentText,))
    return g
