"""Transferring a live call to a phone number, per carrier.

* Twilio: the REST API replaces the call's TwiML with ``<Dial>`` (see
  :mod:`voicegraph.transports.twilio.rest`).
* Plivo: the Transfer API (``POST .../Call/{uuid}/`` with ``legs=aleg`` and ``aleg_url``)
  makes Plivo fetch a new XML document for the call from ``aleg_url``; the runtime serves that
  document itself (``<Response><Dial><Number>``) on ``<webhook_path>/transfer``. The URL
  carries the call id, the number, an expiry and an HMAC over them keyed by the auth token, so
  only transfers this runtime asked for are served (and, when Plivo signs the fetch with
  ``X-Plivo-Signature-V3``, that signature must hold too).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from .carrier_rest import plivo_rest, twilio_rest
from .signatures import validate_plivo_v3_signature
from .stream_token import derive_secret

if TYPE_CHECKING:
    from ..interface import CallInterface
    from .agent_runtime import AgentRuntime

__all__ = [
    "TransferLinks",
    "rest_transfer",
    "serve_transfer",
    "transfer_document",
    "transfer_path",
    "transfer_routes",
]

logger = logging.getLogger("voicegraph.server")

LINK_TTL = 120.0  # seconds from the REST request to Plivo fetching the document
MAX_BODY = 16 * 1024
_XML = '<?xml version="1.0" encoding="UTF-8"?>'


def transfer_path(iface: CallInterface) -> str:
    """Where a Plivo interface serves its transfer documents."""
    return iface.webhook_path.rstrip("/") + "/transfer"


def transfer_routes(interfaces: Sequence[CallInterface]) -> dict[str, list[CallInterface]]:
    """Transfer document paths of the Plivo interfaces: path -> interfaces sharing it."""
    routes: dict[str, list[CallInterface]] = {}
    for i in interfaces:
        if i.telephony == "plivo":
            routes.setdefault(transfer_path(i), []).append(i)
    return routes


def transfer_document(number: str) -> str:
    """Plivo XML that connects the call to ``number`` (E.164; Plivo takes it without ``+``)."""
    digits = number.removeprefix("+")
    if not digits.isdigit():
        raise ValueError(f"transfer number {number!r} is not E.164 (like +15551234567)")
    return f"{_XML}<Response><Dial><Number>{digits}</Number></Dial></Response>"


class TransferLinks:
    """Signed, expiring query strings for transfer documents (keyed by the auth token, so any
    worker can check a link another worker made)."""

    def __init__(
        self, auth_token: str, ttl: float = LINK_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = derive_secret(auth_token, "voicegraph transfer link v1")
        self.ttl = ttl
        self._clock = clock

    def _mac(self, call_id: str, number: str, expiry: str) -> str:
        msg = "\x1f".join((call_id, number, expiry)).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def query(self, call_id: str, number: str) -> str:
        """The query string that authorises transferring ``call_id`` to ``number``."""
        expiry = f"{int(self._clock() + self.ttl):x}"
        sig = self._mac(call_id, number, expiry)
        return urlencode({"call": call_id, "to": number, "exp": expiry, "sig": sig})

    def check(self, query: dict[str, list[str]]) -> str | None:
        """The number a query authorises, or ``None`` if it is forged, altered or expired."""
        try:
            [call_id], [number], [expiry], [sig] = (
                query["call"],
                query["to"],
                query["exp"],
                query["sig"],
            )
            expires = int(expiry, 16)
        except (KeyError, ValueError):
            return None
        if not hmac.compare_digest(sig, self._mac(call_id, number, expiry)):
            return None
        return number if expires >= self._clock() else None


async def rest_transfer(
    iface: CallInterface, call_id: str, number: str, http_base: str | None = None
) -> None:
    """Transfer the call to ``number`` through the carrier's REST API. Errors are logged: the
    call then continues with the agent, which is better than dropping the caller.

    ``http_base``: the runtime's public http(s) URL (Plivo fetches the transfer document
    there)."""
    from ..transports._rest import HangupError

    try:
        if iface.telephony == "twilio":
            await twilio_rest(iface).transfer(call_id, number)
        else:
            if http_base is None:
                raise HangupError("no public URL to serve the Plivo transfer document from")
            url = http_base + transfer_path(iface) + "?"
            url += TransferLinks(iface.auth_token).query(call_id, number)
            await plivo_rest(iface).transfer(call_id, url)
    except HangupError as exc:
        logger.error("[%s] transfer failed: %s", call_id, exc)
        return
    logger.info("[%s] transferred via REST", call_id)


async def serve_transfer(
    runtime: AgentRuntime,
    group: list[CallInterface],
    scope: dict[str, Any],
    receive: Any,
    send: Any,
) -> None:
    """Answer Plivo's fetch of a transfer document (raw ASGI HTTP). Never raises."""

    async def reply(status: int, body: str, ctype: str = "text/plain") -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    if scope["method"] not in ("GET", "POST"):
        await reply(405, "method not allowed")
        return
    body = b""
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return  # the client left
        body += msg.get("body", b"")
        if len(body) > MAX_BODY:
            await reply(413, "body too large")
            return
        if not msg.get("more_body", False):
            break
    query_string = scope.get("query_string", b"").decode("latin-1")
    query = parse_qs(query_string)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    url = runtime.public_base(scope.get("scheme", "http"), headers, False) + scope["path"]
    url += "?" + query_string if query_string else ""
    form = parse_qs(body.decode("utf-8", "replace")) if scope["method"] == "POST" else None
    for iface in group:
        number = TransferLinks(iface.auth_token).check(query)
        if number is None:
            continue
        sig = headers.get("x-plivo-signature-v3")
        if sig is not None and not validate_plivo_v3_signature(
            scope["method"],
            url,
            form,
            headers.get("x-plivo-signature-v3-nonce"),
            sig,
            iface.auth_token,
        ):
            break
        try:
            document = transfer_document(number)
        except ValueError:
            break
        logger.info("[%s] serving transfer document", query.get("call", ["?"])[0][:64])
        await reply(200, document, "application/xml")
        return
    logger.warning("transfer document request refused: invalid or expired link or signature")
    await reply(403, "invalid transfer link")
