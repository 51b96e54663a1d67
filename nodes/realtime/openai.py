"""OpenAIRealtime: a speech-to-speech model as one graph node (OpenAI Realtime over WebSocket).

Caller audio goes in (``input_audio_buffer.append``); the model's audio, its transcript, the
caller's transcript, speech-started (for barge-in) and tool calls come out. On barge-in the node
cancels the response and, once playout reports how much of the utterance the caller heard,
truncates the model's item to that point so its memory matches what was heard.

Connection, reconnect with backoff, the bounded send buffer and TTFB metrics come from
:class:`~voicegraph.nodes.providers.base.WebSocketProvider`. After a reconnect the server
starts a new session: the node sends its ``session.update`` again, then replays the
conversation as the caller heard it (:class:`~.history.HeardHistory`: caller transcripts and
the model's replies cut to the acknowledged position) before any buffered audio, and closes
the utterance that was playing.

Next to it: the options and the session they configure (:mod:`.session`), the wire messages
(:mod:`.messages`), the items and their utterances (:mod:`.items`), when a response may be
requested (:mod:`.responses`) and the tool schemas and runner (:mod:`.tools`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import msgspec

from voicegraph.frames import (
    AgentText,
    AudioDone,
    AudioFormat,
    AudioFrame,
    ErrorEvent,
    Frame,
    Interrupt,
    PlayedPosition,
    Say,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequest,
    ToolCallResult,
    Transcript,
)
from voicegraph.node import In, Out

from ..providers.base import WebSocketProvider
from ..providers.errors import ProviderProtocolError
from ..providers.reconnect import ReconnectPolicy
from ..providers.secret import Secret
from . import messages as m
from .history import HeardHistory
from .items import ItemBook
from .responses import ResponseQueue
from .session import (
    BETA_VOICES,
    GA_VOICES,
    MULAW_8K,
    SENSITIVITY,
    OpenAIRealtimeOptions,
    dialect_for,
    session_config,
)
from .tools import ToolHandler, ToolRunner, error_json, tool_schema

__all__ = [
    "BETA_VOICES",
    "GA_VOICES",
    "SENSITIVITY",
    "OpenAIRealtime",
    "OpenAIRealtimeOptions",
    "dialect_for",
]

_EVENTS_OUT = (Transcript, AgentText, SpeechStarted, SpeechStopped, ToolCallRequest, ErrorEvent)


class OpenAIRealtime(WebSocketProvider):
    """Speech-to-speech with OpenAI Realtime.

    Inputs: ``audio`` (AudioFrame in ``audio_format``), ``control`` (Interrupt: cancel the
    response and drop its remaining audio; Say: have the model say a text as it is),
    ``events`` (PlayedPosition: after an interruption, truncate the model's item at the heard
    position; ToolCallResult: return a tool's output and ask the model to go on).

    Outputs: ``audio`` (AudioFrame with one ``utterance_id`` per assistant audio item, then
    AudioDone), ``events`` (Transcript of the caller, AgentText of the model's speech,
    SpeechStarted/SpeechStopped from server VAD, ToolCallRequest when no ``tool_handler`` is
    given, ErrorEvent for errors the service reports).

    ``api_key`` defaults to ``$OPENAI_API_KEY``. ``dialect`` defaults to what the model name
    implies (:func:`dialect_for`). ``tool_handler(name, arguments_json) -> output`` runs tools
    inside the node; without one, tool calls go out as ToolCallRequest and the node waits for
    ToolCallResult.
    """

    provider = "openai-realtime"

    def __init__(
        self,
        model: str = "gpt-realtime",
        api_key: str | Secret | None = None,
        base_url: str = "wss://api.openai.com/v1/realtime",
        *,
        dialect: Literal["ga", "beta"] | None = None,
        voice: str | None = None,
        instructions: str | None = None,
        tools: Sequence[Mapping[str, Any]] = (),
        audio_format: AudioFormat = MULAW_8K,
        sensitivity: Literal["low", "medium", "high"] = "medium",
        greeting: str | None = None,
        transcription_model: str | None = None,
        tool_handler: ToolHandler | None = None,
        tool_timeout: float = 30.0,
        reconnect: ReconnectPolicy | None = None,
        interrupt_response: bool = True,
        transcription_language: str | None = None,
    ) -> None:
        super().__init__(reconnect=reconnect)
        self.options = OpenAIRealtimeOptions(
            model=model,
            base_url=base_url,
            dialect=dialect or dialect_for(model),
            voice=voice,
            instructions=instructions,
            tools=tuple(tool_schema(t) for t in tools),
            audio_format=audio_format,
            sensitivity=sensitivity,
            greeting=greeting,
            transcription_model=transcription_model,
            tool_timeout=tool_timeout,
            interrupt_response=interrupt_response,
            transcription_language=transcription_language,
        )
        self._key = Secret.load(api_key, "OPENAI_API_KEY", self.provider)
        self.inputs = (
            In("audio", AudioFrame, format=audio_format, policy="drop_oldest", capacity=100),
            In("control", Interrupt, Say, required=False),
            In("events", PlayedPosition, ToolCallResult, required=False),
            In("say", Say, required=False),
        )
        self.outputs = (
            Out("audio", AudioFrame, AudioDone, format=audio_format),
            Out("events", *_EVENTS_OUT),
        )
        self._bytes_per_ms = 8 if audio_format == MULAW_8K else 48
        self._session_event = 0
        self._greeted = False
        self._items = ItemBook()
        self._responses = ResponseQueue(max_says=8)
        self._tools = ToolRunner(
            tool_handler, tool_timeout, self.options.max_tool_calls, self._tool_output, self.publish
        )
        self.history = HeardHistory()
        """The conversation as heard, replayed into a new session after a reconnect."""
        self.stale_audio_bytes = 0
        """Audio received for an interrupted item after the interruption (dropped on purpose)."""
        self.bad_messages = 0
        """Messages from the service that could not be decoded (logged and skipped)."""

    def clone(self) -> OpenAIRealtime:
        """A fresh node with the same settings, key, tool handler and reconnect policy."""
        o = self.options
        return OpenAIRealtime(
            model=o.model,
            api_key=self._key,
            base_url=o.base_url,
            dialect=o.dialect,
            voice=o.voice,
            instructions=o.instructions,
            tools=[msgspec.to_builtins(t) for t in o.tools],
            audio_format=o.audio_format,
            sensitivity=o.sensitivity,
            greeting=o.greeting,
            transcription_model=o.transcription_model,
            tool_handler=self.tool_handler,
            tool_timeout=o.tool_timeout,
            reconnect=self.reconnect_policy,
            interrupt_response=o.interrupt_response,
            transcription_language=o.transcription_language,
        )

    @property
    def tool_handler(self) -> ToolHandler | None:
        """The handler that runs tool calls inside the node (``None``: they go out as
        ToolCallRequest)."""
        return self._tools.handler

    @property
    def last_utterance(self) -> int:
        """The id of the last assistant utterance the model started (0: none yet)."""
        return self._items.last_utterance

    def __repr__(self) -> str:
        return f"<OpenAIRealtime {self.name or '(unnamed)'} model={self.options.model!r}>"

    # ---------------------------------------------------------------- connection

    def url(self) -> str:
        return f"{self.options.base_url}?model={quote(self.options.model)}"

    def headers(self) -> Mapping[str, str]:
        h = {"Authorization": f"Bearer {self._key.reveal()}"}
        if self.options.dialect == "beta":
            h["OpenAI-Beta"] = "realtime=v1"
        return h

    def session(self) -> m.BetaSession | m.GASession:
        """The ``session`` object this node sends in ``session.update``."""
        return session_config(self.options)

    async def on_connected(self, reconnect: bool) -> None:
        replay: list[str] = []
        if reconnect:
            await self._close_current()
            self._responses.new_session()
            items = self.history.items(self.options.dialect)
            replay = [m.encode(m.ItemCreate(item=item)) for item in items]
            self.log.warning("new realtime session after reconnect; replaying %d items", len(items))
        self._session_event += 1
        update = m.encode(
            m.SessionUpdate(session=self.session(), event_id=f"vg_session_{self._session_event}")
        )
        # The new session must learn its audio formats (and the conversation so far) before
        # any audio buffered during the outage is appended, so these go to the front of the
        # send buffer, in order.
        for message in reversed([update, *replay]):
            self._buffer.appendleft(message)
        if self.options.greeting and not self._greeted:
            self._greeted = True
            greet = f"Greet the caller by saying exactly: {self.options.greeting}"
            await self._send_request(self._responses.request(greet))

    # ------------------------------------------------------------------- inputs

    async def run(self) -> None:
        await self._tools.serve(super().run)

    async def handle(self, port: str, frame: Frame) -> None:
        if port == "audio":
            assert isinstance(frame, AudioFrame)
            await self.transmit(m.encode(m.InputAudioAppend(audio=frame.data)))
        elif isinstance(frame, Interrupt):
            await self._interrupt(frame.utterance_id)
        elif isinstance(frame, PlayedPosition):
            self.history.played(frame)
            await self._played(frame)
        elif isinstance(frame, ToolCallResult):
            await self._tool_output(frame.call_id, frame.output)
        elif isinstance(frame, Say):
            if not self._responses.say(frame):
                self.log.warning("too many Say requests waiting; the oldest is dropped")
            await self._maybe_respond()

    async def _interrupt(self, utterance_id: int = 0) -> None:
        self._items.interrupt(utterance_id)  # its remaining audio must not reach the caller
        if self._responses.active is not None:
            await self.transmit(m.encode(m.ResponseCancel()), buffer=False)

    async def _played(self, pos: PlayedPosition) -> None:
        truncate = self._items.truncation(pos, self._bytes_per_ms)
        if truncate is not None:
            await self.transmit(m.encode(truncate), buffer=False)

    async def _tool_output(self, call_id: str, output: str) -> None:
        pending = self._responses.calls_pending
        if call_id not in pending:
            self.log.warning("tool result for unknown or stale call %s ignored", call_id)
            return
        pending.discard(call_id)
        item = m.FunctionCallOutput(call_id=call_id, output=output)
        await self.transmit(m.encode(m.ItemCreate(item=item)))
        # Only now: the follow-up response.create must not overtake the output it answers.
        self._responses.outputs_sent = True
        await self._maybe_respond()

    async def _maybe_respond(self) -> None:
        request = self._responses.next_request()
        if request is not None:
            await self._send_request(request)

    async def _send_request(self, request: m.ResponseCreate) -> None:
        self.metrics.request_started("turn")
        await self.transmit(m.encode(request))

    # ----------------------------------------------------------------- outputs

    async def on_message(self, message: str | bytes) -> None:
        try:
            kind, ev = m.decode_server_event(message)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.bad_messages += 1
            self.log.warning("undecodable message from the service skipped: %s", exc)
            return
        if ev is None:
            return
        if isinstance(ev, m.AudioDelta):
            await self._audio(ev)
        elif isinstance(ev, m.TextDeltaEvent):
            item = self._items.item(ev.item_id)
            if not item.interrupted:
                self.history.reply(item.utterance, ev.delta)
                await self.send("events", AgentText(text=ev.delta, utterance_id=item.utterance))
        elif isinstance(ev, m.TextDoneEvent):
            item = self._items.item(ev.item_id)
            await self.send("events", AgentText(text="", utterance_id=item.utterance, last=True))
        elif isinstance(ev, m.AudioDoneEvent):
            item = self._items.item(ev.item_id)
            if not item.interrupted and not item.done:
                item.done = True
                await self.send("audio", AudioDone(utterance_id=item.utterance))
        elif isinstance(ev, m.OutputItemAdded):
            if ev.item.type == "function_call" and ev.item.call_id and ev.item.name:
                self._items.name_call(ev.item.call_id, ev.item.name)
            elif ev.item.type == "message":
                self._items.item(ev.item.id, self._responses.utterance_for(ev.response_id))
        elif isinstance(ev, m.SpeechStartedEvent):
            now = time.monotonic()
            t = ev.audio_start_ms / 1000
            await self.send("events", SpeechStarted(timestamp=t, capture_time=now))
        elif isinstance(ev, m.SpeechStoppedEvent):
            self.metrics.request_started("turn")
            t = ev.audio_end_ms / 1000
            await self.send("events", SpeechStopped(timestamp=t, capture_time=time.monotonic()))
        elif isinstance(ev, m.TranscriptionCompleted):
            text = ev.transcript.strip()
            if text:
                self.history.caller(text)
                await self.send("events", Transcript(text=text, is_final=True, speech_final=True))
        elif isinstance(ev, m.ResponseCreated):
            self._responses.created(ev.response.id)
        elif isinstance(ev, m.ResponseDone):
            await self._response_done(ev.response)
        elif isinstance(ev, m.FunctionCallDone):
            await self._function_call(ev)
        elif isinstance(ev, m.ServerError):
            await self._error(ev.error)
        elif isinstance(ev, m.TranscriptionFailed):
            reason = ev.error.message if ev.error else "unknown"
            self.log.warning("caller transcription failed: %s", reason)

    async def _audio(self, ev: m.AudioDelta) -> None:
        item = self._items.item(ev.item_id)
        if item.interrupted:
            self.stale_audio_bytes += len(ev.delta)
            return
        if item.received == 0:
            self.metrics.first_byte("turn")
        fmt = self.options.audio_format
        frame = AudioFrame(
            data=ev.delta,
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            timestamp=item.received / (self._bytes_per_ms * 1000),
            capture_time=time.monotonic(),
            utterance_id=item.utterance,
        )
        item.received += len(ev.delta)
        await self.send("audio", frame)

    async def _response_done(self, info: m.ResponseInfo) -> None:
        self._responses.done(info.id)
        if info.status == "failed":
            detail = info.status_details.error if info.status_details else None
            message = detail.message if detail else "no details"
            self.log.warning("response %s failed: %s", info.id, message)
            await self.send(
                "events", ErrorEvent(node=self.name, message=f"response failed: {message}")
            )
        await self._maybe_respond()

    async def _function_call(self, ev: m.FunctionCallDone) -> None:
        self._responses.calls_pending.add(ev.call_id)
        name = ev.name or self._items.call_name(ev.call_id)
        if not name:
            self.log.warning(
                "function call %s names no function; answered with an error", ev.call_id
            )
            await self._tool_output(ev.call_id, error_json("the function call named no function"))
        elif self.tool_handler is None:
            request = ToolCallRequest(call_id=ev.call_id, name=name, arguments=ev.arguments)
            await self.send("events", request)
        elif not self._tools.start(ev.call_id, name, ev.arguments, self.log):
            await self._tool_output(ev.call_id, error_json("too many tool calls at once"))

    async def _error(self, err: m.ErrorDetail) -> None:
        if err.event_id and err.event_id.startswith("vg_session_"):
            raise ProviderProtocolError(
                self.provider,
                f"the service rejected the session settings: {err.message} "
                f"(param {err.param}); check the node's options for the {self.options.dialect} "
                "dialect",
            )
        if err.code == "response_cancel_not_active":
            return  # the service's VAD cancelled it first: a normal race on barge-in
        self.log.warning("service error %s: %s", err.code or err.type, err.message)
        await self.send("events", ErrorEvent(node=self.name, message=err.message))

    async def _close_current(self) -> None:
        item = self._items.close_current()
        if item is not None:
            await self.send("audio", AudioDone(utterance_id=item.utterance))
            await self.send("events", AgentText(text="", utterance_id=item.utterance, last=True))
