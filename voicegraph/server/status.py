"""The runtime's status path: the carriers' reports about a call after it was placed.

Twilio posts its ``StatusCallback`` (initiated, ringing, answered, completed / busy /
no-answer / failed / canceled with ``CallDuration``), the asynchronous machine-detection result
(``AnsweredBy``) and recording reports (``RecordingUrl``); Plivo posts its ``ring_url``,
``hangup_url`` (``CallStatus``, ``Duration``, ``HangupCause``), ``machine_detection_url``
(``Machine``) and the Record API's callback (``record_url``, ``recording_duration``). Every report is signature-checked like the webhook (against the public URL),
turned into a frame -- :class:`~voicegraph.frames.CallStatus`,
:class:`~voicegraph.frames.AnsweredBy` or :class:`~voicegraph.frames.RecordingReady` -- and
delivered through the runtime's :class:`~voicegraph.server.outbound.CallRegistry` to the call's
handle and live graph -- on other workers too, with a shared state (:mod:`voicegraph.server.reports`);
statuses also go to ``AgentRuntime(on_status=...)``, on the worker that received the report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..frames import AnsweredBy, CallStatus, Frame, RecordingReady
from . import reports
from .outbound import notify
from .signatures import validate_plivo_v3_signature, validate_twilio_signature

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime

__all__ = ["parse_plivo", "parse_twilio", "status_webhook"]

logger = logging.getLogger("voicegraph.server.status")

_TWILIO_STATUS = {
    "queued": "initiated",
    "initiated": "initiated",
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "canceled": "canceled",
}
_PLIVO_STATUS = {
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no-answer",
    "timeout": "no-answer",
    "failed": "failed",
    "cancel": "canceled",
    "canceled": "canceled",
}


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def parse_twilio(form: Mapping[str, str]) -> tuple[str, Frame] | None:
    """A Twilio report as ``(call SID, frame)``; ``None`` if it is none we know."""
    sid = form.get("CallSid", "")
    if not sid:
        return None
    answered = form.get("AnsweredBy")
    if answered is not None:
        result = (
            "human"
            if answered == "human"
            else "machine"
            if answered.startswith("machine") or answered == "fax"
            else "unknown"
        )
        return (
            sid,
            AnsweredBy(
                result=result,  # type: ignore[arg-type]
                detail=answered[:40],
                greeting_over=answered.startswith("machine_end"),
            ),
        )
    if form.get("RecordingUrl"):
        if form.get("RecordingStatus", "completed") != "completed":
            return None
        return sid, RecordingReady(
            call_id=sid,
            url=form["RecordingUrl"][:500],
            duration=_seconds(form.get("RecordingDuration")) or 0.0,
        )
    raw = form.get("CallStatus", "")
    status = _TWILIO_STATUS.get(raw)
    if status is None:
        return None
    duration = _seconds(form.get("CallDuration")) if status in ("completed",) else None
    if status in ("busy", "no-answer", "failed", "canceled"):
        duration = 0.0
    return sid, CallStatus(call_id=sid, status=status, duration=duration, carrier_status=raw)


def parse_plivo(form: Mapping[str, str]) -> tuple[str, Frame] | None:
    """A Plivo report as ``(call UUID, frame)``; ``None`` if it is none we know."""
    if form.get("record_url") and form.get("call_uuid"):  # the Record API's callback
        uuid = form["call_uuid"][:64]
        return uuid, RecordingReady(
            call_id=uuid,
            url=form["record_url"][:500],
            duration=_seconds(form.get("recording_duration")) or 0.0,
        )
    uuid = form.get("CallUUID", "")
    if not uuid:
        return None
    machine = form.get("Machine")
    if machine is not None:
        result = {"true": "machine", "false": "human"}.get(machine.lower(), "unknown")
        return uuid, AnsweredBy(result=result, detail=machine[:40])  # type: ignore[arg-type]
    if form.get("RecordUrl"):
        return uuid, RecordingReady(
            call_id=uuid,
            url=form["RecordUrl"][:500],
            duration=_seconds(form.get("RecordingDuration")) or 0.0,
        )
    raw = form.get("CallStatus", "")
    status = _PLIVO_STATUS.get(raw)
    if status is None:
        return None
    final = status in ("completed", "busy", "no-answer", "failed", "canceled")
    return uuid, CallStatus(
        call_id=uuid,
        status=status,
        duration=(_seconds(form.get("Duration")) or 0.0) if final else None,
        carrier_status=raw,
        reason=form.get("HangupCauseName", form.get("HangupCause", ""))[:80],
    )


async def status_webhook(runtime: AgentRuntime, request: Any, response_cls: Any) -> Any:
    """Serve one status report (a Quart request): 403 unless signed by a line's carrier."""

    def reply(status: int, body: str = "") -> Any:
        return response_cls(body, status=status, content_type="text/plain")

    form = await request.form
    pairs = list(form.items(multi=True))
    values = dict(pairs)
    query = request.query_string.decode("latin-1")
    headers = request.headers
    url = runtime.public_base(request.scheme, {k.lower(): v for k, v in headers.items()}, False)
    url += runtime.mount_prefix(request.root_path) + request.path + ("?" + query if query else "")
    twilio_sig = headers.get("X-Twilio-Signature")
    plivo_sig = headers.get("X-Plivo-Signature-V3")
    nonce = headers.get("X-Plivo-Signature-V3-Nonce")
    if twilio_sig is not None:
        ok = any(
            validate_twilio_signature(url, pairs, twilio_sig, i.auth_token)
            for i in runtime.interfaces
            if i.telephony == "twilio"
        )
        parsed = parse_twilio(values) if ok else None
    elif plivo_sig is not None:
        ok = any(
            validate_plivo_v3_signature("POST", url, pairs, nonce, plivo_sig, i.auth_token)
            for i in runtime.interfaces
            if i.telephony == "plivo"
        )
        parsed = parse_plivo(values) if ok else None
    else:
        ok, parsed = False, None
    if not ok:
        logger.warning("status report with missing or invalid signature refused (%s)", url)
        return reply(403, "invalid signature")
    if parsed is None:
        return reply(204)
    call_id, frame = parsed
    request_uuid = values.get("RequestUUID")
    if plivo_sig is not None and request_uuid:
        await reports.alias(runtime, request_uuid[:64], call_id)
    logger.info("[%s] carrier reports %s", call_id, _describe(frame))
    await reports.deliver(runtime, call_id, frame)
    if isinstance(frame, CallStatus):
        await notify(runtime.on_status, frame)
    return reply(204)


def _describe(frame: Frame) -> str:
    if isinstance(frame, CallStatus):
        return frame.status + (f" after {frame.duration:g}s" if frame.duration else "")
    if isinstance(frame, AnsweredBy):
        return f"answered by {frame.result} ({frame.detail})"
    return "a recording"
