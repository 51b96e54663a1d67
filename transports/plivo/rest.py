"""Plivo REST: end a call (``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/``)."""

from __future__ import annotations

import re

from .._rest import HangupError, RetryPolicy, send_with_retries

__all__ = ["PlivoREST"]

_CALL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class PlivoREST:
    """Hangs up Plivo calls. ``base_url`` is configurable so tests can reach a fake."""

    def __init__(
        self,
        auth_id: str,
        auth_token: str,
        *,
        base_url: str = "https://api.plivo.com",
        policy: RetryPolicy | None = None,
    ) -> None:
        self.auth_id = auth_id
        self._auth_token = auth_token
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()

    def __repr__(self) -> str:
        return f"PlivoREST(auth_id={self.auth_id!r}, base_url={self.base_url!r})"

    async def hangup(self, call_uuid: str) -> bool:
        """End call ``call_uuid``. True if ended now (204), False if already gone (404).

        Raises :class:`HangupError` if Plivo refuses or cannot be reached within the policy's
        bounds. Cancellation aborts the request."""
        if not _CALL_UUID.fullmatch(call_uuid):
            raise HangupError(f"call_uuid {call_uuid!r} is not a Plivo call UUID")
        url = f"{self.base_url}/v1/Account/{self.auth_id}/Call/{call_uuid}/"
        return await send_with_retries(
            "DELETE",
            url,
            auth=(self.auth_id, self._auth_token),
            data=None,
            done=frozenset({200, 204}),
            gone=frozenset({404}),
            policy=self.policy,
            what=f"plivo hang-up of {call_uuid}",
        )
