"""How a provider node fails: the exceptions that end a call because of a provider.

A dropped socket is not among them (the base reconnects it). :class:`ProviderUnavailable` means
every allowed reconnect failed, :class:`ProviderStalled` that the provider went quiet also after
reconnecting, :class:`ProviderAuthError` that the key was refused (raised at once: retrying a
wrong key only delays the error) and :class:`ProviderProtocolError` that the provider rejected
what was sent or sent what cannot be understood.
"""

from __future__ import annotations

__all__ = [
    "ProviderAuthError",
    "ProviderError",
    "ProviderProtocolError",
    "ProviderStalled",
    "ProviderUnavailable",
]


class ProviderError(Exception):
    """Base of provider failures; ``provider`` names the service (e.g. ``"deepgram"``)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderUnavailable(ProviderError):
    """The provider stayed unreachable for every allowed reconnect attempt."""

    def __init__(self, provider: str, attempts: int, last_error: str) -> None:
        super().__init__(
            provider,
            f"unavailable after {attempts} connection attempts (last error: {last_error}); "
            "check the service status or raise ReconnectPolicy.max_attempts",
        )
        self.attempts = attempts
        self.last_error = last_error


class ProviderStalled(ProviderError):
    """The provider accepted the connection but stopped answering (see
    ``ReconnectPolicy.stall_timeout``), also after reconnecting."""

    log_traceback = False  # the provider's fault, not ours: one warning line, no traceback

    def __init__(self, provider: str, timeout: float, reconnects: int) -> None:
        super().__init__(
            provider,
            f"no answer for {timeout:g}s to a pending request, also after {reconnects} "
            "reconnect(s); check the service status (ReconnectPolicy.stall_timeout sets the wait)",
        )
        self.timeout = timeout


class ProviderAuthError(ProviderError):
    """The provider refused our credentials (HTTP 401/403 on the handshake)."""


class ProviderProtocolError(ProviderError):
    """The provider rejected what we sent, or sent something we cannot understand."""
