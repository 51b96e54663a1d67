"""FakeOpenAIRealtime: the OpenAI Realtime WebSocket protocol (beta and GA) on loopback.

It checks every client event against the protocol (strict per-dialect schemas: a beta field in
a GA session fails the way the service fails), runs an energy VAD over the appended audio,
"transcribes" each caller utterance from a script, and answers with scripted responses: real
audio of the right length in the session's format (a tone, ``ms_per_char`` per character of
the reply) with transcript deltas, or a function call. It handles ``response.cancel``,
``conversation.item.truncate`` (with the service's errors), ``function_call_output`` and
``response.create``. Latency and faults (refused auth, service down, close mid-response, stall,
malformed message) are configurable per connection.

    async with FakeOpenAIRealtime(transcripts=["hi"], replies=["Hello!"]) as fake:
        node = OpenAIRealtime(api_key=fake.api_key, base_url=fake.url)
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, Union

import anyio
import msgspec
import numpy as np

from ..wsio import SocketClosed
from .fakeserver import FakeServer, WebSocketPeer

__all__ = ["FakeOpenAIRealtime", "RealtimeConnection", "RealtimeFault", "RealtimeReply"]


class RealtimeReply(msgspec.Struct, frozen=True):
    """A scripted response: spoken ``text``, or a function call (``tool`` with JSON
    ``arguments``)."""

    text: str = ""
    tool: str | None = None
    arguments: str = "{}"


Reply = str | RealtimeReply | Callable[[str], "str | RealtimeReply"]


class RealtimeFault(msgspec.Struct, frozen=True):
    """A fault for one connection (see :class:`FakeOpenAIRealtime` ``faults``).

    ``refuse_auth``: handshake refused with 401. ``down``: handshake refused with 503.
    ``close_mid_response``: the socket closes (1011) after the first audio delta.
    ``stall``: events are read but never answered. ``malformed``: a non-JSON message follows
    ``session.created``."""

    kind: Literal["refuse_auth", "down", "close_mid_response", "stall", "malformed"]


# ------------------------------------------------ strict client schemas (per dialect)


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class _TurnDetection(_Strict):
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    idle_timeout_ms: int | None = None


class _Transcription(_Strict):
    model: Literal["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]
    language: str | None = None
    prompt: str | None = None


class _Tool(_Strict):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


_BetaVoice = Literal["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse"]
_GAVoice = Literal[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"
]
_ToolChoice = Literal["auto", "none", "required"]


class _BetaSession(_Strict):
    modalities: list[Literal["audio", "text"]] | None = None
    instructions: str | None = None
    voice: _BetaVoice | None = None
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    output_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    input_audio_transcription: _Transcription | None = None
    turn_detection: _TurnDetection | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    temperature: float | None = None
    max_response_output_tokens: int | Literal["inf"] | None = None


class _GAFormat(_Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: Literal[24000] | None = None


class _GAInput(_Strict):
    format: _GAFormat | None = None
    transcription: _Transcription | None = None
    turn_detection: _TurnDetection | None = None
    noise_reduction: dict[str, str] | None = None


class _GAOutput(_Strict):
    format: _GAFormat | None = None
    voice: _GAVoice | None = None
    speed: float | None = None


class _GAAudio(_Strict):
    input: _GAInput | None = None
    output: _GAOutput | None = None


class _GASession(_Strict):
    type: Literal["realtime", "transcription"]
    output_modalities: list[Literal["audio", "text"]] | None = None
    instructions: str | None = None
    audio: _GAAudio | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    max_output_tokens: int | Literal["inf"] | None = None


class _Event(_Strict, tag_field="type", kw_only=True):
    event_id: str | None = None


class _BetaUpdate(_Event, tag="session.update"):
    session: _BetaSession


class _GAUpdate(_Event, tag="session.update"):
    session: _GASession


class _Append(_Event, tag="input_audio_buffer.append"):
    audio: bytes


class _Commit(_Event, tag="input_audio_buffer.commit"):
    pass


class _Clear(_Event, tag="input_audio_buffer.clear"):
    pass


class _FunctionOutput(_Strict, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str


class _TextPart(_Strict):
    type: Literal["input_text", "output_text", "text"]
    text: str


class _Message(_Strict, tag_field="type", tag="message"):
    role: Literal["user", "assistant", "system"]
    content: list[_TextPart]


class _ItemCreate(_Event, tag="conversation.item.create"):
    item: _FunctionOutput | _Message
    previous_item_id: str | None = None


class _ResponseParams(_Strict):
    instructions: str | None = None
    conversation: Literal["auto", "none"] | None = None
    metadata: dict[str, str] | None = None


class _ResponseCreate(_Event, tag="response.create"):
    response: _ResponseParams | None = None


class _ResponseCancel(_Event, tag="response.cancel"):
    response_id: str | None = None


class _Truncate(_Event, tag="conversation.item.truncate"):
    item_id: str
    content_index: int
    audio_end_ms: int


_COMMON = (_Append, _Commit, _Clear, _ItemCreate, _ResponseCreate, _ResponseCancel, _Truncate)
_DECODERS = {
    "beta": msgspec.json.Decoder(Union[(_BetaUpdate, *_COMMON)]),
    "ga": msgspec.json.Decoder(Union[(_GAUpdate, *_COMMON)]),
}
_PATH = re.compile(r"at `\$\.?(.*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


class _ClientError(Exception):
    def __init__(self, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def _as_client_error(exc: msgspec.MsgspecError) -> _ClientError:
    text = str(exc)
    path = _PATH.search(text)
    where = path.group(1) if path else ""
    unknown = _UNKNOWN.search(text)
    if unknown:
        param = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
        return _ClientError(f"Unknown parameter: '{param}'.", "unknown_parameter", param)
    if "Invalid enum value" in text or "Expected `" in text or "Invalid value" in text:
        return _ClientError(f"Invalid value for '{where}': {text}", "invalid_value", where)
    if "missing required field" in text:
        return _ClientError(f"Missing required parameter: {text}", "missing_required_parameter")
    return _ClientError(f"Invalid request: {text}", "invalid_request")


# ----------------------------------------------------------------- connection state


class RealtimeConnection:
    """What the fake saw and did on one connection (inspect it in tests)."""

    def __init__(self, dialect: str, model: str) -> None:
        self.dialect = dialect
        self.model = model
        self.events: list[str] = []
        """Types of client events received, in order."""
        self.sessions: list[dict[str, Any]] = []
        """The ``session`` object of each accepted ``session.update``."""
        self.appended_bytes = 0
        self.truncations: list[tuple[str, int]] = []
        self.function_outputs: list[tuple[str, str]] = []
        self.messages: list[tuple[str, str]] = []
        """``(role, text)`` of each message item the client created (a replayed history)."""
        self.response_creates: list[dict[str, Any] | None] = []
        self.cancels = 0
        self.errors: list[str] = []
        """Messages of the ``error`` events sent to the client."""
        self.format = "pcm16"


_MULAW_EXP = np.array([0, 132, 396, 924, 1980, 4092, 8316, 16764], dtype=np.int32)


def _mulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8)
    sign, exp, mant = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    mag = _MULAW_EXP[exp] + (mant.astype(np.int32) << (exp.astype(np.int32) + 3))
    pcm: np.ndarray = np.where(sign != 0, -mag, mag).astype(np.int32)
    return pcm


def _mulaw_encode(pcm: np.ndarray) -> bytes:
    x = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.abs(x) + 132
    exp = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mant = (mag >> (exp + 3)) & 0x0F
    encoded: bytes = (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8).tobytes()
    return encoded


def _tone(ms: int, fmt: str) -> bytes:
    rate = 8000 if fmt != "pcm16" else 24000
    t = np.arange(rate * ms // 1000) / rate
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return pcm.tobytes() if fmt == "pcm16" else _mulaw_encode(pcm)


def _pcm(data: bytes, fmt: str) -> np.ndarray:
    if fmt == "pcm16":
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int32)
    return _mulaw_decode(data)


_NAMES = {
    "beta": {
        "audio_delta": "response.audio.delta",
        "audio_done": "response.audio.done",
        "transcript_delta": "response.audio_transcript.delta",
        "transcript_done": "response.audio_transcript.done",
        "audio_content": "audio",
    },
    "ga": {
        "audio_delta": "response.output_audio.delta",
        "audio_done": "response.output_audio.done",
        "transcript_delta": "response.output_audio_transcript.delta",
        "transcript_done": "response.output_audio_transcript.done",
        "audio_content": "output_audio",
    },
}


class _Item:
    __slots__ = ("audio_ms", "call_id", "role", "type")

    def __init__(self, type: str, role: str | None = None, call_id: str | None = None) -> None:
        self.type, self.role, self.call_id = type, role, call_id
        self.audio_ms = 0


class _Session:
    """One connection's protocol state machine."""

    def __init__(
        self, fake: FakeOpenAIRealtime, ws: WebSocketPeer, conn: RealtimeConnection, fault: Any
    ) -> None:
        self.fake, self.ws, self.conn, self.fault = fake, ws, conn, fault
        self.names = _NAMES[conn.dialect]
        self.decoder = _DECODERS[conn.dialect]
        self.vad = _TurnDetection()
        self.vad_on = True
        self.audio_ms = 0.0
        self.speaking = False
        self.silence_ms = 0.0
        self.user_item = ""
        self.speech_start_ms = 0
        self.last_heard = ""
        self.items: dict[str, _Item] = {}
        self.response_id: str | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancel_reason = ""
        self.ids = fake._ids
        self.tg: anyio.abc.TaskGroup | None = None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids)}"

    async def emit(self, type: str, **fields: Any) -> None:
        body = {"type": type, "event_id": self.new_id("event"), **fields}
        await self.ws.send(msgspec.json.encode(body).decode())

    async def error(self, err: _ClientError, event_id: str | None) -> None:
        self.conn.errors.append(err.message)
        await self.emit(
            "error",
            error={
                "type": "invalid_request_error",
                "code": err.code,
                "message": err.message,
                "param": err.param,
                "event_id": event_id,
            },
        )

    async def run(self) -> None:
        if self.conn.dialect == "ga":
            created = {"type": "realtime", "model": self.conn.model}
        else:
            created = {"id": self.new_id("sess"), "model": self.conn.model}
        await self.emit("session.created", session=created)
        if self.fault == "malformed":
            await self.ws.send('{"type": "session.updated", "session": ')
        async with anyio.create_task_group() as tg:
            self.tg = tg
            try:
                while True:
                    raw = await self.ws.receive()
                    await self.on_message(raw)
            except SocketClosed:
                pass  # the client left, or a fault closed the socket
            finally:
                tg.cancel_scope.cancel()

    async def on_message(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self.conn.events.append("<binary>")
            await self.error(_ClientError("Binary messages are not supported."), None)
            return
        try:
            ev = self.decoder.decode(raw)
        except msgspec.ValidationError as exc:
            self.conn.events.append("<invalid>")
            await self.error(_as_client_error(exc), None)
            return
        except msgspec.DecodeError:
            self.conn.events.append("<invalid json>")
            await self.error(_ClientError("Invalid JSON in client event.", "invalid_json"), None)
            return
        self.conn.events.append(type(ev).__struct_config__.tag)
        if self.fault == "stall":
            return
        try:
            await self.dispatch(ev)
        except _ClientError as err:
            await self.error(err, ev.event_id)
        finally:
            self.fake._notify()

    async def dispatch(self, ev: _Event) -> None:
        if isinstance(ev, _Append):
            await self.append(ev.audio)
        elif isinstance(ev, (_BetaUpdate, _GAUpdate)):
            await self.update(ev)
        elif isinstance(ev, _ResponseCreate):
            if self.response_id is not None:
                raise _ClientError(
                    f"Conversation already has an active response in progress: "
                    f"{self.response_id}. Wait until the response is finished before creating "
                    "a new one.",
                    "conversation_already_has_active_response",
                )
            params = msgspec.to_builtins(ev.response) if ev.response else None
            self.conn.response_creates.append(params)
            instructions = ev.response.instructions if ev.response else None
            if not any(
                i.role in ("user", "assistant") or i.type == "function_call_output"
                for i in self.items.values()
            ):
                # the model speaks first (a greeting): answered apart from the scripted replies
                await self.start_response("", self.fake._greeting_reply(instructions or ""))
                return
            await self.start_response(instructions or self.last_heard)
        elif isinstance(ev, _ResponseCancel):
            if self.response_id is None or ev.response_id not in (None, self.response_id):
                raise _ClientError(
                    "Cancellation failed: no active response found", "response_cancel_not_active"
                )
            self.conn.cancels += 1
            self.cancel("client_cancelled")
        elif isinstance(ev, _Truncate):
            await self.truncate(ev)
        elif isinstance(ev, _ItemCreate) and isinstance(ev.item, _Message):
            await self.message(ev.item)
        elif isinstance(ev, _ItemCreate) and isinstance(ev.item, _FunctionOutput):
            call_id = ev.item.call_id
            if not any(i.call_id == call_id for i in self.items.values()):
                raise _ClientError(
                    f"Tool call ID '{call_id}' not found in conversation.",
                    "invalid_value",
                    "item.call_id",
                )
            self.conn.function_outputs.append((call_id, ev.item.output))
            item_id = self.new_id("item")
            self.items[item_id] = _Item("function_call_output", call_id=call_id)
            await self.emit(
                "conversation.item.created",
                previous_item_id=None,
                item={
                    "id": item_id,
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": ev.item.output,
                },
            )
        elif isinstance(ev, _Commit):
            if self.audio_ms < 100:
                raise _ClientError(
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    f"100ms of audio, but buffer only has {self.audio_ms:.2f}ms of audio.",
                    "input_audio_buffer_commit_empty",
                )
            await self.emit("input_audio_buffer.committed", item_id=self.new_id("item"))
        elif isinstance(ev, _Clear):
            await self.emit("input_audio_buffer.cleared")

    async def message(self, item: _Message) -> None:
        """A message item the client added (e.g. a conversation replayed after a reconnect)."""
        part = "output_text" if self.conn.dialect == "ga" else "text"
        allowed = {"user": "input_text", "system": "input_text", "assistant": part}[item.role]
        if any(p.type != allowed for p in item.content):
            raise _ClientError(
                f"Invalid value for 'item.content[0].type': a {item.role} message in the "
                f"{self.conn.dialect} dialect takes '{allowed}' parts.",
                "invalid_value",
                "item.content",
            )
        text = "".join(p.text for p in item.content)
        self.conn.messages.append((item.role, text))
        item_id = self.new_id("item")
        self.items[item_id] = _Item("message", item.role)
        await self.emit(
            "conversation.item.created",
            previous_item_id=None,
            item={
                "id": item_id,
                "type": "message",
                "role": item.role,
                "status": "completed",
                "content": [{"type": p.type, "text": p.text} for p in item.content],
            },
        )

    async def update(self, ev: _BetaUpdate | _GAUpdate) -> None:
        session = ev.session
        fmt: str | None
        if isinstance(session, _BetaSession):
            fmt, vad = session.input_audio_format, session.turn_detection
        else:
            audio_in = session.audio.input if session.audio else None
            f = audio_in.format if audio_in else None
            fmt = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}.get(
                f.type if f else ""
            )
            vad = audio_in.turn_detection if audio_in else None
        if fmt is not None:
            self.conn.format = fmt
        if vad is not None:
            self.vad = vad
        raw = msgspec.to_builtins(session)
        for td in _turn_detections(raw):
            td.setdefault("type", "server_vad")  # the echo states the default the client left out
        self.conn.sessions.append(raw)
        await self.emit("session.updated", session=raw)

    async def append(self, audio: bytes) -> None:
        self.conn.appended_bytes += len(audio)
        pcm = _pcm(audio, self.conn.format)
        rate = 24000 if self.conn.format == "pcm16" else 8000
        ms = 1000 * len(pcm) / rate
        loud = len(pcm) > 0 and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > (
            2000 * self.vad.threshold
        )
        if not self.vad_on:
            self.audio_ms += ms
            return
        if loud:
            self.silence_ms = 0.0
            if not self.speaking:
                self.speaking = True
                self.user_item = self.new_id("item")
                start = max(0, int(self.audio_ms) - self.vad.prefix_padding_ms)
                self.speech_start_ms = start
                await self.emit(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=start,
                    item_id=self.user_item,
                )
                if self.response_id is not None and self.vad.interrupt_response:
                    self.cancel("turn_detected")
        elif self.speaking:
            self.silence_ms += ms
            if self.silence_ms >= self.vad.silence_duration_ms:
                self.speaking = False
                await self.end_of_speech(int(self.audio_ms + ms))
        self.audio_ms += ms

    async def end_of_speech(self, end_ms: int) -> None:
        item_id = self.user_item
        await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=end_ms, item_id=item_id)
        await self.emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=None)
        self.items[item_id] = _Item("message", "user")
        await self.emit(
            "conversation.item.created",
            previous_item_id=None,
            item={
                "id": item_id,
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}],
            },
        )
        heard = self.fake._next_transcript()
        if heard is None:
            await self.emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={
                    "type": "transcription_error",
                    "code": "fake_script_exhausted",
                    "message": "FakeOpenAIRealtime has no scripted transcript left",
                },
            )
            heard = ""
        else:
            await self.emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=heard,
                usage={"type": "duration", "seconds": max(0, end_ms - self.speech_start_ms) / 1000},
            )
        self.last_heard = heard
        if self.vad.create_response and self.response_id is None:
            await self.start_response(heard)

    def cancel(self, reason: str) -> None:
        if self.scope is not None and self.cancel_reason == "":
            self.cancel_reason = reason
            self.scope.cancel()

    async def start_response(self, heard: str, reply: RealtimeReply | None = None) -> None:
        assert self.tg is not None
        self.response_id = self.new_id("resp")
        self.cancel_reason = ""
        self.scope = anyio.CancelScope()
        await self.emit(
            "response.created",
            response={
                "id": self.response_id,
                "object": "realtime.response",
                "status": "in_progress",
                "output": [],
            },
        )
        reply = reply or self.fake._next_reply(heard)
        self.tg.start_soon(self.respond, self.response_id, self.scope, reply)

    async def respond(self, rid: str, scope: anyio.CancelScope, reply: RealtimeReply) -> None:
        output: list[dict[str, Any]] = []
        with scope:
            if reply.tool is not None:
                await self.function_call(rid, reply, output)
            else:
                await self.speak(rid, reply.text, output)
        done: dict[str, Any]
        if scope.cancelled_caught:
            status = {"type": "cancelled", "reason": self.cancel_reason}
            for item in output:
                item["status"] = "incomplete"
            done = {
                "id": rid,
                "object": "realtime.response",
                "status": "cancelled",
                "status_details": status,
                "output": output,
            }
        else:
            done = {
                "id": rid,
                "object": "realtime.response",
                "status": "completed",
                "status_details": None,
                "output": output,
            }
        self.response_id = None
        self.scope = None
        await self.emit("response.done", response=done)

    async def speak(self, rid: str, text: str, output: list[dict[str, Any]]) -> None:
        fake, names = self.fake, self.names
        item_id = self.new_id("item")
        item = self.items[item_id] = _Item("message", "assistant")
        record: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [{"type": names["audio_content"], "transcript": ""}],
        }
        output.append(record)
        ids = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        await self.emit("response.output_item.added", response_id=rid, output_index=0, item=record)
        await self.emit("conversation.item.created", previous_item_id=None, item=record)
        # a content part is "audio" in both dialects (an item's content is "output_audio" in GA)
        await self.emit("response.content_part.added", **ids, part={"type": "audio"})
        if fake.ttfb:
            await anyio.sleep(fake.ttfb)
        total_ms = max(fake.chunk_ms, len(text) * fake.ms_per_char)
        chunks = max(1, -(-total_ms // fake.chunk_ms))
        words = re.findall(r"\S+\s*", text)
        per = -(-len(words) // chunks) if words else 0
        fmt = "pcm16" if self.conn.format == "pcm16" else "g711_ulaw"
        sent_text = ""
        for n in range(chunks):
            ms = min(fake.chunk_ms, total_ms - n * fake.chunk_ms)
            await self.emit(
                names["audio_delta"],
                **ids,
                delta=base64.b64encode(_tone(ms, fmt)).decode(),
            )
            item.audio_ms += ms
            piece = "".join(words[n * per : (n + 1) * per])
            if piece:
                sent_text += piece
                record["content"][0]["transcript"] = sent_text
                await self.emit(names["transcript_delta"], **ids, delta=piece)
            if self.fault == "close_mid_response":
                await self.ws.close(1011, "injected fault: close mid-response")
                raise SocketClosed(1011, "injected fault")
            if fake.speed:
                await anyio.sleep(ms / 1000 / fake.speed)
        await self.emit(names["audio_done"], **ids)
        await self.emit(names["transcript_done"], **ids, transcript=text)
        await self.emit(
            "response.content_part.done",
            **ids,
            part={"type": "audio", "transcript": text},
        )
        record["status"] = "completed"
        await self.emit("response.output_item.done", response_id=rid, output_index=0, item=record)

    async def function_call(
        self, rid: str, reply: RealtimeReply, output: list[dict[str, Any]]
    ) -> None:
        item_id, call_id = self.new_id("item"), self.new_id("call")
        self.items[item_id] = _Item("function_call", call_id=call_id)
        record = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": reply.tool,
            "arguments": "",
        }
        output.append(record)
        await self.emit("response.output_item.added", response_id=rid, output_index=0, item=record)
        await self.emit("conversation.item.created", previous_item_id=None, item=record)
        if self.fake.ttfb:
            await anyio.sleep(self.fake.ttfb)
        ids = {"response_id": rid, "item_id": item_id, "output_index": 0, "call_id": call_id}
        args = reply.arguments
        for j in range(0, len(args), 16):
            await self.emit("response.function_call_arguments.delta", **ids, delta=args[j : j + 16])
        # Only GA names the function here; beta clients know it from output_item.added.
        named = {"name": reply.tool} if self.conn.dialect == "ga" else {}
        await self.emit("response.function_call_arguments.done", **ids, **named, arguments=args)
        record.update(status="completed", arguments=args)
        await self.emit("response.output_item.done", response_id=rid, output_index=0, item=record)

    async def truncate(self, ev: _Truncate) -> None:
        item = self.items.get(ev.item_id)
        if item is None:
            raise _ClientError(
                f"Item with item_id '{ev.item_id}' not found.", "invalid_value", "item_id"
            )
        if ev.content_index != 0:
            raise _ClientError(
                "Invalid 'content_index': expected 0.", "invalid_value", "content_index"
            )
        if item.role != "assistant" or item.audio_ms == 0:
            raise _ClientError(
                "Only model output audio messages can be truncated", "unsupported_content_type"
            )
        if ev.audio_end_ms > item.audio_ms:
            raise _ClientError(
                f"Audio content of {item.audio_ms}ms is already shorter than {ev.audio_end_ms}ms"
            )
        self.conn.truncations.append((ev.item_id, ev.audio_end_ms))
        item.audio_ms = ev.audio_end_ms
        await self.emit(
            "conversation.item.truncated",
            item_id=ev.item_id,
            content_index=0,
            audio_end_ms=ev.audio_end_ms,
        )


class FakeOpenAIRealtime(FakeServer):
    """A scripted OpenAI Realtime service on ``127.0.0.1`` (ephemeral port).

    ``transcripts``: what the caller "said", one per utterance the VAD detects, in order (when
    they run out, transcription fails with an event saying so). ``replies``: one per response,
    in order; a string (spoken), a :class:`RealtimeReply`, or a callable taking what was heard
    (the transcript, or the ``response.create`` instructions). When replies run out the fake
    speaks an apology that says so. ``api_key``: the only key accepted (``None``: any).
    ``faults``: one per connection, in order (``None``: healthy). ``ttfb``: delay before the
    first audio; ``chunk_ms``: audio per delta; ``speed``: times real time to send audio at
    (``None``: at once); ``ms_per_char``: spoken length per character of reply text (60 ms:
    "Hi." is 0.18 s of audio).

    ``greeting``: the reply to a response the client asks for before the caller said anything
    (an agent's greeting); it never uses up ``replies``, so ``replies[0]`` answers the caller's
    first utterance. A string, :class:`RealtimeReply`, or a callable taking the response's
    instructions; ``None`` says what the instructions ask for (the text after "saying exactly:",
    as voicegraph's greeting request puts it), else "Hello.".

    :attr:`url` is the ``base_url`` to give the client; :attr:`connections` records each
    connection (:class:`RealtimeConnection`).
    """

    def __init__(
        self,
        *,
        transcripts: Sequence[str] = (),
        replies: Sequence[Reply] = (),
        api_key: str | None = "test-key",
        faults: Sequence[RealtimeFault | None] = (),
        ttfb: float = 0.0,
        chunk_ms: int = 100,
        speed: float | None = None,
        ms_per_char: int = 60,
        greeting: Reply | None = None,
    ) -> None:
        super().__init__(max_message=16 << 20)
        self.transcripts = list(transcripts)
        self.replies = list(replies)
        self.api_key = api_key
        self.faults = list(faults)
        self.ttfb = ttfb
        self.chunk_ms = chunk_ms
        self.speed = speed
        self.ms_per_char = ms_per_char
        self.greeting = greeting
        self.connections: list[RealtimeConnection] = []
        self.handshakes = 0
        self._sessions: set[_Session] = set()
        self._ids = itertools.count(1)
        self._changed = anyio.Event()
        self._transcript = 0
        self._reply = 0

    async def drop(self) -> None:
        """Close every open connection with 1011, as a service restart would."""
        for session in list(self._sessions):
            await session.ws.close(1011, "dropped by the test")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds, checked after each client event is handled.

        Raises ``TimeoutError`` after ``timeout`` seconds."""
        with anyio.fail_after(timeout):
            while not condition():
                await self._changed.wait()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/v1/realtime``."""
        return f"{self.ws_url}/v1/realtime"

    def _next_transcript(self) -> str | None:
        if self._transcript >= len(self.transcripts):
            return None
        self._transcript += 1
        return self.transcripts[self._transcript - 1]

    def _next_reply(self, heard: str) -> RealtimeReply:
        if self._reply >= len(self.replies):
            return RealtimeReply(text="The fake realtime script has no reply left.")
        item = self.replies[self._reply]
        self._reply += 1
        if callable(item):
            item = item(heard)
        return RealtimeReply(text=item) if isinstance(item, str) else item

    def _greeting_reply(self, instructions: str) -> RealtimeReply:
        item = self.greeting
        if item is None:
            # voicegraph asks "...saying exactly: <text>" (greeting) or "...nothing else: <text>"
            for marker in ("saying exactly:", "nothing else:"):
                _, said, asked = instructions.partition(marker)
                if said:
                    return RealtimeReply(text=asked.strip() or "Hello.")
            return RealtimeReply(text="Hello.")
        if callable(item):
            item = item(instructions)
        return RealtimeReply(text=item) if isinstance(item, str) else item

    async def websocket(self, ws: WebSocketPeer) -> None:
        index = self.handshakes
        self.handshakes += 1
        planned = self.faults[index] if index < len(self.faults) else None
        fault = planned.kind if planned is not None else None
        if ws.path != "/v1/realtime":
            await ws.reject(404, body=b"Not Found")
            return
        model = ws.param("model")
        if not model:
            await ws.reject(400, body=_http_error("Missing required parameter: 'model'."))
            return
        auth = ws.headers.get("authorization", "")
        if fault == "refuse_auth" or (
            self.api_key is not None and auth != f"Bearer {self.api_key}"
        ):
            await ws.reject(401, body=_http_error("Incorrect API key provided.", "invalid_api_key"))
            return
        if fault == "down":
            await ws.reject(503, body=_http_error("The server is overloaded.", "server_error"))
            return
        dialect = "beta" if ws.headers.get("openai-beta") == "realtime=v1" else "ga"
        await ws.accept()
        conn = RealtimeConnection(dialect, model)
        self.connections.append(conn)
        session = _Session(self, ws, conn, fault)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)


def _turn_detections(session: dict[str, Any]) -> list[dict[str, Any]]:
    """The turn_detection objects of a session dict, flat (beta) or nested (GA)."""
    found = [session.get("turn_detection")]
    found.append(session.get("audio", {}).get("input", {}).get("turn_detection"))
    return [td for td in found if isinstance(td, dict)]


def _http_error(message: str, code: str | None = None) -> bytes:
    return msgspec.json.encode(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "code": code,
                "param": None,
            }
        }
    )
