"""The OpenAI Realtime protocol as FakeOpenAIRealtime checks it: strict per-dialect schemas of
the client events (a beta field in a GA session fails the way the service fails), the errors it
answers with, the scripted replies and faults, what one connection saw, and the audio helpers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, Union

import msgspec
import numpy as np


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
