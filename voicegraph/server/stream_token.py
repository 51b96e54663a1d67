"""Signed, expiring, single-use tokens that authorise a carrier stream.

The webhook that answers a call mints a token bound to the carrier's call id (and to the line,
the called number, that answered) and puts it into the stream's custom parameters. When the
carrier opens the stream, the stream endpoint checks the token against the call id the carrier
reports in its start message. Webhook and stream share nothing but the secret, so any worker
process holding the secret can take any stream.

Format: ``<expiry hex 8><nonce hex 16><mac hex 32>`` (56 characters, only ``[0-9a-f]``), because
Plivo's ``extraHeaders`` accept only ``[A-Za-z0-9]``. The MAC is HMAC-SHA256 (truncated to 128
bits) over ``call_id``, ``line``, expiry and nonce.

Single use needs memory. :meth:`StreamTokens.check` keeps a bounded set of used nonces until
their expiry, in this process. The server redeems through its call state instead
(:meth:`StreamTokens.verify`, then :meth:`voicegraph.server.state.CallState.redeem_token`): in process by
default, or across all workers and machines with a shared state such as Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["StreamTokenError", "StreamTokens", "UsedNonces", "derive_secret"]

_EXP, _NONCE, _MAC = 8, 16, 32
TOKEN_LENGTH = _EXP + _NONCE + _MAC


class StreamTokenError(Exception):
    """A stream token was missing, malformed, forged, expired, replayed or for another call."""


def derive_secret(auth_token: str, purpose: str = "voicegraph stream token v1") -> bytes:
    """A stream-token key derived from a carrier auth token, so every worker that knows the
    auth token agrees on it without extra configuration."""
    return hmac.new(auth_token.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()


class UsedNonces:
    """A bounded memory of redeemed token nonces, each kept until its token expires.

    ``max_used``: when full, the oldest are forgotten early (counted in :attr:`evicted`), which
    only widens the replay window for those, never rejects a fresh token."""

    def __init__(self, max_used: int = 100_000) -> None:
        self.max_used = max_used
        self._used: OrderedDict[str, int] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._used)

    def redeem(self, nonce: str, expires_at: int, now: int) -> bool:
        """True the first time ``nonce`` is seen (until ``expires_at``), False after."""
        self._forget_expired(now)
        if nonce in self._used:
            return False
        self._used[nonce] = expires_at
        while len(self._used) > self.max_used:
            self._used.popitem(last=False)
            self.evicted += 1
        return True

    def _forget_expired(self, now: int) -> None:
        # Insertion order is nearly expiry order (constant ttl), so expired ones sit at the front.
        used = self._used
        while used:
            nonce, exp = next(iter(used.items()))
            if exp >= now:
                break
            del used[nonce]


class StreamTokens:
    """Mints and checks stream tokens.

    ``ttl``: seconds a token stays valid after minting (it must cover the carrier's time from
    answering the webhook to opening the stream). ``max_used``: bound on remembered used tokens;
    when full, the oldest are forgotten early (counted in :attr:`evicted`), which only widens the
    replay window for those, never rejects a fresh token.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        ttl: float = 60.0,
        max_used: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("stream token secret must be at least 16 bytes")
        if ttl <= 0 or ttl > 3600:
            raise ValueError(f"stream token ttl must be in (0, 3600] seconds, got {ttl}")
        self._secret = secret
        self.ttl = ttl
        self.max_used = max_used
        self._clock = clock
        self._used = UsedNonces(max_used)

    def __repr__(self) -> str:
        return f"StreamTokens(ttl={self.ttl}, used={len(self._used)})"

    @property
    def evicted(self) -> int:
        """Used tokens forgotten before their expiry because ``max_used`` was reached."""
        return self._used.evicted

    def _mac(self, call_id: str, line: str, expiry: str, nonce: str) -> str:
        msg = "\x1f".join((call_id, line, expiry, nonce)).encode("utf-8")
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:_MAC]

    def mint(self, call_id: str, line: str = "") -> str:
        """A fresh token for ``call_id`` answered on ``line``."""
        expiry = f"{int(self._clock() + self.ttl) & 0xFFFFFFFF:08x}"
        nonce = secrets.token_hex(_NONCE // 2)
        return expiry + nonce + self._mac(call_id, line, expiry, nonce)

    def check(self, token: str | None, call_id: str, line: str = "") -> None:
        """Accept ``token`` for ``call_id`` on ``line`` once (remembered in this process), or
        raise :class:`StreamTokenError`. The message names the failure, never the token."""
        nonce, expiry = self.verify(token, call_id, line)
        if not self._used.redeem(nonce, expiry, int(self._clock())):
            raise StreamTokenError("stream token was already used")

    def verify(self, token: str | None, call_id: str, line: str = "") -> tuple[str, int]:
        """Check ``token``'s form, signature and expiry for ``call_id`` on ``line`` -- all but
        single use -- and return its nonce and expiry (Unix time) for redemption. Raises
        :class:`StreamTokenError`; the message names the failure but never echoes the token."""
        if not token:
            raise StreamTokenError("stream has no token; it was not started by this server")
        if len(token) != TOKEN_LENGTH or any(c not in "0123456789abcdef" for c in token):
            raise StreamTokenError("stream token is malformed")
        expiry, nonce, mac = token[:_EXP], token[_EXP : _EXP + _NONCE], token[_EXP + _NONCE :]
        if not hmac.compare_digest(mac, self._mac(call_id, line, expiry, nonce)):
            raise StreamTokenError("stream token is not valid for this call")
        now = int(self._clock())
        exp = int(expiry, 16)
        if exp < now:
            raise StreamTokenError(f"stream token expired {now - exp}s ago")
        return nonce, exp
