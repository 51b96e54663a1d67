"""The cascading preset: caller audio -> VAD -> STT -> turn detector -> agent -> TTS -> playout
-> caller, with a barge-in controller fed by the VAD, the STT and DTMF."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..frames import (
    DTMF,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Cleared,
    Hangup,
    Interrupt,
    MarkAck,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    WordTimestamps,
)
from ..graph import Graph
from ..node import Actor, Node
from ..nodes.conversation.agent import AgentNode
from ..nodes.conversation.barge_in import BargeIn
from ..nodes.conversation.call_end import CallEnd
from ..nodes.conversation.turn_policy import AdaptiveTurnDetector, TurnPolicy, turn_policy
from ..nodes.conversation.turns import TurnDetector
from ._shared import Interruptible, Sensitivity, emittable, feed_caller_audio

if TYPE_CHECKING:
    from ..nodes.audio.playout import PlayoutOptions

__all__ = ["cascading"]


def cascading(
    *,
    carrier_in: Actor,
    carrier_out: Actor,
    carrier_format: AudioFormat,
    stt: Actor,
    tts: Actor,
    agent: Any,
    greeting: str | None = None,
    interruptible: Interruptible = "any",
    sensitivity: Sensitivity = "medium",
    vad: Node | None = None,
    hangup: Any = None,
    transfer: Any = None,
    on_false_interrupt: Literal["resume", "reprompt", "ignore"] = "resume",
    playout_lead: float = 0.1,
    turns: TurnPolicy | Literal["fixed"] | None = None,
    playout_options: PlayoutOptions | None = None,
) -> Graph:
    """Caller audio -> VAD -> STT -> turn detector -> agent -> TTS -> playout -> caller, with a
    barge-in controller fed by the VAD, the STT and DTMF.

    ``agent`` is an :class:`~voicegraph.agent.Agent` or any object with ``respond(turn)``.
    ``vad`` defaults to ``VAD(WebRTCAnalyser(), sensitivity)`` with the turn policy's early
    pause. ``hangup`` (async, optional) ends the call through the carrier's REST API after the
    agent's goodbye was played. ``turns``: the end-of-turn policy (default
    ``turn_policy(sensitivity)``: adaptive windows, preemptive replies, backchannels; see
    docs/turn-taking.md), or ``"fixed"`` for the plain STT-endpoint/VAD-silence detector.
    ``playout_options`` sets the playout's chunk size, mark interval and pacing
    (:class:`~voicegraph.nodes.audio.playout.PlayoutOptions`; it overrides ``playout_lead``)."""
    from ..nodes.audio import VAD, MulawDecode, Playout, WebRTCAnalyser

    g = Graph("cascading")
    g.add("carrier_in", carrier_in)
    g.add("stt", stt)
    feed_caller_audio(g, "stt", stt, carrier_format)
    policy = turn_policy(sensitivity) if turns is None else turns
    pause = policy.pause if isinstance(policy, TurnPolicy) else None
    vad_node: Node = (
        vad if vad is not None else VAD(WebRTCAnalyser(), sensitivity=sensitivity, pause=pause)
    )
    g.add("vad", vad_node)
    if carrier_format.encoding == "mulaw":
        g.add("decode", MulawDecode())
        g.connect("carrier_in.audio", "decode", policy="drop_oldest", capacity=100)
        g.connect("decode", "vad")
    else:
        g.connect("carrier_in.audio", "vad", policy="drop_oldest", capacity=100)
    # playout: every option (chunk, marks, pacing); else the defaults with ``playout_lead``
    playout = Playout(carrier_format, playout_lead, options=playout_options)
    barge_in = BargeIn(
        lambda: playout.speaking,
        interruptible,
        sensitivity,
        backchannel=policy.is_backchannel if isinstance(policy, TurnPolicy) else None,
    )
    agent_node = AgentNode(
        agent, greeting, transfer=transfer, on_false_interrupt=on_false_interrupt
    )
    if isinstance(policy, TurnPolicy):
        g.add(
            "turns",
            AdaptiveTurnDetector(
                policy,
                asked=lambda: _asked(agent_node),
                # a barge-in may already have silenced the agent when the words arrive
                agent_speaking=lambda: playout.speaking or barge_in.fired_within(1.0),
                vad_stop_lag=getattr(getattr(vad_node, "profile", None), "min_silence", 0.5),
            ),
        )
    else:
        g.add("turns", TurnDetector())
    g.add("barge_in", barge_in)
    g.add("agent", agent_node)
    g.add("tts", tts)
    g.add("playout", playout)
    g.add("carrier_out", carrier_out)
    g.add("call_end", CallEnd(hangup))

    speech = (SpeechStarted, SpeechStopped)
    # with the policy's early pause, SpeechPaused / SpeechResumed (subclasses) travel these too
    g.connect("vad", "stt.audio", types=speech, policy="drop_oldest", capacity=100)
    g.connect("vad", "turns.vad", types=speech)
    g.connect("vad", "barge_in.vad", types=speech)
    g.connect("stt", "turns.stt")
    g.connect("stt", "barge_in.stt", types=(Transcript,))
    g.connect("carrier_in.control", "barge_in.dtmf", types=(DTMF,))
    g.connect("carrier_in.control", "agent.turns", types=(DTMF,))
    g.connect("carrier_in.control", "call_end.caller", types=(Hangup,))
    g.connect("turns", "agent.turns")
    # Edge order is the order an interrupt is delivered: clear the carrier first, then cancel
    # the TTS context, then the LLM.
    g.connect("barge_in", "playout.control", types=(Interrupt,))
    g.connect("barge_in", "tts.text", types=(Interrupt,))
    g.connect("barge_in", "agent.control")
    g.connect("agent.text", "tts.text")
    g.connect("tts.audio", "playout.audio", types=(AudioFrame, AudioDone))
    g.connect("tts.audio", "agent.playback", types=(WordTimestamps,), feedback=True)
    g.connect("playout.out", "carrier_out")
    acks = emittable(carrier_in, "events", MarkAck, Cleared)
    g.connect("carrier_in.events", "playout.acks", types=acks)
    g.connect("playout.events", "agent.playback", feedback=True)
    g.connect("agent.hangup", "carrier_out")
    g.connect("agent.hangup", "call_end.agent")
    return g


def _asked(agent: AgentNode) -> bool:
    """Whether the agent's last heard words were a question (a short answer ends the turn)."""
    for m in reversed(agent.history):
        if m.get("role") == "assistant" and m.get("content"):
            return str(m["content"]).rstrip().endswith("?")
    return False
