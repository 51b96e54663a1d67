"""The realtime preset: caller audio -> a speech-to-speech model -> playout -> caller, and the
per-call model node built from a template and the agent (:func:`realtime_model_for`)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Literal

from ..frames import (
    DTMF,
    AgentText,
    AudioFormat,
    Cleared,
    Hangup,
    Interrupt,
    MarkAck,
    Say,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from ..graph import Graph, GraphError
from ..node import Actor
from ..nodes.conversation.barge_in import BargeIn, FalseInterrupt
from ..nodes.conversation.call_end import CallEnd
from ..nodes.conversation.realtime_supervisor import RealtimeSupervisor
from ._shared import Interruptible, Sensitivity, emittable, feed_caller_audio

if TYPE_CHECKING:
    from ..nodes.audio.playout import PlayoutOptions

__all__ = ["realtime", "realtime_model_for"]


def realtime(
    *,
    carrier_in: Actor,
    carrier_out: Actor,
    carrier_format: AudioFormat,
    model: Actor,
    agent: Any = None,
    interruptible: Interruptible = "any",
    sensitivity: Sensitivity = "medium",
    hangup: Any = None,
    transfer: Any = None,
    on_false_interrupt: Literal["resume", "reprompt", "ignore"] = "resume",
    playout_lead: float = 0.1,
    playout_options: PlayoutOptions | None = None,
) -> Graph:
    """Caller audio -> realtime speech-to-speech model -> playout -> caller. The model's server
    VAD drives barge-in: clear the carrier, cancel the response, and truncate the model's item
    at the audio the caller heard (playout's acknowledged position).

    ``model`` must already carry the agent's instructions and tools (see
    :func:`realtime_model_for`). The supervisor keeps the transcript, hangs up after an
    ``end_call`` goodbye was played (or transfers after ``transfer_call``), and after a false
    interruption asks the model for the unheard rest of its reply. ``playout_options``: as in
    :func:`~voicegraph.presets.cascading`."""
    from ..nodes.audio import Playout

    g = Graph("realtime")
    g.add("carrier_in", carrier_in)
    g.add("model", model)
    feed_caller_audio(g, "model", model, carrier_format)
    # playout: every option (chunk, marks, pacing); else the defaults with ``playout_lead``
    playout = Playout(carrier_format, playout_lead, options=playout_options)
    g.add("barge_in", BargeIn(lambda: playout.speaking, interruptible, sensitivity))
    supervisor = RealtimeSupervisor(
        getattr(model, "call_control", None),
        transfer=transfer,
        ending_after=getattr(model, "control_after", None),
        on_false_interrupt="ignore" if on_false_interrupt == "ignore" else "resume",
    )
    g.add("supervisor", supervisor)
    g.add("playout", playout)
    g.add("carrier_out", carrier_out)
    g.add("call_end", CallEnd(hangup))
    g.connect("model.audio", "playout.audio")
    g.connect("model.events", "barge_in.vad", types=(SpeechStarted, SpeechStopped))
    g.connect("model.events", "barge_in.stt", types=(Transcript,))
    g.connect("model.events", "supervisor.events", types=(Transcript, AgentText))
    g.connect("carrier_in.control", "barge_in.dtmf", types=(DTMF,))
    g.connect("carrier_in.control", "call_end.caller", types=(Hangup,))
    g.connect("barge_in", "playout.control", types=(Interrupt,))
    g.connect("barge_in", "model.control", types=(Interrupt,), feedback=True)
    g.connect("barge_in", "supervisor.control", types=(Interrupt, FalseInterrupt))
    if any(Say in p.types for p in model.inputs if p.name == "say"):
        g.connect("supervisor.say", "model.say", types=(Say,), feedback=True)
    g.connect("playout.out", "carrier_out")
    acks = emittable(carrier_in, "events", MarkAck, Cleared)
    g.connect("carrier_in.events", "playout.acks", types=acks)
    g.connect("playout.events", "model.events", feedback=True)
    g.connect("playout.events", "supervisor.playback", feedback=True)
    g.connect("supervisor.hangup", "carrier_out")
    g.connect("supervisor.hangup", "call_end.agent")
    return g


def realtime_model_for(
    template: Any,
    agent: Any,
    *,
    greeting: str | None,
    sensitivity: Sensitivity,
    audio_format: AudioFormat,
    voice: str | None = None,
    can_transfer: bool = False,
    interruptible: Interruptible = "any",
) -> Actor:
    """A per-call OpenAI Realtime node configured from a template node and an agent: the
    agent's instructions and tools go into the model's session, and the node runs the tools
    itself (``end_call``, and ``transfer_call`` when ``can_transfer``), recording each as
    ``(name, arguments, output)`` in its ``tool_log`` (the last 256). With ``interruptible``
    ``"none"`` or ``"dtmf"`` the service's VAD may not cut the model's replies.

    The node gets ``call_control`` (the tools' :class:`~voicegraph.agent.CallControl`) and
    ``control_after()``: the last utterance the model had started when a call-control tool
    ran, so the supervisor knows which reply is the goodbye."""
    from ..agent import CallControl
    from ..nodes.realtime import OpenAIRealtime
    from ..tools import invoke_by_name

    if not isinstance(template, OpenAIRealtime):
        raise GraphError(f"realtime needs an OpenAIRealtime node, got {type(template).__name__}")
    o = template.options
    control = CallControl(can_transfer=can_transfer)
    tools = agent.tools_for(control) if hasattr(agent, "tools_for") else []
    by_name = {t.name: t for t in tools}

    marks: list[int] = []
    tool_log: deque[tuple[str, str, str]] = deque(maxlen=256)

    async def handler(name: str, arguments: str) -> str:
        before = (control.ending, control.transfer_to)
        output = await invoke_by_name(by_name, name, arguments)
        tool_log.append((name, arguments, output))  # what tests and scenarios report
        if (control.ending, control.transfer_to) != before and not marks:
            marks.append(node.last_utterance)
        return output

    fmt = (
        audio_format
        if audio_format in (AudioFormat("mulaw", 8000), AudioFormat("pcm16", 24000))
        else AudioFormat("pcm16", 24000)
    )
    node = OpenAIRealtime(
        model=o.model,
        api_key=template._key,
        base_url=o.base_url,
        dialect=o.dialect,
        voice=voice or o.voice,
        instructions=getattr(agent, "instructions", None) or o.instructions,
        tools=[t.realtime_schema() for t in tools],
        audio_format=fmt,
        sensitivity=sensitivity,
        greeting=greeting or o.greeting,
        transcription_model=o.transcription_model,
        tool_handler=handler if tools else None,
        tool_timeout=o.tool_timeout,
        reconnect=template.reconnect_policy,
        interrupt_response=o.interrupt_response and interruptible in ("speech", "any"),
        transcription_language=o.transcription_language,
    )
    node.call_control = control  # type: ignore[attr-defined]
    node.control_after = lambda: marks[0] if marks else None  # type: ignore[attr-defined]
    node.tool_log = tool_log  # type: ignore[attr-defined]
    return node
