"""The settings of an OpenAI Realtime node and the ``session`` they become on the wire.

:class:`OpenAIRealtimeOptions` holds everything but the key and the tool handler, and checks
itself when built (a wrong model, dialect, audio format, sensitivity or voice fails before any
call). :func:`session_config` turns it into the ``session`` object of ``session.update`` in the
model's dialect: beta ("preview" models, flat fields) or GA (nested ``audio`` settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from voicegraph.frames import AudioFormat

from . import messages as m

__all__ = [
    "BETA_VOICES",
    "GA_VOICES",
    "MULAW_8K",
    "PCM_24K",
    "SENSITIVITY",
    "OpenAIRealtimeOptions",
    "dialect_for",
    "session_config",
]

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


def dialect_for(model: str) -> Literal["ga", "beta"]:
    """The dialect a model speaks: ``*-realtime-preview*`` models are beta, others GA."""
    return "beta" if "realtime-preview" in model else "ga"


class OpenAIRealtimeOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of :class:`~voicegraph.nodes.realtime.OpenAIRealtime` (everything but the key
    and the tool handler). Raises ``ValueError`` when built with a setting the service or this
    node cannot take."""

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

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or "realtime" not in self.model:
            raise ValueError(
                f"model={self.model!r} is not a realtime model; use a speech-to-speech model "
                "such as 'gpt-realtime', 'gpt-realtime-mini' or 'gpt-4o-realtime-preview'"
            )
        if self.dialect not in ("ga", "beta"):
            raise ValueError(f"dialect must be 'ga' or 'beta', got {self.dialect!r}")
        if self.audio_format not in (MULAW_8K, PCM_24K):
            raise ValueError(
                f"OpenAI Realtime takes mulaw/8000 or pcm16/24000 audio, not {self.audio_format}; "
                "connect the node with convert=True or put a resampler/codec in front"
            )
        if self.sensitivity not in SENSITIVITY:
            raise ValueError(
                f"sensitivity must be one of {sorted(SENSITIVITY)}, got {self.sensitivity!r}"
            )
        voices = GA_VOICES if self.dialect == "ga" else BETA_VOICES
        if self.voice is not None and self.voice not in voices:
            raise ValueError(
                f"voice {self.voice!r} is not a {self.dialect} voice; use one of {voices}"
            )


def session_config(o: OpenAIRealtimeOptions) -> m.BetaSession | m.GASession:
    """The ``session`` object of ``session.update`` for ``o``, in ``o.dialect``."""
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
        m.GAFormat("audio/pcmu") if o.audio_format == MULAW_8K else m.GAFormat("audio/pcm", 24000)
    )
    return m.GASession(
        type="realtime",
        output_modalities=["audio"],
        audio=m.GAAudio(
            input=m.GAInput(
                format=gfmt,
                turn_detection=vad,
                transcription=m.Transcription(
                    o.transcription_model or "gpt-4o-mini-transcribe", o.transcription_language
                ),
            ),
            output=m.GAOutput(format=gfmt, voice=o.voice),
        ),
        instructions=o.instructions,
        tools=tools,
        tool_choice=choice,
    )
