"""Placing the concurrency benchmark's lean calls as Twilio does: the signed webhook POST,
then the signed WebSocket handshake to the stream its TwiML names (see
:mod:`benchmarks._lean_caller`)."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET

from picows import ws_connect

from ._lean_caller import MAX_MESSAGE, LeanCall
from ._lean_clock import Clock

__all__ = ["LeanDialer"]


class LeanDialer:
    """Places :class:`LeanCall` s to an agent server at ``base_url`` (the arguments as
    :class:`~voicegraph.testing.TwilioCaller`'s). One HTTP client serves every webhook of the
    dialer; close it with :meth:`aclose` (or ``async with``)."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        clock: Clock,
        *,
        account_sid: str = "AC" + "0" * 32,
        to: str = "+14155550199",
        from_: str = "+14155550100",
        public_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._auth_token = auth_token
        self.clock = clock
        self.account_sid = account_sid
        self.to, self.from_ = to, from_
        self.public_url = public_url.rstrip("/") if public_url else None
        self.timeout = timeout
        self._http = httpx.AsyncClient(timeout=timeout)

    def __repr__(self) -> str:
        return f"LeanDialer({self.base_url!r}, to={self.to!r})"  # never the token

    async def __aenter__(self) -> LeanDialer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def dial(self, path: str = "/call/incoming") -> LeanCall:
        """The webhook (signed), then the stream its TwiML names, as Twilio does."""
        from voicegraph.server.signatures import compute_twilio_signature
        from voicegraph.testing._simcall import post_webhook
        from voicegraph.testing.twilio_caller import twilio_webhook_form

        call_sid = "CA" + secrets.token_hex(16)
        form = twilio_webhook_form(call_sid, self.account_sid, self.from_, self.to)
        signed = (self.public_url or self.base_url) + path
        sig = compute_twilio_signature(signed, form, self._auth_token)
        headers = {"X-Twilio-Signature": sig}
        twiml = await post_webhook(self.base_url + path, form, headers, self.timeout, self._http)
        return await self.open_stream(twiml, call_sid)

    async def open_stream(self, twiml: ET.Element, call_sid: str) -> LeanCall:
        """Open the stream of the TwiML ``<Connect><Stream>``: the signed handshake, then
        ``connected`` and ``start``. The call ticks on :attr:`clock` from then on."""
        from voicegraph.server.signatures import compute_twilio_signature
        from voicegraph.testing._simcall import local_target
        from voicegraph.testing.twilio_caller import stream_of

        url, params = stream_of(twiml)
        sig = compute_twilio_signature(url, None, self._auth_token)
        target = local_target(url, self.base_url, self.public_url or self.base_url)
        _, call = await ws_connect(
            lambda: LeanCall(self.clock, call_sid, self.account_sid, params),
            target,
            extra_headers={"X-Twilio-Signature": sig},
            websocket_handshake_timeout=self.timeout,
            max_frame_size=MAX_MESSAGE,
            use_aiofastnet=False,
        )
        assert isinstance(call, LeanCall)
        return call
