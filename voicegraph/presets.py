"""The three pipeline modes as graph-building functions.

``managed(...)``, ``cascading(...)`` and ``realtime(...)`` each return a :class:`Graph`: a value
to inspect (``to_mermaid()``), modify (``insert``, ``replace``) and run. ``CallInterface``
uses exactly these through :func:`build_for_session`. Node names are stable, so code and docs
can refer to them: ``carrier_in``, ``decode``, ``vad``, ``stt``, ``turns``, ``barge_in``,
``agent``, ``tts``, ``playout``, ``carrier_out``, ``call_end`` (cascading); ``carrier_in``,
``model``, ``barge_in``, ``supervisor``, ``playout``, ``carrier_out``, ``call_end`` (realtime);
``carrier_in``, ``agent``, ``carrier_out``, ``call_end`` (managed).

Formats avoid needless conversion: Twilio µ-law 8 kHz goes to an STT that takes µ-law as is and
is decoded once for the VAD; Plivo's 16 kHz PCM goes to the VAD and STT untouched. Where a
provider's port pins another format, a converter is inserted on that edge only (visible in the
graph as ``<src>_to_<dst>_convert``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Literal

from .frames import (
    DTMF,
    AgentText,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Cleared,
    Hangup,
    Interrupt,
    MarkAck,
    Say,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    WordTimestamps,
)
from .graph import Graph, GraphError
from .node import Actor, Node
from .nodes.conversation.agent import AgentNode
from .nodes.conversation.barge_in import BargeIn, FalseInterrupt
from .nodes.conversation.call_end import CallEnd
from .nodes.conversation.realtime_supervisor import RealtimeSupervisor
from .nodes.conversation.turn_policy import AdaptiveTurnDetector, TurnPolicy, turn_policy
from .nodes.conversation.turns import TurnDetector
from .session import CallSession

if TYPE_CHECKING:
    from voicegraph.nodes.audio.playout import PlayoutOptions

__all__ = ["build_for_session", "cascading", "managed", "realtime"]

Interruptible = Literal["none", "dtmf", "speech", "any"]
Sensitivity = Literal["low", "medium", "high"]


def _only(node: Node, port: str, *types: type) -> tuple[type, ...]:
    """The subset of ``types`` the node's output ``port`` can emit (carriers differ: Twilio
    has no clear confirmation, Plivo sends ``clearedAudio``)."""
    declared = node.output(port).types
    return tuple(t for t in types if any(issubclass(t, d) or issubclass(d, t) for d in declared))


def _asked(agent: AgentNode) -> bool:
    """Whether the agent's last heard words were a question (a short answer ends the turn)."""
    for m in reversed(agent.history):
        if m.get("role") == "assistant" and m.get("content"):
            return str(m["content"]).rstrip().endswith("?")
    return False


