"""What the carriers' REST APIs accept, as FakeCarrierREST checks it: the paths it serves, the
create-call checks (Twilio's form, Plivo's JSON body) with the carriers' errors, the form of a
request, the number a transfer's TwiML / Plivo XML dials, and Plivo's Record API."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import msgspec

from .fakeserver import HTTPRequest

_TWILIO_CREATE = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Calls\.json")
_PLIVO_CREATE = re.compile(r"/v1/Account/(?P<account>[^/]+)/Call/")
_TWILIO = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/]+)\.json")
_E164 = re.compile(r"\+?[1-9][0-9]{1,14}")
_PLIVO = re.compile(r"/v1/Account/(?P<account>[^/]+)/Call/(?P<call>[^/]+)/")
_PLIVO_RECORD = re.compile(r"/v1/Account/(?P<account>[^/]+)/Call/(?P<call>[^/]+)/Record/")
_PLIVO_REQUEST = re.compile(r"/v1/Account/(?P<account>[^/]+)/Request/(?P<call>[^/]+)/")


def twilio_create_errors(form: Mapping[str, list[str]]) -> tuple[int, str] | None:
    """What Twilio would refuse in a create-call form, as ``(code, message)``."""
    one = {k: v[0] for k, v in form.items() if v}
    e164 = re.compile(r"\+[1-9][0-9]{1,14}")
    if not e164.fullmatch(one.get("To", "")):
        return 21211, "Invalid 'To' Phone Number"
    if not e164.fullmatch(one.get("From", "")):
        return 21212, "Invalid 'From' Phone Number"
    if not re.fullmatch(r"https?://\S+", one.get("Url", "")):
        return 21205, "Url is not a valid URL"
    for name in ("Method", "StatusCallbackMethod", "AsyncAmdStatusCallbackMethod"):
        if one.get(name, "POST") not in ("GET", "POST"):
            return 21207, f"{name} must be GET or POST"
    if one.get("MachineDetection", "Enable") not in ("Enable", "DetectMessageEnd"):
        return 21218, "MachineDetection must be Enable or DetectMessageEnd"
    events = set(form.get("StatusCallbackEvent", []))
    if not events <= {"initiated", "ringing", "answered", "completed"}:
        return 21626, "StatusCallbackEvent holds an unknown event"
    for flag in ("AsyncAmd", "Record"):
        if one.get(flag, "false") not in ("true", "false"):
            return 21218, f"{flag} must be true or false"
    timeout = one.get("Timeout", "60")
    if not timeout.isdigit() or not 1 <= int(timeout) <= 600:
        return 21218, "Timeout must be 1..600"
    return None


def plivo_create_errors(body: Any) -> str | None:
    """What Plivo would refuse in a create-call JSON body."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    for name in ("from", "to"):
        if not re.fullmatch(r"[1-9][0-9]{1,14}", str(body.get(name, ""))):
            return f"{name} must be a phone number with its country code"
    for name in ("answer_url", "hangup_url", "ring_url", "machine_detection_url"):
        if name in body and not re.fullmatch(r"https?://\S+", str(body[name])):
            return f"{name} is not a valid URL"
    if "answer_url" not in body:
        return "answer_url is required"
    for name in ("answer_method", "hangup_method", "ring_method", "machine_detection_method"):
        if body.get(name, "POST") not in ("GET", "POST"):
            return f"{name} must be GET or POST"
    if body.get("machine_detection", "true") not in ("true", "hangup"):
        return "machine_detection must be true or hangup"
    for name in ("ring_timeout", "time_limit", "machine_detection_time"):
        if name in body and not isinstance(body[name], int):
            return f"{name} must be an integer"
    return None


def _form(request: HTTPRequest) -> dict[str, list[str]]:
    """Form fields of a urlencoded body, or the fields of a JSON object body (the plivo
    library sends JSON)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            obj = msgspec.json.decode(request.body)
        except msgspec.DecodeError:
            return {}
        if not isinstance(obj, dict):
            return {}
        return {str(k): [str(v)] for k, v in obj.items() if v is not None}
    return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)


def dial_number(document: str) -> str | None:
    """The number (E.164, with ``+``) a TwiML / Plivo XML document dials:
    ``<Response><Dial>NUMBER</Dial>`` or ``<Response><Dial><Number>NUMBER</Number></Dial>``;
    ``None`` if it is anything else."""
    try:
        root = ET.fromstring(document.strip().encode())
    except ET.ParseError:
        return None
    if root.tag != "Response" or len(root) != 1 or root[0].tag != "Dial":
        return None
    dial = root[0]
    if len(dial) == 1 and dial[0].tag == "Number" and not len(dial[0]):
        text = dial[0].text or ""
    elif len(dial) == 0:
        text = dial.text or ""
    else:
        return None
    text = text.strip()
    if not _E164.fullmatch(text):
        return None
    return text if text.startswith("+") else "+" + text  # Plivo writes numbers without "+"


def plivo_recording(
    raw: bytes, base_url: str, account: str
) -> tuple[int, dict[str, object], dict[str, Any] | None]:
    """Plivo's answer to a Record API body on an answered call, and the recording it starts
    (``callback_url``, ``record_url``, ``id``, the ``request`` as sent) or ``None``."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return 400, {"error": "the body is not JSON"}, None
    url = body.get("callback_url", "") if isinstance(body, dict) else ""
    fmt = body.get("file_format", "mp3") if isinstance(body, dict) else ""
    if not str(url).startswith(("http://", "https://")) or fmt not in ("mp3", "wav"):
        return 400, {"error": "callback_url must be a URL and file_format mp3 or wav"}, None
    rid = str(uuid.uuid4())
    record_url = f"{base_url}/v1/Account/{account}/Recording/{rid}.{fmt}"
    answer: dict[str, object] = {
        "url": record_url,
        "message": "call recording started",
        "recording_id": rid,
        "api_id": str(uuid.uuid4()),
    }
    return (
        202,
        answer,
        {"callback_url": str(url), "record_url": record_url, "id": rid, "request": body},
    )
