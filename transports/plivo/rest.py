"""Plivo REST: place a call (``POST /v1/Account/{auth_id}/Call/``, a JSON body), cancel it
while it rings (``DELETE /v1/Account/{auth_id}/Request/{request_uuid}/``), record it
(``POST .../Call/{call_uuid}/Record/``), end one
(``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/``) or transfer it (``POST`` to the same path
with the JSON body the plivo library sends: ``call_uuid``, ``legs``, ``aleg_url``,
``aleg_method``; Plivo then fetches new XML for the call from ``aleg_url``)."""

from __future__ import annotations

import re

from .._rest import DialError, HangupError, RetryPolicy, create_with_retries, send_with_retries

__all__ = ["PlivoREST"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_CALL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class PlivoREST:
    """Places, hangs up and transfers Plivo calls. ``base_url`` is configurable so tests can
    reach a fake."""

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
        return await self._delete(f"Call/{call_uuid}/", f"plivo hang-up of {call_uuid}")

    async def record(
        self, call_uuid: str, *, callback_url: str, time_limit: int, file_format: str = "wav"
    ) -> str:
        """Start recording call ``call_uuid``, both parties on their own channel (``POST
        /v1/Account/{auth_id}/Call/{call_uuid}/Record/``); Plivo posts ``record_url`` and
        ``recording_duration`` to ``callback_url`` when the recording ends. Returns the
        recording's URL as Plivo announces it. Not retried once it may have arrived (a second
        request would start a second recording); raises :class:`DialError` if refused."""
        if not _CALL_UUID.fullmatch(call_uuid):
            raise DialError(f"call_uuid {call_uuid!r} is not a Plivo call UUID")
        if file_format not in ("wav", "mp3"):
            raise DialError(f"file_format must be 'wav' or 'mp3', got {file_format!r}")
        if not callback_url.startswith(("https://", "http://")):
            raise DialError("callback_url must be an http(s) URL")
        body = await create_with_retries(
            f"{self.base_url}/v1/Account/{self.auth_id}/Call/{call_uuid}/Record/",
            auth=(self.auth_id, self._auth_token),
            json={  # as the plivo library sends it, the call's UUID included
                "call_uuid": call_uuid,
                "time_limit": time_limit,
                "file_format": file_format,
                "callback_url": callback_url,
                "callback_method": "POST",
                "record_channel_type": "stereo",
            },
            policy=self.policy,
            what=f"plivo recording of {call_uuid}",
        )
        url = body.get("url")
        return url if isinstance(url, str) else ""

    async def cancel_request(self, request_uuid: str) -> bool:
        """Cancel placed call ``request_uuid`` before it is answered (``DELETE
        /v1/Account/{auth_id}/Request/{request_uuid}/``). True if cancelled now (204), False if
        Plivo no longer holds the request (404: answered or over). Raises :class:`HangupError`
        like :meth:`hangup`."""
        if not _CALL_UUID.fullmatch(request_uuid):
            raise HangupError(f"request_uuid {request_uuid!r} is not a Plivo request UUID")
        return await self._delete(
            f"Request/{request_uuid}/", f"plivo cancel of request {request_uuid}"
        )

    async def _delete(self, path: str, what: str) -> bool:
        """``DELETE`` the account's ``path``: True if done (200/204), False if gone (404)."""
        return await send_with_retries(
            "DELETE",
            f"{self.base_url}/v1/Account/{self.auth_id}/{path}",
            auth=(self.auth_id, self._auth_token),
            data=None,
            done=frozenset({200, 204}),
            gone=frozenset({404}),
            policy=self.policy,
            what=what,
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

    async def create_call(
        self,
        to: str,
        from_: str,
        answer_url: str,
        *,
        hangup_url: str,
        ring_url: str | None = None,
        ring_timeout: int = 30,
        time_limit: int | None = None,
        machine_detection: bool = False,
        machine_detection_url: str | None = None,
    ) -> str:
        """Place a call from ``from_`` to ``to`` (both E.164) whose answer fetches
        ``answer_url``; ``hangup_url`` hears how it ended, ``ring_url`` that it rings;
        ``machine_detection`` reports a machine or a person to ``machine_detection_url``.
        Returns Plivo's request UUID (the call UUID comes with the answer). Raises
        :class:`DialError` when Plivo refuses or cannot be reached."""
        body = await create_with_retries(
            f"{self.base_url}/v1/Account/{self.auth_id}/Call/",
            auth=(self.auth_id, self._auth_token),
            json=create_call_body(
                to,
                from_,
                answer_url,
                hangup_url=hangup_url,
                ring_url=ring_url,
                ring_timeout=ring_timeout,
                time_limit=time_limit,
                machine_detection=machine_detection,
                machine_detection_url=machine_detection_url,
            ),
            policy=self.policy,
            what=f"plivo call to {to}",
        )
        uuid = body.get("request_uuid")
        if isinstance(uuid, list) and len(uuid) == 1:
            uuid = uuid[0]  # one call: Plivo answers a one-element list for bulk calls
        if not isinstance(uuid, str) or not _CALL_UUID.fullmatch(uuid):
            raise DialError("Plivo accepted the call but its answer holds no request_uuid")
        return uuid


def create_call_body(
    to: str,
    from_: str,
    answer_url: str,
    *,
    hangup_url: str,
    ring_url: str | None,
    ring_timeout: int,
    time_limit: int | None,
    machine_detection: bool,
    machine_detection_url: str | None,
) -> dict[str, object]:
    """The JSON body of Plivo's create-call request, with the names and types plivo-python
    sends (numbers as digits with the country code, no ``+``)."""
    for name, number in (("to", to), ("from_", from_)):
        if not _E164.fullmatch(number):
            raise DialError(f"{name}={number!r} is not E.164 (like +15551234567)")
    body: dict[str, object] = {
        "from": from_[1:],
        "to": to[1:],
        "answer_url": answer_url,
        "answer_method": "POST",
        "hangup_url": hangup_url,
        "hangup_method": "POST",
        "ring_timeout": int(ring_timeout),
    }
    if ring_url is not None:
        body["ring_url"] = ring_url
        body["ring_method"] = "POST"
    if time_limit is not None:
        body["time_limit"] = int(time_limit)
    if machine_detection:
        body["machine_detection"] = "true"
        body["machine_detection_url"] = machine_detection_url or hangup_url
        body["machine_detection_method"] = "POST"
    return body
