"""Answering-machine policy for calls placed with ``dial(..., machine_detection=True)``.

The carrier's verdict (:class:`~voicegraph.frames.AnsweredBy`, from its machine-detection
callback) decides what the call does. Until it comes, the callee's audio is held back from the
rest of the graph and nobody speaks. Then:

* a person (or no verdict within ``verdict_timeout``: ``"unknown"``) -- the audio flows, the
  greeting is said (the agent node's in cascading mode; a :class:`~voicegraph.frames.Say` to the
  model in realtime mode) and the conversation goes on; the agent's turns carry the verdict
  (:attr:`Turn.answered_by <voicegraph.agent.Turn.answered_by>`);
* a machine -- wait for the end of its greeting and beep (Twilio's ``machine_end_*`` verdicts
  come after it; otherwise: ``beep_silence`` seconds of quiet after the last loud audio, at most
  ``max_greeting`` seconds), say the line's ``voicemail_message``, wait until the carrier
  acknowledged it as played, and hang up (at once when there is no message).

:func:`with_machine_detection` adds the :class:`AnsweringMachine` node, named ``"answering"``,
to a cascading or realtime preset graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import anyio
import numpy as np

from voicegraph.channel import EndOfInput
from voicegraph.frames import (
    AgentText,
    AnsweredBy,
    AudioFormat,
    AudioFrame,
    Hangup,
    PlayedPosition,
    Say,
)
from voicegraph.node import Actor, In, Out

if TYPE_CHECKING:
    from voicegraph.graph import Graph
    from voicegraph.session import CallSession

__all__ = ["VOICEMAIL_UTTERANCE", "AnsweringMachine", "with_machine_detection"]

VOICEMAIL_UTTERANCE = 2**31 - 3  # an utterance id no agent uses


class AnsweringMachine(Actor):
    """The answering-machine policy (see module docs).

    Inputs: ``audio`` (the callee's audio), ``verdict`` (AnsweredBy, injected by the runtime),
    ``playback`` (PlayedPosition from playout). Outputs: ``audio`` (the callee's audio once a
    person answered), ``agent`` (the verdict, for the agent node), ``say`` (AgentText to the TTS
    when ``speak="text"``, Say to a realtime model when ``speak="say"``), ``hangup``.
    ``greeting`` is said through ``say`` for a person (realtime; in cascading mode the agent
    node greets). ``level``: RMS of 16-bit samples above which audio counts as loud."""

    def __init__(
        self,
        audio_format: AudioFormat,
        *,
        voicemail: str | None,
        speak: Literal["text", "say"] = "text",
        greeting: str | None = None,
        verdict_timeout: float = 35.0,
        beep_silence: float = 1.0,
        max_greeting: float = 30.0,
        level: float = 400.0,
    ) -> None:
        super().__init__()
        self.format = audio_format
        self.voicemail = voicemail
        self.speak = speak
        self.greeting = greeting
        self.verdict_timeout = verdict_timeout
        self.beep_silence = beep_silence
        self.max_greeting = max_greeting
        self.level = level
        self.inputs = (
            In("audio", AudioFrame, format=audio_format, policy="drop_oldest", capacity=100),
            In("verdict", AnsweredBy, required=False),
            In("playback", PlayedPosition, required=False),
        )
        self.outputs = (
            Out("audio", AudioFrame, format=audio_format),
            Out("agent", AnsweredBy),
            Out("say", AgentText, Say),
            Out("hangup", Hangup),
        )
        self.verdict: AnsweredBy | None = None
        self.state: Literal["waiting", "open", "machine", "leaving", "done"] = "waiting"
        self.voicemail_started: float | None = None
        """``anyio.current_time()`` when the message was sent to be spoken."""
        self._deadline: float | None = None
        self._last_loud: float | None = None

    def _loud(self, frame: AudioFrame) -> bool:
        data = frame.data
        if frame.encoding == "mulaw":
            from voicegraph.nodes.audio.g711 import ulaw_to_pcm16

            data = ulaw_to_pcm16(data)
        samples = np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float32)
        return bool(samples.size) and float(np.sqrt(np.mean(samples * samples))) >= self.level

    async def run(self) -> None:
        self._deadline = anyio.current_time() + self.verdict_timeout
        while self.state != "done":
            try:
                item = await self.inbox.receive_until(self._deadline)
            except EndOfInput:
                return
            now = anyio.current_time()
            if item is None:
                self._deadline = None
                if self.state == "waiting":
                    self.log.info("no machine-detection verdict in %gs", self.verdict_timeout)
                    await self._decide(AnsweredBy(result="unknown", detail="timeout"))
                elif self.state == "machine":
                    await self._leave_message()
                elif self.state == "leaving":
                    self.log.warning("voicemail not confirmed as played; hanging up")
                    await self._hang_up()
                continue
            port, frame = item
            if isinstance(frame, AudioFrame):
                if self.state == "open":
                    await self.send("audio", frame)
                    continue
                if self._loud(frame):
                    self._last_loud = now
                if (
                    self.state == "machine"
                    and self._last_loud is not None
                    and now - self._last_loud >= self.beep_silence
                ):
                    await self._leave_message()
            elif isinstance(frame, AnsweredBy):
                if self.verdict is None:
                    await self._decide(frame)
            elif isinstance(frame, PlayedPosition):
                if (
                    self.state == "leaving"
                    and frame.complete
                    and (self.speak == "say" or frame.utterance_id == VOICEMAIL_UTTERANCE)
                ):
                    await self._hang_up()

    async def _decide(self, verdict: AnsweredBy) -> None:
        self.verdict = verdict
        self.publish(verdict)
        self.log.info("answered by %s (%s)", verdict.result, verdict.detail)
        await self.send("agent", verdict)
        if verdict.result != "machine":
            self.state, self._deadline = "open", None
            if self.speak == "say" and self.greeting:
                await self.send("say", Say(text=self.greeting))
            return
        self.state = "machine"
        if verdict.greeting_over or not self.voicemail:
            await self._leave_message()
        else:
            self._deadline = anyio.current_time() + self.max_greeting

    async def _leave_message(self) -> None:
        if not self.voicemail:
            await self._hang_up()
            return
        self.state = "leaving"
        self.voicemail_started = anyio.current_time()
        # bounded: about 2.5 words a second, plus a margin for the carrier's acknowledgement
        self._deadline = self.voicemail_started + len(self.voicemail.split()) / 2.5 + 15.0
        if self.speak == "say":
            await self.send("say", Say(text=self.voicemail))
        else:
            text = AgentText(text=self.voicemail, utterance_id=VOICEMAIL_UTTERANCE, last=True)
            await self.send("say", text)

    async def _hang_up(self) -> None:
        self.state, self._deadline = "done", None
        reason = "voicemail left" if self.voicemail else "answering machine"
        await self.send("hangup", Hangup(reason=reason))


def with_machine_detection(g: Graph, session: CallSession) -> Graph:
    """Add the :class:`AnsweringMachine` node (``"answering"``) to a cascading or realtime
    preset graph: on the callee's audio path, with its verdict to the agent node (cascading)
    or its speech to the model (realtime), playout's acknowledgements back, and its hang-up to
    the carrier and the call's end."""
    assert session.audio_format is not None
    iface = session.interface
    realtime = "model" in g
    if not realtime:
        g["agent"].hold_greeting = True  # type: ignore[attr-defined]
    node = AnsweringMachine(
        session.audio_format,
        voicemail=iface.voicemail_message,
        speak="say" if realtime else "text",
        greeting=iface.greeting if realtime else None,
    )
    g.add("answering", node)
    moving = [e for e in g.edges if (e.src, e.src_port) == ("carrier_in", "audio")]
    g.edges = [e for e in g.edges if e not in moving]
    g.connect("carrier_in.audio", "answering.audio", policy="drop_oldest", capacity=100)
    for e in moving:
        g.connect(
            "answering.audio",
            f"{e.dst}.{e.dst_port}",
            policy=e.policy,
            capacity=e.capacity,
            types=e.types,
            feedback=e.feedback,
        )
    if realtime:
        g.connect("answering.say", "model.control", types=(Say,))
    else:
        g.connect("answering.agent", "agent.control")
        g.connect("answering.say", "tts.text", types=(AgentText,))
    g.connect("playout.events", "answering.playback", types=(PlayedPosition,), feedback=True)
    g.connect("answering.hangup", "carrier_out")
    g.connect("answering.hangup", "call_end.agent")
    return g
