"""A fake of the carriers' REST APIs, for what voicegraph calls them for: placing a call,
hanging up, and (Twilio) transferring a call.

* Placing: Twilio ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (a form) -> 201 and a
  call resource; Plivo ``POST /v1/Account/{auth_id}/Call/`` (a JSON body) -> 201 with a
  ``request_uuid``. Fields are checked as the carrier checks them (400 with the carrier's error
  otherwise). The fake then places the call (:mod:`voicegraph.testing.fake_dial`): it rings the
  :class:`~voicegraph.testing.fake_dial.Callee` that ``callee`` names for the number, dials the
  runtime's webhook for a callee who answers (``reach``: where the runtime really listens, when
  its public URL is not where it listens), and posts signed status callbacks. Each placed call
  is a :class:`~voicegraph.testing.fake_dial.PlacedCall` in :attr:`FakeCarrierREST.placed`.

* Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with
  ``Status=completed`` -> 200 and a JSON call resource; 404 ``{"code": 20404}`` for a call that
  has already ended. ``Twiml=<Response><Dial>+E164</Dial></Response>`` (an XML declaration
  first, as the twilio library writes it, is fine; so is ``<Dial><Number>``) redirects the call
  to that number (a transfer, recorded in :attr:`FakeCarrierREST.transfers`).
  ``Status=canceled`` ends a placed call still ringing and leaves a call in progress alone.
  A placed call that is hung up ends as Twilio ends it: ``canceled`` while it rings (the
  callee's phone stops), ``completed`` once answered (the carrier closes the stream).
* Plivo: ``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/`` -> 204; 404 if already gone.
  ``DELETE /v1/Account/{auth_id}/Request/{request_uuid}/`` cancels a placed call that still
  rings (204, then ``cancel`` to its hangup URL); 404 once it was answered or is over.
  ``POST /v1/Account/{auth_id}/Call/{call_uuid}/Record/`` (a JSON body: ``callback_url``,
  ``time_limit``, ``file_format``) records an answered placed call: 202, and when the call
  ends the Record API's callback (``record_url``, ``recording_duration``, ...) is posted.
  ``POST`` to the same path with a JSON body ``{"legs": "aleg", "aleg_url": ..., "aleg_method":
  ...}`` is the Transfer API: -> 202, then, like Plivo, the fake fetches ``aleg_url`` (signed
  with ``X-Plivo-Signature-V3``) and records the ``<Dial><Number>`` of the XML it gets back in
  :attr:`FakeCarrierREST.transfers`.

Both check HTTP Basic credentials (401 otherwise) and record every request in
:attr:`FakeCarrierREST.requests`, authorised or not. ``fail_first`` makes the first N requests
answer 503, to exercise retries. ``on_hangup`` is called with the call id of each accepted
hang-up (e.g. to make a simulated caller see the call end).

This module is the server; what the carriers accept (paths, create-call checks, the number a
transfer dials) is in ``_carrier_api.py``, and placing a call in ``fake_dial.py``.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

import anyio
import httpx
import msgspec

from ..server.signatures import compute_plivo_v3_signature
from ._carrier_api import (
    _PLIVO,
    _PLIVO_CREATE,
    _PLIVO_RECORD,
    _PLIVO_REQUEST,
    _TWILIO,
    _TWILIO_CREATE,
    _form,
    dial_number,
    plivo_create_errors,
    plivo_recording,
    twilio_create_errors,
)
from .fake_dial import Callee, PlacedCall, Placement
from .fakeserver import FakeServer, HTTPRequest, HTTPResponse

__all__ = ["Callee", "FakeCarrierREST", "PlacedCall", "RecordedHangup", "dial_number"]

MAX_PLACED = 1000


@dataclass
class RecordedHangup:
    """One request the fake received."""

    method: str
    path: str
    call_id: str
    form: dict[str, list[str]]
    authorised: bool
    status: int


class FakeCarrierREST(FakeServer):
    """Fake Twilio (``carrier="twilio"``) or Plivo (``"plivo"``) REST endpoint on 127.0.0.1.

    Use as ``async with FakeCarrierREST("twilio", account_id, auth_token) as rest:`` and point
    the interface's ``api_base_url`` at :attr:`base_url`. ``ended``: call ids that count as
    already ended (404)."""

    def __init__(
        self,
        carrier: str,
        account_id: str,
        auth_token: str,
        *,
        fail_first: int = 0,
        ended: set[str] | None = None,
        on_hangup: Callable[[str], None] | None = None,
        callee: Callee | Callable[[str], Callee] | None = None,
        reach: str | None = None,
        playback_rate: float = 1.0,
        place: bool = True,
    ) -> None:
        if carrier not in ("twilio", "plivo"):
            raise ValueError(f"carrier must be 'twilio' or 'plivo', got {carrier!r}")
        super().__init__(max_body=64 * 1024)
        self.carrier = carrier
        self.account_id = account_id
        self._auth_token = auth_token
        self.fail_first = fail_first
        self.ended = set(ended or ())
        self.on_hangup = on_hangup
        self.requests: list[RecordedHangup] = []
        self.transfers: list[tuple[str, str]] = []
        """``(call id, number)`` of each accepted transfer (Plivo: once its XML was fetched)."""
        self.runtime_url: str | None = None
        """Plivo: where the runtime really listens, when it differs from the public URL it puts
        into ``aleg_url`` (tests): the fetch goes there, signed for the public URL."""
        self.transfer_fetches: list[int] = []
        """Plivo: the HTTP status of each fetch of a transfer's ``aleg_url``."""
        self.callee = callee
        """Who answers a placed call: one :class:`Callee` for every number, or a function
        from the E.164 number to its callee (default: a silent person)."""
        self.reach = reach
        self.place = place
        """False: accept create requests without placing the calls (nothing rings, nothing is
        posted): for tests of the requests alone."""
        self.playback_rate = playback_rate
        self.placed: list[PlacedCall] = []
        self.errors: list[str] = []
        """Why placed calls failed on the runtime's side (webhook refused, no stream...)."""
        self._changed = anyio.Event()

    def __repr__(self) -> str:
        return f"FakeCarrierREST({self.carrier!r}, port={self.port})"

    async def __aenter__(self) -> FakeCarrierREST:
        await super().__aenter__()
        return self

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the interface's ``api_base_url``."""
        return self.http_url

    @property
    def hangups(self) -> list[str]:
        """Call ids of accepted hang-ups, in order."""
        transferred = {c for c, _ in self.transfers}
        return [
            r.call_id
            for r in self.requests
            if r.authorised and r.status in (200, 204) and r.call_id not in transferred
        ]

    async def wait_for_hangup(self, call_id: str, timeout: float = 10.0) -> bool:
        """Wait until ``call_id`` has been hung up; False after ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            while call_id not in self.hangups:
                await self._changed.wait()
            return True
        return False

    async def wait_placed(self, count: int = 1, timeout: float = 10.0) -> PlacedCall:
        """Wait until ``count`` calls were placed and return the last; ``TimeoutError`` after
        ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            while len(self.placed) < count:
                await self._changed.wait()
            return self.placed[count - 1]
        raise TimeoutError(f"{len(self.placed)} call(s) placed, not {count}, in {timeout:g}s")

    def _record(self, request: HTTPRequest, match: re.Match[str]) -> tuple[int, dict[str, object]]:
        """Plivo's Record API on a placed call that is up."""
        if not (self._authorised(request) and match["account"] == self.account_id):
            return 401, {"error": "authentication failed"}
        placed = self._placed(match["call"])
        if placed is None or placed.call_id != match["call"] or not placed.picked_up:
            return 404, {"error": "call not found"}
        status, answer, recording = plivo_recording(request.body, self.base_url, self.account_id)
        if recording is not None:
            placed.recording = recording
        return status, answer

    def _placed(self, call_id: str) -> PlacedCall | None:
        """The placed call ``call_id`` names (its call id or, on Plivo, its request id) that is
        still ringing or up."""
        for placed in self.placed:
            if call_id in (placed.call_id, placed.request_id) and not placed.done.is_set():
                return placed
        return None

    def _callee_for(self, number: str) -> Callee:
        if self.callee is None:
            return Callee()
        return self.callee if isinstance(self.callee, Callee) else self.callee(number)

    async def _create(self, request: HTTPRequest, response: HTTPResponse) -> None:
        twilio = self.carrier == "twilio"
        match = (_TWILIO_CREATE if twilio else _PLIVO_CREATE).fullmatch(request.path)
        assert match is not None
        if not (self._authorised(request) and match["account"] == self.account_id):
            await response.send_json(401, b'{"code": 20003, "message": "Authenticate"}')
            return
        if self.fail_first > 0:
            self.fail_first -= 1
            await response.send_json(503, b'{"message": "service unavailable (injected)"}')
            return
        if len(self.placed) >= MAX_PLACED:
            await response.send_json(429, b'{"message": "too many calls"}')
            return
        if twilio:
            form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            bad = twilio_create_errors(form)
            if bad is not None:
                body = {"code": bad[0], "message": bad[1], "status": 400}
                await response.send_json(400, msgspec.json.encode(body))
                return
            req: dict[str, object] = {k: v if len(v) > 1 else v[0] for k, v in form.items()}
            if "StatusCallbackEvent" in form:
                req["StatusCallbackEvent"] = form["StatusCallbackEvent"]
            call_id = request_id = "CA" + secrets.token_hex(16)
            to, from_ = str(req["To"]), str(req["From"])
            answer: dict[str, object] = {
                "sid": call_id,
                "account_sid": self.account_id,
                "to": to,
                "from": from_,
                "status": "queued",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_id}/Calls/{call_id}.json",
            }
        else:
            try:
                req = msgspec.json.decode(request.body)
            except msgspec.DecodeError:
                req = None  # type: ignore[assignment]
            bad_plivo = plivo_create_errors(req)
            if bad_plivo is not None:
                await response.send_json(400, msgspec.json.encode({"error": bad_plivo}))
                return
            request_id, call_id = str(uuid.uuid4()), str(uuid.uuid4())
            to, from_ = str(req["to"]), str(req["from"])
            answer = {
                "api_id": str(uuid.uuid4()),
                "message": "call fired",
                "request_uuid": request_id,
            }
        placed = PlacedCall(
            self.carrier,
            call_id,
            request_id,
            to,
            from_,
            req,
            self._callee_for(to if twilio else "+" + to),
        )
        self.placed.append(placed)
        self._changed.set()
        self._changed = anyio.Event()
        assert self._tg is not None
        if self.place:
            self._tg.start_soon(Placement(self, placed).run)
        await response.send_json(201, msgspec.json.encode(answer))

    def _authorised(self, request: HTTPRequest) -> bool:
        header = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(
            f"{self.account_id}:{self._auth_token}".encode()
        ).decode("ascii")
        return hmac.compare_digest(header.encode(), expected.encode())

    async def http(self, request: HTTPRequest, response: HTTPResponse) -> None:
        create = _TWILIO_CREATE if self.carrier == "twilio" else _PLIVO_CREATE
        if request.method == "POST" and create.fullmatch(request.path):
            await self._create(request, response)
            return
        record = _PLIVO_RECORD.fullmatch(request.path) if self.carrier == "plivo" else None
        if request.method == "POST" and record is not None:
            status, body = self._record(request, record)
            self.requests.append(
                RecordedHangup(request.method, request.path, record["call"], {}, True, status)
            )
            await response.send_json(status, msgspec.json.encode(body))
            return
        methods: tuple[str, ...]
        if self.carrier == "twilio":
            match, methods = _TWILIO.fullmatch(request.path), ("POST",)
        else:
            match, methods = _PLIVO.fullmatch(request.path), ("DELETE", "POST")
            if match is None and (match := _PLIVO_REQUEST.fullmatch(request.path)):
                methods = ("DELETE",)
        form = _form(request)
        call_id = match["call"] if match else ""
        authorised = (
            self._authorised(request) and match is not None and match["account"] == self.account_id
        )
        status, body = self._answer(request, match, methods, form, call_id, authorised)
        if status == 202:
            status, body = await self._plivo_transfer(call_id, form)
        self.requests.append(
            RecordedHangup(request.method, request.path, call_id, form, authorised, status)
        )
        hung_up = status in (200, 204) and call_id in self.ended
        placed = self._placed(call_id) if hung_up else None
        if placed is not None and not any(c == call_id for c, _ in self.transfers):
            placed.hang_up()
        if status in (200, 204) and self.on_hangup is not None:
            self.on_hangup(call_id)
        self._changed.set()
        self._changed = anyio.Event()
        if status == 204:
            await response.start(204)
        else:
            await response.send_json(status, msgspec.json.encode(body))

    def _answer(
        self,
        request: HTTPRequest,
        match: re.Match[str] | None,
        methods: tuple[str, ...],
        form: dict[str, list[str]],
        call_id: str,
        authorised: bool,
    ) -> tuple[int, dict[str, object]]:
        if match is None or request.method not in methods:
            return 404, {"message": "not found"}
        if not authorised:
            return 401, {"code": 20003, "message": "Authenticate"}
        if self.fail_first > 0:
            self.fail_first -= 1
            return 503, {"message": "service unavailable (injected)"}
        if call_id in self.ended:
            return 404, {"code": 20404, "message": "call not found"}
        if self.carrier == "twilio":
            twiml = form.get("Twiml", [""])[0]
            if twiml:
                number = dial_number(twiml)
                if number is None:
                    return 400, {"code": 12100, "message": "Document parse failure"}
                self.transfers.append((call_id, number))
                self.ended.add(call_id)  # the stream ends; the call continues as the <Dial>
                return 200, {"sid": call_id, "status": "in-progress"}
            wanted = form.get("Status", [""])[0]
            if wanted not in ("completed", "canceled"):
                return 400, {"code": 21218, "message": "Status must be completed or canceled"}
            placed = self._placed(call_id)
            if wanted == "canceled" and (placed is None or placed.picked_up):
                return 200, {"sid": call_id, "status": "in-progress"}  # canceled spares it
            self.ended.add(call_id)
            return 200, {"sid": call_id, "status": wanted}
        if _PLIVO_REQUEST.fullmatch(request.path):
            placed = self._placed(call_id)
            if placed is None or placed.request_id != call_id or placed.picked_up:
                return 404, {"error": "request not found"}
            self.ended.add(call_id)
            return 204, {}
        if request.method == "POST":
            legs, url = form.get("legs", [""])[0], form.get("aleg_url", [""])[0]
            if legs != "aleg" or not url.startswith(("http://", "https://")):
                return 400, {"error": "legs must be aleg, with an http(s) aleg_url"}
            return 202, {}
        self.ended.add(call_id)
        return 204, {}

    async def _plivo_transfer(
        self, call_id: str, form: dict[str, list[str]]
    ) -> tuple[int, dict[str, object]]:
        """Fetch the transfer's XML as Plivo does (signed V3) and record its number."""
        url = form["aleg_url"][0]
        method = (form.get("aleg_method", ["POST"])[0] or "POST").upper()
        params = {"CallUUID": call_id, "CallStatus": "in-progress", "Event": "Transfer"}
        nonce = secrets.token_hex(10)
        signed = {k: [v] for k, v in params.items()} if method == "POST" else None
        headers = {
            "X-Plivo-Signature-V3": compute_plivo_v3_signature(
                method, url, signed, nonce, self._auth_token
            ),
            "X-Plivo-Signature-V3-Nonce": nonce,
        }
        target = url
        if self.runtime_url is not None:
            parts = urlsplit(url)
            target = self.runtime_url.rstrip("/") + urlunsplit(("", "", *parts[2:]))
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                resp = await client.request(
                    method, target, data=params if method == "POST" else None, headers=headers
                )
        except httpx.HTTPError:
            self.transfer_fetches.append(0)
            return 202, {"message": "call transferred", "api_id": "fake"}
        self.transfer_fetches.append(resp.status_code)
        number = dial_number(resp.text) if resp.status_code == 200 else None
        if number is not None:
            self.transfers.append((call_id, number))
            self.ended.add(call_id)
        return 202, {"message": "call transferred", "api_id": "fake"}
