"""Carrier REST calls with bounded retries (shared by the Twilio and Plivo clients).

Hanging up (:func:`send_with_retries`): one request, retried on transport errors, 429 and 5xx
with a short exponential backoff, never more than ``retries`` extra attempts or ``deadline``
seconds. Placing a call (:func:`create_with_retries`) retries only what surely did not arrive.
Credentials go into the ``Authorization`` header only and never into errors or logs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
import httpx

__all__ = ["DialError", "HangupError", "RetryPolicy", "create_with_retries", "send_with_retries"]

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


class DialError(Exception):
    """The carrier refused to place a call, or could not be reached.

    ``status`` is the HTTP status (0 when no answer came back); ``code`` the carrier's own error
    code when it gave one (Twilio's ``code``, e.g. 21211 for an invalid ``To``); ``detail`` the
    carrier's message. Credentials never appear in any of them."""

    def __init__(self, message: str, *, status: int = 0, code: int | None = None, detail: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail


async def create_with_retries(
    url: str,
    *,
    auth: tuple[str, str],
    data: Mapping[str, str | list[str]] | None = None,
    json: Mapping[str, object] | None = None,
    policy: RetryPolicy,
    what: str,
) -> dict[str, object]:
    """POST a create request (a form ``data`` or a ``json`` body) and return the carrier's JSON.

    Creating is not idempotent (a retried request that had arrived would place a second call),
    so only a refused connection and HTTP 429 (not processed) are retried, within the policy's
    bounds. Raises :class:`DialError` for anything but a 2xx JSON object."""
    import msgspec

    last, status = "no attempt made", 0
    with anyio.move_on_after(policy.deadline):
        async with httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False) as client:
            for attempt in range(policy.retries + 1):
                if attempt:
                    await anyio.sleep(policy.backoff * 2 ** (attempt - 1))
                try:
                    resp = await client.post(url, auth=auth, data=data, json=json)
                except httpx.ConnectError:
                    last = "connection refused"
                    logger.warning("%s: attempt %d: %s", what, attempt + 1, last)
                    continue
                except httpx.HTTPError as exc:
                    raise DialError(
                        f"{what}: no answer from the carrier ({type(exc).__name__}); the call "
                        "may or may not have been placed"
                    ) from None
                status = resp.status_code
                try:
                    body = msgspec.json.decode(resp.content[:65536])
                except msgspec.DecodeError:
                    body = None
                if 200 <= status < 300 and isinstance(body, dict):
                    return body
                info = body if isinstance(body, dict) else {}
                code = info.get("code")
                detail = str(info.get("message") or info.get("error") or "")[:300]
                if status in (401, 403):
                    raise DialError(
                        f"{what}: the carrier rejected the credentials (HTTP {status}); check "
                        "the account id and auth token",
                        status=status,
                        code=code if isinstance(code, int) else None,
                        detail=detail,
                    )
                if status != 429:
                    raise DialError(
                        f"{what}: the carrier refused the call (HTTP {status}"
                        + (f", code {code}" if isinstance(code, int) else "")
                        + (f": {detail}" if detail else "")
                        + ")",
                        status=status,
                        code=code if isinstance(code, int) else None,
                        detail=detail,
                    )
                last = "HTTP 429"
                logger.warning("%s: attempt %d got %s", what, attempt + 1, last)
    raise DialError(
        f"{what} failed ({last}) after at most {policy.retries + 1} attempts", status=status
    )
