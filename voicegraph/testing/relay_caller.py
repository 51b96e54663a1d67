"""A simulated Twilio ConversationRelay caller: Twilio's side of a managed-mode call.

``RelayCaller.dial()`` POSTs the signed inbound-call webhook, follows
``<Connect><ConversationRelay url>`` (its attributes and ``<Parameter>`` s are kept in
:attr:`RelayCall.attributes` / :attr:`RelayCall.custom_parameters`), opens the signed WebSocket
and sends ``setup``. The :class:`RelayCall` then speaks for Twilio's speech recognition
(``prompt``), barges in (``interrupt``), presses keys (``dtmf``), and collects what the agent
sends: ``text`` tokens (joined into :attr:`RelayCall.replies` at ``last``), ``play``,
``sendDigits``, ``language`` and ``end``.

Example::

    async with RelayCaller(base_url, auth_token, to=number).dial() as call:
        await call.say("What are your opening hours?")
        reply = await call.wait_for_reply()
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
import msgspec

from voicegraph.server.signatures import compute_twilio_signature
from voicegraph.transports.twilio import messages as m
from voicegraph.wsio import MessageSocket, connect_websocket

from ._simcall import CallRejected, Dialer, SimulatedCall, local_target, post_webhook
from .twilio_caller import twilio_webhook_form

__all__ = ["RelayCall", "RelayCaller"]

_decoder = msgspec.json.Decoder(m.RelayOutbound)
_DIGITS = frozenset("0123456789*#ABCD")


class RelayCall(SimulatedCall):
    """One live ConversationRelay session (see module docs).

    ``tokens``: every ``text`` message received; ``replies``: completed talk cycles (tokens
    joined up to ``last``); ``plays``, ``digits``, ``languages``: the other commands received;
    ``ended``: the ``end`` message, once the agent ended the session."""

    def __init__(
        self,
        socket: MessageSocket,
        *,
        call_sid: str,
        account_sid: str,
        from_: str,
        to: str,
        attributes: dict[str, str],
        custom_parameters: dict[str, str],
    ) -> None:
        super().__init__(socket, None)
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.from_ = from_
        self.to = to
        self.session_id = "VX" + secrets.token_hex(16)
        self.attributes = attributes
        self.custom_parameters = custom_parameters
        self.tokens: list[m.RelayText] = []
        self.replies: list[str] = []
        self.plays: list[m.RelayPlay] = []
        self.digits: list[str] = []
        self.languages: list[m.RelayLanguage] = []
        self.ended: m.RelayEnd | None = None
        self._partial: list[str] = []
        self._taken = 0
        self._changed = anyio.Event()

    async def _begin(self) -> None:
        await self.send_message(
            m.RelaySetup(
                sessionId=self.session_id,
                accountSid=self.account_sid,
                callSid=self.call_sid,
                from_=self.from_,
                to=self.to,
                callType="PSTN",
                direction="inbound",
                callStatus="RINGING",
                customParameters=dict(self.custom_parameters),
            )
        )

    async def _handle(self, raw: str | bytes) -> None:
        try:
            msg = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Twilio answers an invalid message with an error message and carries on (64107)
            self._bad(f"invalid message: {exc}")
            await self.send_message(m.RelayError(description=f"Invalid message received: {exc}"))
            return
        self.messages.append(msg)
        if isinstance(msg, m.RelayText):
            self.tokens.append(msg)
            self._partial.append(msg.token)
            if msg.last:
                self.replies.append("".join(self._partial))
                self._partial.clear()
        elif isinstance(msg, m.RelayPlay):
            self.plays.append(msg)
        elif isinstance(msg, m.RelaySendDigits):
            self.digits.append(msg.digits)
        elif isinstance(msg, m.RelayLanguage):
            self.languages.append(msg)
        elif isinstance(msg, m.RelayEnd):
            self.ended = msg
        self._changed.set()
        self._changed = anyio.Event()

    async def _receive_loop(self) -> None:
        try:
            await super()._receive_loop()
        finally:
            self._changed.set()  # waiters see the close at once

    # ------------------------------------------------------------------- to the server

    async def say(self, text: str, *, lang: str = "en-US", fragments: int = 1) -> None:
        """The caller says ``text``: a ``prompt`` with ``last=true`` -- or, with
        ``fragments`` > 1, that many partial prompts, only the final one ``last``."""
        if fragments < 1:
            raise ValueError("fragments must be >= 1")
        step = max(1, -(-len(text) // fragments))
        parts = [text[i : i + step] for i in range(0, len(text), step)] or [""]
        for i, part in enumerate(parts):
            await self.send_message(
                m.RelayPrompt(voicePrompt=part, lang=lang, last=i == len(parts) - 1)
            )

    async def interrupt(self, heard: str, heard_ms: float) -> None:
        """Barge in, having heard ``heard`` of the agent's reply over ``heard_ms`` ms."""
        await self.send_message(
            m.RelayInterrupt(utteranceUntilInterrupt=heard, durationUntilInterruptMs=heard_ms)
        )

    async def send_dtmf(self, digits: str) -> None:
        """Press keys: one ``dtmf`` message per digit (needs ``dtmfDetection`` in the TwiML)."""
        for digit in digits:
            if digit not in _DIGITS:
                raise ValueError(f"DTMF digit {digit!r}: use 0-9, *, # or A-D")
            await self.send_message(m.RelayDtmf(digit=digit))

    async def wait_for_reply(self, timeout: float = 10.0) -> str:
        """The next complete reply (talk cycle) not returned before; ``TimeoutError`` if none
        comes within ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            while self._taken >= len(self.replies):
                if self.closed:
                    break
                await self._changed.wait()
            if self._taken < len(self.replies):
                self._taken += 1
                return self.replies[self._taken - 1]
        raise TimeoutError(f"no reply within {timeout:g}s (tokens so far: {self._partial!r})")

    async def wait_for_end(self, timeout: float = 10.0) -> m.RelayEnd:
        """The agent's ``end`` message; ``TimeoutError`` if it does not come."""
        with anyio.move_on_after(timeout):
            while self.ended is None and not self.closed:
                await self._changed.wait()
        if self.ended is None:
            raise TimeoutError(f"no 'end' within {timeout:g}s")
        return self.ended


