"""One FakeOpenAIRealtime connection's protocol state machine, kept as one piece on purpose
(~470 lines, one class): every handler reads and writes the same per-connection state, and the
protocol reads best top to bottom in one place.

It handles session updates, the energy VAD over appended audio, scripted transcripts, responses
(audio and transcript deltas, function calls), cancel and truncate."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import numpy as np

from ..wsio import SocketClosed
from ._realtime_protocol import (
    _DECODERS,
    _NAMES,
    RealtimeConnection,
    RealtimeReply,
    _Append,
    _as_client_error,
    _BetaSession,
    _BetaUpdate,
    _Clear,
    _ClientError,
    _Commit,
    _Event,
    _FunctionOutput,
    _GAUpdate,
    _ItemCreate,
    _Message,
    _pcm,
    _ResponseCancel,
    _ResponseCreate,
    _tone,
    _Truncate,
    _turn_detections,
    _TurnDetection,
)
from .fakeserver import WebSocketPeer

if TYPE_CHECKING:
    from .fake_openai_realtime import FakeOpenAIRealtime


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
