"""The Cartesia TTS WebSocket wire: its messages as msgspec Structs, and how text is cut.

Client messages: a :class:`Generate` request per piece of text on a *context* (one context per
agent utterance; ``continue`` says more text follows) and :class:`CancelContext`. Server
messages, decoded by :data:`decoder` on their ``type``: audio :class:`Chunk` (base64, decoded
in C), word :class:`Timestamps`, :class:`Done` when a context's audio is over, :class:`Error`;
``flush_done`` and ``phoneme_timestamps`` are decoded only to be skipped. Text goes out in whole
sentences (:func:`sentence_cut`), so the voice's prosody sees each sentence at once.
"""

from __future__ import annotations

import re

import msgspec

from ..providers.errors import ProviderProtocolError

__all__ = [
    "CancelContext",
    "Chunk",
    "Done",
    "Error",
    "FlushDone",
    "Generate",
    "OutputFormat",
    "PhonemeTimestamps",
    "Timestamps",
    "Voice",
    "WordTimestampLists",
    "decoder",
    "encode",
    "protocol_error",
    "sentence_cut",
]

# ------------------------------------------------------------------ client messages


class Voice(msgspec.Struct):
    mode: str
    id: str


class OutputFormat(msgspec.Struct):
    container: str
    encoding: str
    sample_rate: int


class Generate(msgspec.Struct, omit_defaults=True, rename={"continue_": "continue"}):
    """Speak ``transcript`` on ``context_id``; ``continue_``: more text of it follows."""

    model_id: str
    transcript: str
    voice: Voice
    output_format: OutputFormat
    context_id: str
    language: str
    continue_: bool
    add_timestamps: bool
    max_buffer_delay_ms: int


class CancelContext(msgspec.Struct):
    """Stop generating ``context_id`` (audio already generating may still arrive)."""

    context_id: str
    cancel: bool = True


encode = msgspec.json.Encoder().encode
"""Encode a client message to JSON bytes (Cartesia wants them in text frames: decode first)."""

# ------------------------------------------------------------------ server messages


class Chunk(msgspec.Struct, tag="chunk", tag_field="type"):
    context_id: str
    data: bytes = b""  # msgspec decodes the base64 here, in C


class WordTimestampLists(msgspec.Struct):
    words: list[str] = []
    start: list[float] = []
    end: list[float] = []


class Timestamps(msgspec.Struct, tag="timestamps", tag_field="type"):
    context_id: str
    word_timestamps: WordTimestampLists | None = None


class Done(msgspec.Struct, tag="done", tag_field="type"):
    context_id: str


class FlushDone(msgspec.Struct, tag="flush_done", tag_field="type"):
    context_id: str = ""


class PhonemeTimestamps(msgspec.Struct, tag="phoneme_timestamps", tag_field="type"):
    context_id: str = ""


class Error(msgspec.Struct, tag="error", tag_field="type"):
    context_id: str | None = None
    status_code: int | None = None
    error_code: str | None = None
    title: str | None = None
    message: str | None = None
    error: str | None = None  # older API versions put the text here


decoder = msgspec.json.Decoder(Chunk | Timestamps | Done | FlushDone | PhonemeTimestamps | Error)
"""Decodes one server message (raises ``msgspec.DecodeError``/``ValidationError`` on others)."""


def protocol_error(e: Error) -> ProviderProtocolError:
    """The error that ends the call when the service reports ``e``."""
    text = e.message or e.error or "unknown error"
    title = f"{e.title}: " if e.title else ""
    code = f" [{e.error_code}]" if e.error_code else ""
    return ProviderProtocolError(
        "cartesia",
        f"{title}{text}{code} (status {e.status_code}, context {e.context_id}); "
        "check CartesiaOptions (model_id, voice_id, output format)",
    )


# ---------------------------------------------------------------- text on a context

_SENTENCE_END = re.compile(r"[.!?;:]+[\"')\]]*\s+")


def sentence_cut(text: str, limit: int) -> int:
    """Where to cut ``text`` so the head is whole sentences (0: keep waiting). Past ``limit``
    characters without a sentence end, the cut falls at the last word boundary before it."""
    end = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
    if end:
        return end
    if len(text) > limit:
        space = text.rfind(" ", 0, limit)
        return space + 1 if space > 0 else 0
    return 0