class RelayCaller(Dialer):
    """Places simulated ConversationRelay calls to a server at ``base_url`` (arguments as for
    :class:`~voicegraph.testing.twilio_caller.TwilioCaller`)."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        *,
        account_sid: str = "AC" + "0" * 32,
        to: str = "+14155550199",
        from_: str = "+14155550100",
        public_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            base_url,
            auth_token,
            to=to,
            from_=from_,
            public_url=public_url,
            playback_rate=1.0,
            timeout=timeout,
        )
        self.account_sid = account_sid

    @asynccontextmanager
    async def dial(
        self, path: str = "/call/incoming", *, extra: Mapping[str, str] | None = None
    ) -> AsyncIterator[RelayCall]:
        """Call the server: webhook, TwiML, WebSocket, ``setup``. Raises :class:`CallRejected`
        when the answer holds no ``<Connect><ConversationRelay>``. Leaving the block hangs up
        (closes the socket) unless the session already ended."""
        call_sid = "CA" + secrets.token_hex(16)
        form = twilio_webhook_form(call_sid, self.account_sid, self.from_, self.to, extra)
        signed = (self.public_url or self.base_url) + path
        sig = compute_twilio_signature(signed, form, self._auth_token)
        twiml = await post_webhook(
            self.base_url + path, form, {"X-Twilio-Signature": sig}, self.timeout
        )
        relay = twiml.find("./Connect/ConversationRelay")
        if relay is None or not relay.get("url"):
            raise CallRejected("TwiML has no <Connect><ConversationRelay url=...>", 200)
        url = relay.get("url", "")
        params = {p.get("name", ""): p.get("value", "") for p in relay.findall("Parameter")}
        headers = {"X-Twilio-Signature": compute_twilio_signature(url, None, self._auth_token)}
        target = local_target(url, self.base_url, self.public_url)
        async with connect_websocket(target, headers, connect_timeout=self.timeout) as sock:
            call = RelayCall(
                sock,
                call_sid=call_sid,
                account_sid=self.account_sid,
                from_=self.from_,
                to=self.to,
                attributes=dict(relay.attrib),
                custom_parameters=params,
            )
            async with call.running():
                yield call
