"""Speech-to-speech (realtime) model nodes."""

from __future__ import annotations

from .openai import SENSITIVITY, OpenAIRealtime, OpenAIRealtimeOptions

__all__ = ["SENSITIVITY", "OpenAIRealtime", "OpenAIRealtimeOptions"]
