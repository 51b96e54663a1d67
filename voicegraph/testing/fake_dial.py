"""Outbound calls on the fake carrier: who picks up (:class:`Callee`) and how the fake places a
call it accepted (:class:`PlacedCall`): it rings, then dials the runtime's webhook as the
carrier would -- the simulated Twilio or Plivo caller, now on the callee's side -- runs the
callee, and posts signed status callbacks all along (and machine-detection and recording
reports when they were asked for).

Callees: a person (an optional script of what they say: ``async def script(call)``), an
answering machine (a greeting, a beep, then silence while it records), busy, no answer, or a
failed call.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import anyio
import numpy as np

from voicegraph.server.signatures import compute_plivo_v3_signature, compute_twilio_signature
from voicegraph.wsio import SocketClosed

from .wav import AudioSource

if TYPE_CHECKING:
    from .fake_rest import FakeCarrierREST

__all__ = ["Callee", "PlacedCall", "machine_greeting", "tone"]

Script = Callable[[Any], Awaitable[None]]


def tone(seconds: float, hz: float = 1000.0, rate: int = 8000, level: float = 0.5) -> np.ndarray:
    """A sine tone as int16 samples (an answering machine's beep)."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype(np.int16)


def machine_greeting(seconds: float = 2.0, rate: int = 8000) -> np.ndarray:
    """A voice-like greeting without a speech engine: syllable-long bursts of mixed tones with
    short gaps, as loud as speech (a test may pass real speech instead)."""
    out: list[np.ndarray[Any, Any]] = []
    rng = np.random.default_rng(7)
    while sum(len(x) for x in out) < seconds * rate:
        n = int(rate * rng.uniform(0.15, 0.3))
        t = np.arange(n) / rate
        f = rng.uniform(150, 300)
        burst = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 3 * f * t)
        out.append((burst * np.hanning(n) * 0.4 * 32767).astype(np.int16))
        out.append(np.zeros(int(rate * 0.08), np.int16))
    return np.concatenate(out)[: int(seconds * rate)]


@dataclass(frozen=True)
class Callee:
    """Who answers a call placed through :class:`~voicegraph.testing.FakeCarrierREST`.

    ``kind``: ``"person"``, ``"machine"``, ``"busy"``, ``"no-answer"`` or ``"failed"``;
    ``ring``: seconds it rings first. A person runs ``script(call)`` (``call`` is a
    :class:`~voicegraph.testing.TwilioCall` or :class:`~voicegraph.testing.PlivoCall`), then
    hangs up; without a script they listen until the agent hangs up. A machine plays
    ``greeting`` (samples at ``rate``; a voice-like default), a ``beep``-second tone, then
    stays silent for up to ``listen`` seconds while it records. Nobody stays longer than
    ``hold`` seconds."""

    kind: Literal["person", "machine", "busy", "no-answer", "failed"] = "person"
    ring: float = 0.2
    script: Script | None = None
    greeting: AudioSource | None = None
    rate: int = 8000
    beep: float = 0.5
    listen: float = 15.0
    hold: float = 60.0

    @classmethod
    def person(cls, script: Script | None = None, **kw: Any) -> Callee:
        return cls("person", script=script, **kw)

    @classmethod
    def answering_machine(cls, greeting: AudioSource | None = None, **kw: Any) -> Callee:
        return cls("machine", greeting=greeting, **kw)


@dataclass
class PlacedCall:
    """One call the fake placed: what the create request said, the callee, the simulated call
    while it is up, and every report the fake posted (``(kind, form, HTTP status)``)."""

    carrier: str
    call_id: str
    request_id: str
    to: str
    from_: str
    request: dict[str, Any]
    callee: Callee
    call: Any = None
    answered_at: float | None = None
    duration: float | None = None
    heard_before_beep: float | None = None
    """Seconds of agent audio a machine heard before its beep ended (should be 0)."""
    heard_after_beep: float = 0.0
    posted: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    hung_up: anyio.Event = field(default_factory=anyio.Event)
    picked_up: bool = False
    """The callee answered: set before the webhook is fetched, as on the carrier."""
    recording: dict[str, Any] | None = None
    """Plivo: the recording the Record API started (``callback_url``, ``record_url``, ``id``,
    and the ``request`` body as sent)."""
    """Set when the carrier accepted a REST hang-up of this call."""
    _up: anyio.CancelScope | None = None

    def hang_up(self) -> None:
        """The carrier ends the call: a ringing phone stops; an answered call's stream closes."""
        self.hung_up.set()
        if self._up is not None:
            self._up.cancel()

    def statuses(self) -> list[str]:
        """The ``CallStatus`` values posted, in order."""
        return [f["CallStatus"] for k, f, _ in self.posted if k == "status"]


