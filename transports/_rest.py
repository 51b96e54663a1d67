"""Carrier REST calls with bounded retries (shared by the Twilio and Plivo hang-up clients).

Only what ending a call needs: one request, retried on transport errors, 429 and 5xx with a
short exponential backoff, never more than ``retries`` extra attempts or ``deadline`` seconds.
Credentials go into the ``Authorization`` header only and never into errors or logs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
import httpx

__all__ = ["HangupError", "RetryPolicy", "send_with_retries"]

logger = logging.getLogger("voicegraph.transports.rest")


class HangupError(Exception):
    """The carrier refused or never answered a hang-up request. The message says what to check."""


class RetryPolicy:
    """Bounds for one REST operation: ``retries`` extra attempts, ``timeout`` per attempt,
    ``backoff`` first pause (doubling), ``deadline`` for the whole operation (seconds)."""

    __slots__ = ("backoff", "deadline", "retries", "timeout")

    def __init__(
        self, retries: int = 3, timeout: float = 5.0, backoff: float = 0.25, deadline: float = 20.0
    ) -> None:
        if not 0 <= retries <= 10:
            raise ValueError(f"retries must be 0..10, got {retries}")
        self.retries, self.timeout, self.backoff, self.deadline = (
            retries,
            timeout,
            backoff,
            deadline,
        )


async def send_with_retries(
    method: str,
    url: str,
    *,
    auth: tuple[str, str],
    data: Mapping[str, str] | None,
    json: Mapping[str, str] | None = None,
    done: frozenset[int],
    gone: frozenset[int],
    policy: RetryPolicy,
    what: str,
) -> bool:
    """Send the request (a form ``data`` or a ``json`` body) until a ``done`` status (returns True) or a ``gone`` status (the call had
    already ended: returns False). Raises :class:`HangupError` on any other outcome."""
    last = "no attempt made"
    with anyio.move_on_after(policy.deadline):
        async with httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False) as client:
            for attempt in range(policy.retries + 1):
                if attempt:
                    await anyio.sleep(policy.backoff * 2 ** (attempt - 1))
                try:
                    resp = await client.request(method, url, auth=auth, data=data, json=json)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}"
                    logger.warning("%s: attempt %d failed: %s", what, attempt + 1, last)
                    continue
                status = resp.status_code
                if status in done:
                    return True
                if status in gone:
                    return False
                if status in (401, 403):
                    raise HangupError(
                        f"{what}: the carrier rejected the credentials (HTTP {status}); check "
                        "the account id and auth token"
                    )
                last = f"HTTP {status}"
                if status != 429 and status < 500:
                    break
                logger.warning("%s: attempt %d got %s", what, attempt + 1, last)
    raise HangupError(f"{what} failed ({last}) after at most {policy.retries + 1} attempts")
