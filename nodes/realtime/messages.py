"""OpenAI Realtime wire messages (beta "preview" and GA dialects) as msgspec Structs.

Client events are tagged by ``type``; ``bytes`` fields travel as base64, which msgspec encodes
and decodes in C. Server events are decoded by looking their ``type`` up in
:data:`SERVER_EVENTS` (both dialects' names map to one Struct), so unknown events cost one small
decode and are skipped.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# ----------------------------------------------------------------- client events


class ClientEvent(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    event_id: str | None = None


class TurnDetection(msgspec.Struct, kw_only=True):
    """``server_vad`` settings (all fields always sent: the defaults are the vendor's)."""

    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True


class Transcription(msgspec.Struct, omit_defaults=True):
    model: str
    language: str | None = None
    """ISO-639-1 language of the caller's speech (``None``: detected)."""


class Tool(msgspec.Struct, kw_only=True):
    """A function tool in the Realtime (flat) shape."""

    type: Literal["function"] = "function"
    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class BetaSession(msgspec.Struct, omit_defaults=True, kw_only=True):
    """``session`` of a beta ``session.update`` (flat fields)."""

    modalities: list[str]
    input_audio_format: str
    output_audio_format: str
    turn_detection: TurnDetection
    instructions: str | None = None
    voice: str | None = None
    input_audio_transcription: Transcription | None = None
    tools: list[Tool] | None = None
    tool_choice: str | None = None


class GAFormat(msgspec.Struct, omit_defaults=True):
    type: str
    rate: int | None = None


class GAInput(msgspec.Struct, omit_defaults=True, kw_only=True):
    format: GAFormat
    turn_detection: TurnDetection
    transcription: Transcription | None = None


class GAOutput(msgspec.Struct, omit_defaults=True, kw_only=True):
    format: GAFormat
    voice: str | None = None


class GAAudio(msgspec.Struct):
    input: GAInput
    output: GAOutput


class GASession(msgspec.Struct, omit_defaults=True, kw_only=True):
    """``session`` of a GA ``session.update`` (nested ``audio``; ``type`` is required)."""

    type: Literal["realtime"]
    output_modalities: list[str]
    audio: GAAudio
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: str | None = None


class SessionUpdate(ClientEvent, tag="session.update"):
    session: BetaSession | GASession


class InputAudioAppend(ClientEvent, tag="input_audio_buffer.append"):
    audio: bytes


class FunctionCallOutput(msgspec.Struct, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str


class TextPart(msgspec.Struct):
    """Text content of a message item: ``input_text`` (caller), ``output_text`` (GA model) or
    ``text`` (beta model)."""

    type: str
    text: str


class MessageItem(msgspec.Struct, tag_field="type", tag="message", kw_only=True):
    """A conversation message (used to replay the heard conversation into a new session)."""

    role: Literal["user", "assistant", "system"]
    content: list[TextPart]


class ItemCreate(ClientEvent, tag="conversation.item.create"):
    item: FunctionCallOutput | MessageItem


class ResponseParams(msgspec.Struct, omit_defaults=True):
    instructions: str | None = None


class ResponseCreate(ClientEvent, tag="response.create"):
    response: ResponseParams | None = None


class ResponseCancel(ClientEvent, tag="response.cancel"):
    response_id: str | None = None


class ItemTruncate(ClientEvent, tag="conversation.item.truncate"):
    item_id: str
    content_index: int
    audio_end_ms: int


encoder = msgspec.json.Encoder()


def encode(event: ClientEvent) -> str:
    """JSON text of a client event (Realtime wants text frames)."""
    return encoder.encode(event).decode()


# ----------------------------------------------------------------- server events


class ErrorDetail(msgspec.Struct):
    type: str = ""
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None


class ServerError(msgspec.Struct):
    error: ErrorDetail


class SessionEvent(msgspec.Struct):
    """``session.created`` / ``session.updated`` (the effective config is not needed inward)."""


class SpeechStartedEvent(msgspec.Struct):
    audio_start_ms: int = 0
    item_id: str = ""


class SpeechStoppedEvent(msgspec.Struct):
    audio_end_ms: int = 0
    item_id: str = ""


class TranscriptionCompleted(msgspec.Struct):
    item_id: str = ""
    transcript: str = ""


class TranscriptionFailed(msgspec.Struct):
    item_id: str = ""
    error: ErrorDetail | None = None


class StatusDetails(msgspec.Struct):
    type: str | None = None
    reason: str | None = None
    error: ErrorDetail | None = None


class ItemInfo(msgspec.Struct):
    id: str = ""
    type: str = ""
    role: str | None = None
    call_id: str | None = None
    name: str | None = None


class ResponseInfo(msgspec.Struct):
    id: str = ""
    status: str = ""
    status_details: StatusDetails | None = None
    output: list[ItemInfo] = []


class ResponseCreated(msgspec.Struct):
    response: ResponseInfo


class ResponseDone(msgspec.Struct):
    response: ResponseInfo


class OutputItemAdded(msgspec.Struct):
    item: ItemInfo
    response_id: str = ""


class AudioDelta(msgspec.Struct):
    item_id: str
    delta: bytes
    response_id: str = ""


class AudioDoneEvent(msgspec.Struct):
    item_id: str
    response_id: str = ""


class TextDeltaEvent(msgspec.Struct):
    item_id: str
    delta: str


class TextDoneEvent(msgspec.Struct):
    item_id: str


class FunctionCallDone(msgspec.Struct):
    """``response.function_call_arguments.done``. Only GA sends ``name``; a beta client takes
    it from the function-call item announced in ``response.output_item.added``."""

    call_id: str
    arguments: str
    name: str = ""
    item_id: str = ""
    response_id: str = ""


class Truncated(msgspec.Struct):
    item_id: str
    audio_end_ms: int = 0


class EventType(msgspec.Struct):
    type: str


SERVER_EVENTS: dict[str, type[msgspec.Struct]] = {
    "error": ServerError,
    "session.created": SessionEvent,
    "session.updated": SessionEvent,
    "input_audio_buffer.speech_started": SpeechStartedEvent,
    "input_audio_buffer.speech_stopped": SpeechStoppedEvent,
    "conversation.item.input_audio_transcription.completed": TranscriptionCompleted,
    "conversation.item.input_audio_transcription.failed": TranscriptionFailed,
    "response.created": ResponseCreated,
    "response.done": ResponseDone,
    "response.output_item.added": OutputItemAdded,
    # The two dialects name the output events differently; a client accepts both
    # (protocol file, pitfalls), whatever dialect it asked for.
    "response.audio.delta": AudioDelta,
    "response.output_audio.delta": AudioDelta,
    "response.audio.done": AudioDoneEvent,
    "response.output_audio.done": AudioDoneEvent,
    "response.audio_transcript.delta": TextDeltaEvent,
    "response.output_audio_transcript.delta": TextDeltaEvent,
    "response.audio_transcript.done": TextDoneEvent,
    "response.output_audio_transcript.done": TextDoneEvent,
    "response.text.delta": TextDeltaEvent,
    "response.output_text.delta": TextDeltaEvent,
    "response.text.done": TextDoneEvent,
    "response.output_text.done": TextDoneEvent,
    "response.function_call_arguments.done": FunctionCallDone,
    "conversation.item.truncated": Truncated,
}

_type_decoder = msgspec.json.Decoder(EventType)
_decoders = {name: msgspec.json.Decoder(cls) for name, cls in SERVER_EVENTS.items()}


def decode_server_event(message: str | bytes) -> tuple[str, msgspec.Struct | None]:
    """``(type, event)``; ``event`` is ``None`` for types the client does not use.

    Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` for malformed messages."""
    kind = _type_decoder.decode(message).type
    decoder = _decoders.get(kind)
    return kind, (decoder.decode(message) if decoder is not None else None)
