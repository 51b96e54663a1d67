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
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import anyio
import msgspec

from voicegraph.events import ToolEvent
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

from ..providers.base import ProviderProtocolError, ReconnectPolicy, Secret, WebSocketProvider
from . import messages as m
from .history import HeardHistory

__all__ = ["OpenAIRealtime", "OpenAIRealtimeOptions", "SENSITIVITY"]

ToolHandler = Callable[[str, str], Awaitable[str]]

MULAW_8K = AudioFormat("mulaw", 8000)
PCM_24K = AudioFormat("pcm16", 24000)

BETA_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")
GA_VOICES = (*BETA_VOICES, "marin", "cedar")

SENSITIVITY: Mapping[str, tuple[float, int, int]] = {
    # level: (threshold, prefix_padding_ms, silence_duration_ms) of server_vad.
    # "low" needs louder speech to interrupt (noisy lines); "high" reacts to quiet speech and
    # shorter pauses end the turn sooner. "medium" is the vendor's default.
    "low": (0.7, 300, 700),
    "medium": (0.5, 300, 500),
    "high": (0.3, 200, 400),
}

_KEEP_ITEMS = 64  # item -> utterance bookkeeping kept for truncation, oldest forgotten first
_MAX_SAYS = 8  # Say requests waiting for the current response to end


class OpenAIRealtimeOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of :class:`OpenAIRealtime` (everything but the key and the tool handler)."""

    model: str = "gpt-realtime"
    base_url: str = "wss://api.openai.com/v1/realtime"
    dialect: Literal["ga", "beta"] = "ga"
    """``beta`` sends the ``OpenAI-Beta: realtime=v1`` header and flat session fields."""
    voice: str | None = None
    """``None``: the service's default voice."""
    instructions: str | None = None
    tools: tuple[m.Tool, ...] = ()
    audio_format: AudioFormat = MULAW_8K
    """µ-law 8 kHz (Twilio pass-through) or PCM16 24 kHz, both ways."""
    sensitivity: Literal["low", "medium", "high"] = "medium"
    """Barge-in sensitivity, mapped to server VAD settings by :data:`SENSITIVITY`."""
    interrupt_response: bool = True
    """Whether the service's VAD may cut the model's reply when the caller speaks (``False``
    for ``interruptible="none"`` or ``"dtmf"``: the caller's speech then never cuts it)."""
    greeting: str | None = None
    """Said first, on the first connection: the model is asked to say it via response.create."""
    transcription_model: str | None = None
    """Caller transcription model (``None``: whisper-1 on beta, gpt-4o-mini-transcribe on GA)."""
    transcription_language: str | None = None
    """ISO-639-1 language of the caller (``"es"``) for transcription (``None``: detected);
    ``CallInterface(language=...)`` sets it."""
    tool_timeout: float = 30.0
    max_tool_calls: int = 8
    """Tool calls run at once by the node's own handler; more are answered with an error."""


def dialect_for(model: str) -> Literal["ga", "beta"]:
    """The dialect a model speaks: ``*-realtime-preview*`` models are beta, others GA."""
    return "beta" if "realtime-preview" in model else "ga"


def _tool(spec: Mapping[str, Any]) -> m.Tool:
    # Accept both the Realtime (flat) and chat-completions (nested "function") shapes.
    fn = spec.get("function", spec)
    if not isinstance(fn, Mapping) or not fn.get("name"):
        raise ValueError(
            "each tool must be an OpenAI function schema with a name, e.g. "
            "{'type': 'function', 'name': 'lookup', 'parameters': {...}}"
        )
    return m.Tool(
        name=str(fn["name"]),
        description=str(fn.get("description") or ""),
        parameters=dict(fn.get("parameters") or {"type": "object", "properties": {}}),
    )


class _Item:
    """An assistant audio item: its utterance and how much audio we received for it."""

    __slots__ = ("done", "interrupted", "received", "truncated", "utterance")

    def __init__(self, utterance: int) -> None:
        self.utterance = utterance
        self.received = 0
        self.interrupted = False
        self.truncated = False
        self.done = False