def _fmt(node: Node, port: str, direction: str) -> AudioFormat | None:
    p = node.input(port) if direction == "in" else node.output(port)
    return p.format


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
    from voicegraph.nodes.audio import VAD, MulawDecode, Playout, WebRTCAnalyser

    g = Graph("cascading")
    g.add("carrier_in", carrier_in)
    g.add("stt", stt)
    stt_fmt = _fmt(stt, "audio", "in")
    g.connect(
        "carrier_in.audio",
        "stt.audio",
        policy="drop_oldest",
        capacity=100,
        convert=stt_fmt is not None and stt_fmt != carrier_format,
    )
    policy = turn_policy(sensitivity) if turns is None else turns
    pause = policy.pause if isinstance(policy, TurnPolicy) else None
    vad = vad if vad is not None else VAD(WebRTCAnalyser(), sensitivity=sensitivity, pause=pause)
    g.add("vad", vad)
    if carrier_format.encoding == "mulaw":
        g.add("decode", MulawDecode())
        g.connect("carrier_in.audio", "decode", policy="drop_oldest", capacity=100)
        g.connect("decode", "vad")
    else:
        g.connect("carrier_in.audio", "vad", policy="drop_oldest", capacity=100)
    playout = Playout(carrier_format, lead=playout_lead)
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
                vad_stop_lag=getattr(getattr(vad, "profile", None), "min_silence", 0.5),
            ),
        )
    else:
        g.add("turns", TurnDetector())
    g.add("barge_in", barge_in)
    g.add("agent", agent_node)
    g.add("tts", tts)
    # playout: every option (chunk, marks, pacing); else the defaults with ``playout_lead``
    playout = Playout(carrier_format, playout_lead, options=playout_options)
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
    g.connect(
        "carrier_in.events", "playout.acks", types=_only(carrier_in, "events", MarkAck, Cleared)
    )
    g.connect("playout.events", "agent.playback", feedback=True)
    g.connect("agent.hangup", "carrier_out")
    g.connect("agent.hangup", "call_end.agent")
    return g


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
    :func:`cascading`."""
    from voicegraph.nodes.audio import Playout

    g = Graph("realtime")
    g.add("carrier_in", carrier_in)
    g.add("model", model)
    model_fmt = _fmt(model, "audio", "in")
    g.connect(
        "carrier_in.audio",
        "model.audio",
        policy="drop_oldest",
        capacity=100,
        convert=model_fmt is not None and model_fmt != carrier_format,
    )
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
    g.connect(
        "carrier_in.events", "playout.acks", types=_only(carrier_in, "events", MarkAck, Cleared)
    )
    g.connect("playout.events", "model.events", feedback=True)
    g.connect("playout.events", "supervisor.playback", feedback=True)
    g.connect("supervisor.hangup", "carrier_out")
    g.connect("supervisor.hangup", "call_end.agent")
    return g


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
    from voicegraph.nodes.realtime import OpenAIRealtime

    from .agent import CallControl
    from .tools import invoke_by_name

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
        from .nodes.conversation.amd import with_machine_detection

        with_machine_detection(g, session)
    if session.interface.record is not None:
        from .recording import with_recorder

        with_recorder(g, session)
    return g


def _localized(iface: Any, node: Any) -> Any:
    """``node`` with the line's language and voice applied (GraphError if it cannot take them)."""
    from .localization import LocalizationError, localize

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


def sketch(mode: str, carrier: str = "twilio", providers: str = "cloud") -> Graph:
    """A preset built for looking at: placeholder carrier nodes over an in-memory socket and
    real provider nodes in the carrier's format -- ``providers="cloud"``: Deepgram, Cartesia and
    OpenAI Realtime with a dummy key; ``"offline"``: pocketsphinx and espeak-ng (cascading).
    Nothing connects until a graph runs, so this is safe anywhere; ``voicegraph graph`` and the
    docs' pictures use it."""
    if providers not in ("cloud", "offline"):
        raise GraphError(f"providers must be 'cloud' or 'offline', not {providers!r}")
    from voicegraph.testing.memsocket import socket_pair

    from .agent import Agent

    sock, _ = socket_pair()
    agent = Agent("Sketch.")
    cin: Actor
    cout: Actor
    if mode == "managed":
        if carrier != "twilio":
            raise GraphError("managed mode is Twilio only (ConversationRelay)")
        from voicegraph.transports.twilio.relay import RelaySession, relay_nodes

        cin, cout = relay_nodes(
            sock,
            RelaySession(
                session_id="VX0",
                call_sid="CA0",
                account_sid="AC0",
                from_number="",
                to_number="",
                direction="inbound",
                custom_parameters={},
            ),
        )
        return managed(carrier_in=cin, carrier_out=cout, agent=agent)
    if carrier == "twilio":
        from voicegraph.transports.twilio.media import TwilioStart, twilio_media_nodes

        fmt = AudioFormat("mulaw", 8000)
        cin, cout = twilio_media_nodes(
            sock,
            TwilioStart(
                stream_sid="MZ0",
                call_sid="CA0",
                account_sid="AC0",
                custom_parameters={},
                media_format=fmt,
            ),
        )
    elif carrier == "plivo":
        from voicegraph.transports.plivo.stream import PlivoStart, plivo_stream_nodes

        fmt = AudioFormat("pcm16", 16000)
        cin, cout = plivo_stream_nodes(
            sock,
            PlivoStart(
                call_id="c0", stream_id="s0", account_id="MA0", media_format=fmt, extra_headers={}
            ),
        )
    else:
        raise GraphError(f"unknown carrier {carrier!r}; use 'twilio' or 'plivo'")
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
    if mode == "realtime":
        from voicegraph.nodes.realtime import OpenAIRealtime

        model = realtime_model_for(
            OpenAIRealtime(api_key="sketch"),
            agent,
            greeting=None,
            sensitivity="medium",
            audio_format=fmt,
        )
        return realtime(carrier_in=cin, carrier_out=cout, carrier_format=fmt, model=model)
    raise GraphError(f"unknown preset {mode!r}; use managed, cascading or realtime")
