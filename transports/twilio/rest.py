"""Twilio REST: end a call (``POST .../Calls/{CallSid}.json`` with ``Status=completed``) or
transfer it (the same endpoint with ``Twiml=<Response><Dial>NUMBER</Dial></Response>``, which
replaces the call's TwiML: the stream ends and the caller is dialled through)."""

from __future__ import annotations

import re

from .._rest import HangupError, RetryPolicy, send_with_retries

__all__ = ["TwilioREST"]

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


class TwilioREST:
    """Hangs up Twilio calls. ``base_url`` is configurable so tests can reach a fake."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = "https://api.twilio.com",
        policy: RetryPolicy | None = None,
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()

    def __repr__(self) -> str:
        return f"TwilioREST(account_sid={self.account_sid!r}, base_url={self.base_url!r})"

    async def hangup(self, call_sid: str) -> bool:
        """End call ``call_sid``. True if ended now, False if it had already ended (404).

        Raises :class:`HangupError` if Twilio refuses or cannot be reached within the policy's
        bounds. Cancellation aborts the request."""
        if not _CALL_SID.fullmatch(call_sid):
            raise HangupError(f"call_sid {call_sid!r} is not a Twilio call SID ('CA' + 32 hex)")
        url = f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"
        return await send_with_retries(
            "POST",
            url,
            auth=(self.account_sid, self._auth_token),
            data={"Status": "completed"},
            done=frozenset({200}),
            gone=frozenset({404}),
            policy=self.policy,
            what=f"twilio hang-up of {call_sid}",
        )

    async def transfer(self, call_sid: str, number: str) -> bool:
        """Connect call ``call_sid`` to ``number`` (E.164). True if redirected, False if the call
        had already ended (404). Raises :class:`HangupError` like :meth:`hangup`."""
        if not _CALL_SID.fullmatch(call_sid):
            raise HangupError(f"call_sid {call_sid!r} is not a Twilio call SID ('CA' + 32 hex)")
        if not _E164.fullmatch(number):
            raise HangupError(f"transfer number {number!r} is not E.164 (like +15551234567)")
        url = f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"
        return await send_with_retries(
            "POST",
            url,
            auth=(self.account_sid, self._auth_token),
            data={"Twiml": f"<Response><Dial>{number}</Dial></Response>"},
            done=frozenset({200}),
            gone=frozenset({404}),
            policy=self.policy,
            what=f"twilio transfer of {call_sid}",
        )
