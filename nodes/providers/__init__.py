"""Provider plumbing shared by the STT, TTS, realtime and LLM nodes (see :mod:`.base`)."""

from .base import (
    MissingSecret,
    ProviderAuthError,
    ProviderError,
    ProviderMetrics,
    ProviderProtocolError,
    ProviderStalled,
    ProviderUnavailable,
    ReconnectPolicy,
    Secret,
    SendBuffer,
    WebSocketProvider,
)

__all__ = [
    "MissingSecret",
    "ProviderAuthError",
    "ProviderError",
    "ProviderMetrics",
    "ProviderProtocolError",
    "ProviderStalled",
    "ProviderUnavailable",
    "ReconnectPolicy",
    "Secret",
    "SendBuffer",
    "WebSocketProvider",
]