class Placement:
    """Runs one placed call for the fake (see module docs)."""

    def __init__(self, fake: FakeCarrierREST, placed: PlacedCall) -> None:
        self.fake = fake
        self.p = placed
        self.seq = 0
        twilio = placed.carrier == "twilio"
        req = placed.request
        self.status_url = req.get("StatusCallback" if twilio else "hangup_url")
        self.events = set(req.get("StatusCallbackEvent", ["completed"])) if twilio else set()
        self.ring_url = None if twilio else req.get("ring_url")
        self.amd = (
            req.get("MachineDetection") in ("Enable", "DetectMessageEnd")
            if twilio
            else req.get("machine_detection") in ("true", "hangup", True)
        )
        self.amd_url = req.get("AsyncAmdStatusCallback" if twilio else "machine_detection_url")
        self.record_url = (
            req.get("RecordingStatusCallback") if req.get("Record") == "true" else None
        )

    # ----------------------------------------------------------------- reports

    def _local(self, url: str) -> str:
        """Where to send a request for ``url``: the runtime's real address when ``url`` names
        its public one."""
        reach = self.fake.reach
        if reach is None:
            return url
        parts, real = urlsplit(url), urlsplit(reach)
        return parts._replace(scheme=real.scheme, netloc=real.netloc).geturl()

    async def _post(self, kind: str, url: str | None, form: dict[str, str]) -> None:
        import httpx

        if not url:
            return
        token = self.fake._auth_token
        if self.p.carrier == "twilio":
            headers = {"X-Twilio-Signature": compute_twilio_signature(url, form, token)}
        else:
            nonce = secrets.token_hex(10)
            sig = compute_plivo_v3_signature("POST", url, form, nonce, token)
            headers = {
                "X-Plivo-Signature-V3": sig,
                "X-Plivo-Signature-Ma-V3": sig,
                "X-Plivo-Signature-V3-Nonce": nonce,
            }
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.post(self._local(url), data=form, headers=headers)
            code = resp.status_code
        except httpx.HTTPError:
            code = 0
        self.p.posted.append((kind, form, code))

    def _form(self, **extra: str) -> dict[str, str]:
        p = self.p
        if p.carrier == "twilio":
            self.seq += 1
            return {
                "AccountSid": self.fake.account_id,
                "ApiVersion": "2010-04-01",
                "CallSid": p.call_id,
                "Direction": "outbound-api",
                "From": p.from_,
                "To": p.to,
                "SequenceNumber": str(self.seq - 1),
                "Timestamp": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
                "CallbackSource": "call-progress-events",
                **extra,
            }
        return {
            "CallUUID": p.call_id,
            "RequestUUID": p.request_id,
            "Direction": "outbound",
            "From": p.from_,
            "To": p.to,
            **extra,
        }

    async def status(self, status: str, event: str, **extra: str) -> None:
        if self.p.carrier == "twilio":
            if event in self.events or event == "completed":
                await self._post("status", self.status_url, self._form(CallStatus=status, **extra))
        elif event == "ringing":
            await self._post("status", self.ring_url, self._form(CallStatus=status, Event="Ring"))
        elif event == "completed":
            url = self.status_url
            await self._post("status", url, self._form(CallStatus=status, Event="Hangup", **extra))

    async def verdict(self, machine: bool) -> None:
        if not self.amd:
            return
        if self.p.carrier == "twilio":
            word = "machine_end_beep" if machine else "human"
            form = self._form(AnsweredBy=word, MachineDetectionDuration="2100")
        else:
            form = self._form(Machine="true" if machine else "false")
        await self._post("amd", self.amd_url, form)

    # --------------------------------------------------------------------- run

    async def run(self) -> None:
        p, kind = self.p, self.p.callee.kind
        try:
            await self.status("initiated" if p.carrier == "twilio" else "", "initiated")
            if kind == "failed":
                await self.status("failed", "completed", CallDuration="0", Duration="0")
                return
            await self.status("ringing", "ringing")
            with anyio.move_on_after(p.callee.ring):
                await p.hung_up.wait()
            if p.hung_up.is_set():  # cancelled through the REST API while it rang
                if p.carrier == "twilio":
                    await self.status("canceled", "completed", CallDuration="0", Duration="0")
                else:
                    await self.status("cancel", "completed", Duration="0", BillDuration="0")
                return
            if kind in ("busy", "no-answer"):
                extra = {"CallDuration": "0"} if p.carrier == "twilio" else {}
                if p.carrier == "plivo":
                    extra = {
                        "Duration": "0",
                        "BillDuration": "0",
                        "HangupCauseName": "Busy Line" if kind == "busy" else "No Answer",
                    }
                await self.status(kind, "completed", **extra)
                return
            await self._answer()
        finally:
            p.done.set()

    async def _answer(self) -> None:
        p = self.p
        p.picked_up = True
        start = anyio.current_time()
        try:
            with anyio.move_on_after(p.callee.hold) as p._up:
                if p.hung_up.is_set():
                    p._up.cancel()
                async with self._dial() as call:
                    p.call = call
                    p.answered_at = time.time()
                    await self.status("in-progress", "answered")
                    if p.callee.kind == "machine":
                        await self._machine(call)
                    else:
                        await self._person(call)
        except Exception as exc:
            err: BaseException = exc
            while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
                err = err.exceptions[0]
            if not isinstance(err, SocketClosed):  # the runtime refused it: the call failed
                self.fake.errors.append(f"{p.call_id}: {type(err).__name__}: {err}")
                await self.status("failed", "completed", CallDuration="0", Duration="0")
                return
        seconds = round(anyio.current_time() - start)
        p.duration = float(seconds)
        if p.carrier == "twilio":
            await self.status("completed", "completed", CallDuration=str(seconds), Duration="1")
            if self.record_url:
                rec = "RE" + secrets.token_hex(16)
                url = f"{self.fake.base_url}/2010-04-01/Accounts/{self.fake.account_id}"
                await self._post(
                    "recording",
                    self.record_url,
                    {
                        "AccountSid": self.fake.account_id,
                        "CallSid": p.call_id,
                        "RecordingSid": rec,
                        "RecordingUrl": f"{url}/Recordings/{rec}",
                        "RecordingStatus": "completed",
                        "RecordingDuration": str(seconds),
                        "RecordingChannels": "2",
                        "RecordingSource": "OutboundAPI",
                    },
                )
        else:
            await self.status(
                "completed",
                "completed",
                Duration=str(seconds),
                BillDuration=str(seconds),
                HangupCauseName="Normal Hangup",
            )
            if p.recording is not None:
                now = int(time.time() * 1000)
                await self._post(
                    "recording",
                    p.recording["callback_url"],
                    {
                        "api_id": str(uuid.uuid4()),
                        "record_url": p.recording["record_url"],
                        "call_uuid": p.call_id,
                        "recording_id": p.recording["id"],
                        "recording_duration": str(seconds),
                        "recording_duration_ms": str(seconds * 1000),
                        "recording_start_ms": str(now - seconds * 1000),
                        "recording_end_ms": str(now),
                    },
                )

    def _dial(self) -> Any:
        from .plivo_caller import PlivoCaller
        from .twilio_caller import TwilioCaller

        p, fake = self.p, self.fake
        target = self.p.request["Url" if p.carrier == "twilio" else "answer_url"]
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        public = f"{parts.scheme}://{parts.netloc}"
        base = self._local(public)
        if p.carrier == "twilio":
            caller: Any = TwilioCaller(
                base,
                fake._auth_token,
                account_sid=fake.account_id,
                to=p.to,
                from_=p.from_,
                public_url=public,
                playback_rate=fake.playback_rate,
            )
            extra = {"Direction": "outbound-api", "CallStatus": "in-progress"}
            return caller.dial(path, extra=extra, call_sid=p.call_id)
        caller = PlivoCaller(
            base,
            fake._auth_token,
            auth_id=fake.account_id,
            to=p.to,
            from_=p.from_,
            public_url=public,
            playback_rate=fake.playback_rate,
        )
        extra = {"Direction": "outbound", "CallStatus": "in-progress", "RequestUUID": p.request_id}
        return caller.dial(path, extra=extra, call_uuid=p.call_id)

    async def _person(self, call: Any) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.verdict, False)
            if self.p.callee.script is not None:
                await self.p.callee.script(call)
            else:
                await call.wait_closed(2 * self.p.callee.hold)

    async def _machine(self, call: Any) -> None:
        callee = self.p.callee
        greeting = callee.greeting if callee.greeting is not None else machine_greeting()
        rate = callee.rate
        async with anyio.create_task_group() as tg:
            if self.p.carrier == "plivo":
                # Plivo decides early, in the greeting, and does not wait for the beep
                async def early() -> None:
                    await anyio.sleep(1.0)
                    await self.verdict(True)

                tg.start_soon(early)
            await call.send_audio(greeting, sample_rate=rate)
            await call.send_audio(tone(callee.beep, rate=rate), sample_rate=rate)
            self.p.heard_before_beep = call.heard_seconds
            if self.p.carrier == "twilio":
                tg.start_soon(self.verdict, True)  # DetectMessageEnd: after the beep
            with anyio.move_on_after(callee.listen):
                while not call.closed:
                    await call.send_silence(0.1)
                    self.p.heard_after_beep = call.heard_seconds - self.p.heard_before_beep
