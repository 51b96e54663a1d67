"""ReconnectPolicy: how a provider socket connects, retries, buffers and watches liveness."""

from __future__ import annotations

import random

import msgspec

__all__ = ["ReconnectPolicy"]


class ReconnectPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Connection and reconnection limits of a provider socket (seconds unless noted).

    The n-th consecutive retry waits ``min(max_backoff, initial_backoff * multiplier**(n-1))``
    reduced by a random fraction up to ``jitter`` (so many calls do not retry in lockstep).
    A connection that stayed up for ``stable_after`` seconds resets the attempt count."""

    connect_timeout: float = 5.0
    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.3
    stable_after: float = 5.0
    buffer_messages: int = 500
    """Messages kept while reconnecting (500 x 20 ms audio = 10 s); older ones are dropped."""
    buffer_bytes: int = 1 << 20
    drain_timeout: float = 5.0
    """How long end of input waits for the provider to finish (final results, last audio)."""
    stall_timeout: float | None = None
    """Liveness watchdog: a request (a ``Finalize``, a TTS utterance) that got no answer while
    the provider sent nothing at all for this many seconds counts as a stall; the socket is
    reconnected, and a further stall raises
    :class:`~voicegraph.nodes.providers.errors.ProviderStalled`. ``None``: the node's default
    (:attr:`~voicegraph.nodes.providers.base.WebSocketProvider.default_stall_timeout`: 5 s for
    Deepgram and Cartesia, off for OpenAI Realtime, whose tool calls may legitimately keep it
    quiet); ``0``: off."""
    stall_retries: int = 1
    """Reconnects after a stall before ``ProviderStalled`` ends the call."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("ReconnectPolicy.max_attempts must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("ReconnectPolicy.jitter must be between 0 and 1")
        if self.connect_timeout <= 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("ReconnectPolicy timeouts and backoffs must be positive")
        if self.buffer_messages < 0 or self.buffer_bytes < 0:
            raise ValueError("ReconnectPolicy buffer limits must be >= 0")
        if self.stall_timeout is not None and self.stall_timeout < 0:
            raise ValueError("ReconnectPolicy.stall_timeout must be >= 0 (0 turns it off)")
        if not 0 <= self.stall_retries <= 10:
            raise ValueError("ReconnectPolicy.stall_retries must be between 0 and 10")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** max(0, attempt - 1))
        r = (rng or random).random()
        return base * (1.0 - self.jitter * r)