class OpenAIRealtime(WebSocketProvider):
    """Speech-to-speech with OpenAI Realtime.

    Inputs: ``audio`` (AudioFrame in ``audio_format``), ``control`` (Interrupt: cancel the
    response and drop its remaining audio; Say: have the model say a text as it is),
    ``events`` (PlayedPosition: after an
    interruption, truncate the model's item at the heard position; ToolCallResult: return a
    tool's output and ask the model to go on).

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
        if not isinstance(model, str) or "realtime" not in model:
            raise ValueError(
                f"model={model!r} is not a realtime model; use a speech-to-speech model such as "
                "'gpt-realtime', 'gpt-realtime-mini' or 'gpt-4o-realtime-preview'"
            )
        dialect = dialect or dialect_for(model)
        if dialect not in ("ga", "beta"):
            raise ValueError(f"dialect must be 'ga' or 'beta', got {dialect!r}")
        if audio_format not in (MULAW_8K, PCM_24K):
            raise ValueError(
                f"OpenAI Realtime takes mulaw/8000 or pcm16/24000 audio, not {audio_format}; "
                "connect the node with convert=True or put a resampler/codec in front"
            )
        if sensitivity not in SENSITIVITY:
            raise ValueError(
                f"sensitivity must be one of {sorted(SENSITIVITY)}, got {sensitivity!r}"
            )
        voices = GA_VOICES if dialect == "ga" else BETA_VOICES
        if voice is not None and voice not in voices:
            raise ValueError(f"voice {voice!r} is not a {dialect} voice; use one of {voices}")
        self.options = OpenAIRealtimeOptions(
            model=model,
            base_url=base_url,
            dialect=dialect,
            voice=voice,
            instructions=instructions,
            tools=tuple(_tool(t) for t in tools),
            audio_format=audio_format,
            sensitivity=sensitivity,
            greeting=greeting,
            transcription_model=transcription_model,
            tool_timeout=tool_timeout,
            interrupt_response=interrupt_response,
            transcription_language=transcription_language,
        )
        self._key = Secret.load(api_key, "OPENAI_API_KEY", self.provider)
        self.tool_handler = tool_handler
        self.inputs = (
            In("audio", AudioFrame, format=audio_format, policy="drop_oldest", capacity=100),
            In("control", Interrupt, Say, required=False),
            In("events", PlayedPosition, ToolCallResult, required=False),
            In("say", Say, required=False),
        )
        self.outputs = (
            Out("audio", AudioFrame, AudioDone, format=audio_format),
            Out(
                "events",
                Transcript,
                AgentText,
                SpeechStarted,
                SpeechStopped,
                ToolCallRequest,
                ErrorEvent,
            ),
        )
        self._bytes_per_ms = 8 if audio_format == MULAW_8K else 48
        self._session_event = 0
        self._greeted = False
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._next_utterance = 0
        self._current: _Item | None = None
        self._response_id: str | None = None
        self._response_requested = False
        self._calls_pending: set[str] = set()
        self._outputs_sent = False
        self._tool_tasks = 0
        self._says: deque[Say] = deque()
        self._call_names: OrderedDict[str, str] = OrderedDict()
        self.history = HeardHistory()
        """The conversation as heard, replayed into a new session after a reconnect."""
        self._say_uid: int | None = None
        self._say_response: tuple[str, int] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
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
    def last_utterance(self) -> int:
        """The id of the last assistant utterance the model started (0: none yet)."""
        return self._next_utterance

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
        o = self.options
        threshold, padding, silence = SENSITIVITY[o.sensitivity]
        vad = m.TurnDetection(
            threshold=threshold,
            prefix_padding_ms=padding,
            silence_duration_ms=silence,
            interrupt_response=o.interrupt_response,
        )
        tools = list(o.tools) or None
        choice = "auto" if tools else None
        if o.dialect == "beta":
            fmt = "g711_ulaw" if o.audio_format == MULAW_8K else "pcm16"
            return m.BetaSession(
                modalities=["audio", "text"],
                input_audio_format=fmt,
                output_audio_format=fmt,
                turn_detection=vad,
                instructions=o.instructions,
                voice=o.voice,
                input_audio_transcription=m.Transcription(
                    o.transcription_model or "whisper-1", o.transcription_language
                ),
                tools=tools,
                tool_choice=choice,
            )
        gfmt = (
            m.GAFormat("audio/pcmu")
            if o.audio_format == MULAW_8K
            else m.GAFormat("audio/pcm", 24000)
        )
        return m.GASession(
            type="realtime",
            output_modalities=["audio"],
            audio=m.GAAudio(
                input=m.GAInput(
                    format=gfmt,
                    turn_detection=vad,
                    transcription=m.Transcription(
                        o.transcription_model or "gpt-4o-mini-transcribe",
                        o.transcription_language,
                    ),
                ),
                output=m.GAOutput(format=gfmt, voice=o.voice),
            ),
            instructions=o.instructions,
            tools=tools,
            tool_choice=choice,
        )

    async def on_connected(self, reconnect: bool) -> None:
        replay: list[str] = []
        if reconnect:
            await self._close_current()
            self._response_id = None
            self._response_requested = False
            self._calls_pending.clear()
            self._outputs_sent = False
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
            await self._request_response(
                f"Greet the caller by saying exactly: {self.options.greeting}"
            )

    # ------------------------------------------------------------------- inputs

    async def run(self) -> None:
        # Tool handler tasks live in this group; the provider's own error is re-raised bare
        # (not as an exception group) so the call reports e.g. ProviderUnavailable itself.
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await super().run()
            except Exception as exc:
                error = exc
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error

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
            if len(self._says) >= _MAX_SAYS:
                self.log.warning("too many Say requests waiting; the oldest is dropped")
                self._says.popleft()
            self._says.append(frame)
            await self._maybe_respond()

    async def _interrupt(self, utterance_id: int = 0) -> None:
        item = self._current if not utterance_id else self._by_utterance(utterance_id)
        if item is not None:
            # Its remaining audio must not reach the caller (stale audio after barge-in).
            item.interrupted = True
        if self._response_id is not None:
            await self.transmit(m.encode(m.ResponseCancel()), buffer=False)

    async def _played(self, pos: PlayedPosition) -> None:
        if pos.complete:
            return
        item_id = self._item_of(pos.utterance_id)
        if item_id is None:
            return
        item = self._items[item_id]
        item.interrupted = True
        if item.truncated:
            return
        item.truncated = True
        produced_ms = item.received // self._bytes_per_ms
        if produced_ms == 0:
            # Nothing of it was produced: the service refuses to truncate an item without audio.
            return
        # Clamp to what the service produced: it rejects positions past the item's audio.
        end_ms = min(int(pos.played * 1000), produced_ms)
        event = m.ItemTruncate(item_id=item_id, content_index=0, audio_end_ms=end_ms)
        await self.transmit(m.encode(event), buffer=False)

    async def _tool_output(self, call_id: str, output: str) -> None:
        if call_id not in self._calls_pending:
            self.log.warning("tool result for unknown or stale call %s ignored", call_id)
            return
        self._calls_pending.discard(call_id)
        item = m.FunctionCallOutput(call_id=call_id, output=output)
        await self.transmit(m.encode(m.ItemCreate(item=item)))
        self._outputs_sent = True
        await self._maybe_respond()

    async def _maybe_respond(self) -> None:
        # One response.create once every tool call of the response has its output and the
        # response itself is over (a response.create during a response is an error). Say
        # requests wait their turn the same way, after any tool follow-up.
        if self._calls_pending or self._response_id is not None or self._response_requested:
            return
        if self._outputs_sent:
            self._outputs_sent = False
            await self._request_response(None)
        elif self._says:
            say = self._says.popleft()
            self._say_uid = say.utterance_id or None
            await self._request_response(f"Say exactly this, nothing else: {say.text}")

    async def _request_response(self, instructions: str | None) -> None:
        params = m.ResponseParams(instructions=instructions) if instructions else None
        self._response_requested = True
        self.metrics.request_started("turn")
        await self.transmit(m.encode(m.ResponseCreate(response=params)))

    async def _run_tool(self, call_id: str, name: str, arguments: str) -> None:
        assert self.tool_handler is not None
        self._tool_tasks += 1
        t0 = time.monotonic()
        try:
            with anyio.fail_after(self.options.tool_timeout):
                output = await self.tool_handler(name, arguments)
            if not isinstance(output, str):
                raise TypeError(f"tool handler returned {type(output).__name__}, not str")
        except TimeoutError:
            self.log.warning("tool %s timed out after %ss", name, self.options.tool_timeout)
            output = _error_json(f"tool {name} timed out")
        except Exception as exc:
            self.log.warning("tool %s failed: %s: %s", name, type(exc).__name__, exc)
            output = _error_json(f"tool {name} failed: {type(exc).__name__}")
        finally:
            self._tool_tasks -= 1
        ok = not output.startswith('{"error"')
        self.publish(ToolEvent(name=name, start=t0, end=time.monotonic(), ok=ok))
        await self._tool_output(call_id, output)

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
            item = self._item(ev.item_id)
            if not item.interrupted:
                self.history.reply(item.utterance, ev.delta)
                await self.send("events", AgentText(text=ev.delta, utterance_id=item.utterance))
        elif isinstance(ev, m.TextDoneEvent):
            item = self._item(ev.item_id)
            await self.send("events", AgentText(text="", utterance_id=item.utterance, last=True))
        elif isinstance(ev, m.AudioDoneEvent):
            item = self._item(ev.item_id)
            if not item.interrupted and not item.done:
                item.done = True
                await self.send("audio", AudioDone(utterance_id=item.utterance))
        elif isinstance(ev, m.OutputItemAdded):
            if ev.item.type == "function_call" and ev.item.call_id and ev.item.name:
                self._call_names[ev.item.call_id] = ev.item.name
                while len(self._call_names) > _KEEP_ITEMS:
                    self._call_names.popitem(last=False)
            elif ev.item.type == "message":
                forced = None
                if self._say_response is not None and ev.response_id == self._say_response[0]:
                    forced, self._say_response = self._say_response[1], None
                self._item(ev.item.id, forced)
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
            self._response_id = ev.response.id
            if self._response_requested and self._say_uid is not None:
                # the response we asked for with a Say: its message takes the Say's utterance id
                self._say_response, self._say_uid = (ev.response.id, self._say_uid), None
            self._response_requested = False
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
        item = self._item(ev.item_id)
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
        if self._response_id in (None, info.id):
            self._response_id = None
        self._response_requested = False
        if info.status == "failed":
            detail = info.status_details.error if info.status_details else None
            message = detail.message if detail else "no details"
            self.log.warning("response %s failed: %s", info.id, message)
            await self.send(
                "events", ErrorEvent(node=self.name, message=f"response failed: {message}")
            )
        await self._maybe_respond()

    async def _function_call(self, ev: m.FunctionCallDone) -> None:
        self._calls_pending.add(ev.call_id)
        name = ev.name or self._call_names.pop(ev.call_id, "")
        if not name:
            self.log.warning(
                "function call %s names no function; answered with an error", ev.call_id
            )
            await self._tool_output(ev.call_id, _error_json("the function call named no function"))
        elif self.tool_handler is None:
            request = ToolCallRequest(call_id=ev.call_id, name=name, arguments=ev.arguments)
            await self.send("events", request)
        elif self._tool_tasks >= self.options.max_tool_calls or self._tg is None:
            await self._tool_output(ev.call_id, _error_json("too many tool calls at once"))
        else:
            self._tg.start_soon(self._run_tool, ev.call_id, name, ev.arguments)

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

    # ------------------------------------------------------------- bookkeeping

    def _item(self, item_id: str, utterance: int | None = None) -> _Item:
        item = self._items.get(item_id)
        if item is None:
            if utterance is None:
                self._next_utterance += 1
                utterance = self._next_utterance
            item = self._items[item_id] = _Item(utterance)
            while len(self._items) > _KEEP_ITEMS:
                self._items.popitem(last=False)
            self._current = item
        return item

    def _item_of(self, utterance_id: int) -> str | None:
        for item_id, item in reversed(self._items.items()):
            if item.utterance == utterance_id:
                return item_id
        return None

    def _by_utterance(self, utterance_id: int) -> _Item | None:
        item_id = self._item_of(utterance_id)
        return self._items[item_id] if item_id is not None else None

    async def _close_current(self) -> None:
        item = self._current
        if item is not None and not item.interrupted and not item.done:
            item.done = True
            await self.send("audio", AudioDone(utterance_id=item.utterance))
            await self.send("events", AgentText(text="", utterance_id=item.utterance, last=True))


def _error_json(message: str) -> str:
    return msgspec.json.encode({"error": message}).decode()
