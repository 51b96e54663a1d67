"""The call webhook: the carrier's first request for a call, answered with TwiML / Plivo XML
that opens the stream.

The carrier POSTs the call webhook (GET is accepted too). Its signature is checked against the
*public* URL (the server behind a TLS proxy sees plain http); a bad or missing signature gets 403
and starts nothing. The call is routed by the called number to its :class:`CallInterface`
(for a call placed with ``dial()``, by the calling number), admitted against ``max_calls``, and
answered with a stream whose parameters carry a signed, expiring, single-use token bound to the
call id and line (:mod:`voicegraph.server.stream_token`). While the runtime drains, every webhook
gets 503.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..backends import spawn_system_task
from . import reports
from .answer import answer_document
from .carriers import stream_subject
from .cluster import admit_call
from .signatures import validate_plivo_v3_signature, validate_twilio_signature

if TYPE_CHECKING:
    from ..interface import CallInterface
    from .agent_runtime import AgentRuntime

__all__ = ["answer_webhook", "answered_outbound"]

logger = logging.getLogger("voicegraph.server")


async def answer_webhook(runtime: AgentRuntime, request: Any, response_cls: Any) -> Any:
    """Answer one call webhook (a Quart ``request``) with a ``response_cls`` response: the
    stream-opening document, or a refusal (403 bad signature, 404 no line for the number, 400
    malformed call id, 503 draining or not admitted)."""

    def reply(status: int, body: str, ctype: str = "text/plain") -> Any:
        return response_cls(body, status=status, content_type=ctype)

    if runtime.draining:
        return reply(503, "shutting down; not taking new calls")
    group = runtime.webhooks[request.path]
    telephony = group[0].telephony
    if request.method == "POST":
        form = await request.form
        pairs = list(form.items(multi=True))
        signed: list[tuple[str, str]] | None = pairs
    else:
        pairs, signed = list(request.args.items(multi=True)), None
    values = dict(pairs)
    query = request.query_string.decode("latin-1")
    prefix = runtime.mount_prefix(request.root_path)
    url = runtime.public_base(request.scheme, _lower(request.headers.items()), False)
    url += prefix + request.path + ("?" + query if query else "")
    # an outbound call's webhook names our line as From and the callee as To
    outbound = values.get("Direction", "").startswith("outbound")
    ours, theirs = ("From", "To") if outbound else ("To", "From")
    line_digits = "".join(c for c in values.get(ours, "") if c.isdigit())
    iface = next((i for i in group if i.line == line_digits), None)
    headers = request.headers
    if telephony == "twilio":
        sig = headers.get("X-Twilio-Signature")
        ok = partial(validate_twilio_signature, url, signed, sig)
    else:
        sig, nonce = (
            headers.get("X-Plivo-Signature-V3"),
            headers.get("X-Plivo-Signature-V3-Nonce"),
        )
        ok = partial(validate_plivo_v3_signature, request.method, url, signed, nonce, sig)
    if iface is None:
        if any(ok(i.auth_token) for i in group):
            logger.warning("webhook for unconfigured number %r; hanging up", values.get("To"))
            return reply(404, "no line for this number")
        logger.warning("webhook with invalid signature refused (%s)", url)
        return reply(403, "invalid signature")
    if not ok(iface.auth_token):
        logger.warning("webhook with invalid signature refused (%s)", url)
        return reply(403, "invalid signature")
    call_id = values.get("CallSid" if telephony == "twilio" else "CallUUID", "")
    if not call_id or len(call_id) > 64 or not call_id.replace("-", "").isalnum():
        return reply(400, "missing or malformed call id")
    caller = values.get(theirs, "")
    if telephony == "plivo":
        caller = "".join(c for c in caller if c.isdigit())
    caller = caller[:64]
    refusal = await admit_call(runtime, call_id, iface)
    if refusal is not None:
        return reply(503, refusal)
    params = {"line": iface.line, "caller": caller}
    if outbound:
        mode = request.args.get("dial", "")
        params["dial"] = await answered_outbound(runtime, telephony, call_id, values, mode)
        if telephony == "plivo" and request.args.get("rec") == "1":
            # answered now: the recording starts beside the answer, which must not wait for it
            spawn_system_task(partial(record_on_plivo, runtime, iface, call_id))
    token = runtime.tokens[id(iface)].mint(call_id, stream_subject(params))
    lower = _lower(headers.items())
    if runtime.media is not None and runtime.media.serving:  # the streams' own listener
        stream_url = runtime.media.stream_url(runtime, request.scheme, lower)
    else:
        stream_url = runtime.public_base(request.scheme, lower, True) + prefix
    doc = answer_document(iface, stream_url + iface.stream_path, {"token": token, **params})
    logger.info("[%s] answered on %s (%s)", call_id, iface.phone_number, iface.pipeline)
    return reply(200, doc, "application/xml")


async def answered_outbound(
    runtime: AgentRuntime, telephony: str, call_id: str, form: dict[str, str], mode: str
) -> str:
    """The webhook of a call placed by ``dial()``: link Plivo's request UUID to the call UUID,
    report the answer (Twilio reports it itself), and return the stream's ``dial`` parameter:
    ``"amd"`` when machine detection was asked for (the webhook URL says so), else ``"out"``."""
    from ..frames import CallStatus

    if telephony == "plivo":
        request_uuid = form.get("RequestUUID", "")[:64]
        if request_uuid:
            await reports.alias(runtime, request_uuid, call_id)
        answered = CallStatus(call_id=call_id, status="answered", carrier_status="in-progress")
        await reports.deliver(runtime, call_id, answered)
        from .outbound import notify

        await notify(runtime.on_status, answered)
    return "amd" if mode == "amd" else "out"


async def record_on_plivo(runtime: AgentRuntime, iface: CallInterface, call_id: str) -> None:
    """Have Plivo record answered call ``call_id`` (``dial(carrier_recording=True)``); its
    report comes to the status path. A refusal is logged: the call goes on unrecorded."""
    from ..transports._rest import DialError
    from .carrier_rest import plivo_rest

    assert runtime.public_url is not None  # dial() refuses to place calls without one
    try:
        await plivo_rest(iface).record(
            call_id,
            callback_url=runtime.public_url + runtime.status_path,
            time_limit=int(iface.max_call_duration_seconds) + 60,
        )
    except DialError as exc:
        logger.error("[%s] Plivo did not start the recording: %s", call_id, exc)
        return
    logger.info("[%s] Plivo records the call", call_id)


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}
