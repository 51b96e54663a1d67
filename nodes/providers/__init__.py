"""Provider plumbing shared by the STT, TTS, realtime and LLM nodes.

:mod:`.base` (WebSocketProvider), :mod:`.reconnect` (ReconnectPolicy), :mod:`.watchdog` (the
liveness watch), :mod:`.errors` (how a provider fails), :mod:`.metrics` (TTFB, send buffer) and
:mod:`.secret` (keys that never show).
"""

from .base import WebSocketProvider
from .errors import (
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderStalled,
    ProviderUnavailable,
)
from .metrics import ProviderMetrics, SendBuffer
from .reconnect import ReconnectPolicy
from .secret import MissingSecret, Secret

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
