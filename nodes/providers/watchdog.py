"""The liveness watchdog of a provider socket: when an accepted connection has stalled.

A provider can accept the connection and then go quiet. :class:`StallWatch` judges, from the
oldest unanswered request and the last message received, whether it stalled; the base
(:class:`~voicegraph.nodes.providers.base.WebSocketProvider`) asks it every quarter of the
timeout, reconnects on a stall and lets :class:`~.errors.ProviderStalled` end the call once the
stalls outnumber the allowed reconnects (the call then ends with an apology, not silence).
"""

from __future__ import annotations

from .errors import ProviderStalled

__all__ = ["StallWatch"]


class StallWatch:
    """Counts stalls of one provider: a request unanswered for ``timeout`` seconds while the
    provider sent nothing at all for as long. ``retries`` stalls in a row are reconnected; the
    next raises :class:`~.errors.ProviderStalled`. A moment with nothing pending resets the
    run (the provider is well again)."""

    __slots__ = ("provider", "retries", "stalls", "strikes", "timeout")

    def __init__(self, provider: str, timeout: float, retries: int) -> None:
        if timeout <= 0:
            raise ValueError("StallWatch timeout must be positive")
        self.provider = provider
        self.timeout = timeout
        self.retries = retries
        self.stalls = 0
        """Stalls seen in all (each one reconnected or ended the call)."""
        self.strikes = 0
        """Stalls in a row, since the last moment with nothing pending."""

    def stalled(
        self, now: float, oldest_pending: float | None, last_received: float, connected: bool
    ) -> bool:
        """Whether the provider stalled at ``now`` (then reconnect it). While no socket is up
        the reconnect logic is in charge, so a stall is not judged. Raises
        :class:`~.errors.ProviderStalled` when this stall is one more than ``retries``."""
        if oldest_pending is None:
            self.strikes = 0
            return False
        t = self.timeout
        if not connected or now - oldest_pending < t or now - last_received < t:
            return False
        self.stalls += 1
        self.strikes += 1
        if self.strikes > self.retries:
            raise ProviderStalled(self.provider, t, self.retries)
        return True
