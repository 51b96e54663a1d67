"""Plivo REST: end a call (``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/``) or transfer it
(``POST`` to the same path with the JSON body the plivo library sends: ``call_uuid``,
``legs``, ``aleg_url``, ``aleg_method``; Plivo then fetches new XML for the call from ``aleg_url``)."""

from __future__ import annotations

import re

from .._rest import HangupError, RetryPolicy, send_with_retries

__all__ = ["PlivoREST"]

_CALL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class PlivoREST:
    """Hangs up and transfers Plivo calls. ``base_url`` is configurable so tests can reach a fake."""

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

    async def transfer(self, call_uuid: str, aleg_url: str, aleg_method: str = "POST") -> bool:
        """Point call ``call_uuid`` at the XML document at ``aleg_url`` (e.g. a ``<Dial>``).
        True if Plivo accepted it (202), False if the call had already ended (404). Raises
        :class:`HangupError` like :meth:`hangup`."""
        if not _CALL_UUID.fullmatch(call_uuid):
            raise HangupError(f"call_uuid {call_uuid!r} is not a Plivo call UUID")
        if not aleg_url.startswith(("https://", "http://")) or aleg_method not in ("GET", "POST"):
            raise HangupError("aleg_url must be an http(s) URL and aleg_method GET or POST")
        url = f"{self.base_url}/v1/Account/{self.auth_id}/Call/{call_uuid}/"
        return await send_with_retries(
            "POST",
            url,
            auth=(self.auth_id, self._auth_token),
            data=None,
            json={
                "call_uuid": call_uuid,
                "legs": "aleg",
                "aleg_url": aleg_url,
                "aleg_method": aleg_method,
            },
            done=frozenset({200, 202}),
            gone=frozenset({404}),
            policy=self.policy,
            what=f"plivo transfer of {call_uuid}",
        )
