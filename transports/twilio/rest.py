"""Twilio REST: place a call (``POST .../Calls.json``), end a call (``POST .../Calls/{CallSid}.json`` with ``Status=completed``) or
transfer it (the same endpoint with ``Twiml=<Response><Dial>NUMBER</Dial></Response>``, which
replaces the call's TwiML: the stream ends and the caller is dialled through)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._rest import DialError, HangupError, RetryPolicy, create_with_retries, send_with_retries

__all__ = ["TwilioREST"]

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


class TwilioREST:
    """Places, hangs up and transfers Twilio calls. ``base_url`` is configurable so tests can reach a fake."""

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

    async def create_call(
        self,
        to: str,
        from_: str,
        url: str,
        *,
        status_callback: str,
        status_events: Sequence[str] = ("initiated", "ringing", "answered", "completed"),
        timeout: int = 30,
        time_limit: int | None = None,
        machine_detection: bool = False,
        amd_callback: str | None = None,
        record: bool = False,
        recording_callback: str | None = None,
    ) -> str:
        """Place a call from ``from_`` to ``to`` (both E.164) whose answer fetches ``url``.

        ``status_callback`` receives ``status_events``; ``timeout`` is the ring time in seconds;
        ``machine_detection`` asks for asynchronous detection that waits for the end of a
        machine's greeting (``MachineDetection=DetectMessageEnd``, ``AsyncAmd``), reported to
        ``amd_callback``; ``record`` records both channels, reported to
        ``recording_callback``. Returns the call SID. Raises :class:`DialError` when Twilio
        refuses or cannot be reached."""
        return _sid(
            await create_with_retries(
                f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Calls.json",
                auth=(self.account_sid, self._auth_token),
                data=create_call_form(
                    to,
                    from_,
                    url,
                    status_callback=status_callback,
                    status_events=status_events,
                    timeout=timeout,
                    time_limit=time_limit,
                    machine_detection=machine_detection,
                    amd_callback=amd_callback,
                    record=record,
                    recording_callback=recording_callback,
                ),
                policy=self.policy,
                what=f"twilio call to {to}",
            )
        )


def create_call_form(
    to: str,
    from_: str,
    url: str,
    *,
    status_callback: str,
    status_events: Sequence[str],
    timeout: int,
    time_limit: int | None,
    machine_detection: bool,
    amd_callback: str | None,
    record: bool,
    recording_callback: str | None,
) -> dict[str, str | list[str]]:
    """The form of Twilio's create-call request, field for field what twilio-python sends for
    the same arguments (a repeated field is a list)."""
    for name, number in (("to", to), ("from_", from_)):
        if not _E164.fullmatch(number):
            raise DialError(f"{name}={number!r} is not E.164 (like +15551234567)")
    form: dict[str, str | list[str]] = {
        "To": to,
        "From": from_,
        "Url": url,
        "Method": "POST",
        "StatusCallback": status_callback,
        "StatusCallbackEvent": list(status_events),
        "StatusCallbackMethod": "POST",
        "Timeout": str(int(timeout)),
    }
    if time_limit is not None:
        form["TimeLimit"] = str(int(time_limit))
    if machine_detection:
        form["MachineDetection"] = "DetectMessageEnd"
        form["AsyncAmd"] = "true"
        form["AsyncAmdStatusCallback"] = amd_callback or status_callback
        form["AsyncAmdStatusCallbackMethod"] = "POST"
    if record:
        form["Record"] = "true"
        form["RecordingChannels"] = "dual"
        form["RecordingStatusCallback"] = recording_callback or status_callback
        form["RecordingStatusCallbackMethod"] = "POST"
    return form


def _sid(body: dict[str, object]) -> str:
    sid = body.get("sid")
    if not isinstance(sid, str) or not _CALL_SID.fullmatch(sid):
        raise DialError("Twilio accepted the call but its answer holds no call SID")
    return sid
