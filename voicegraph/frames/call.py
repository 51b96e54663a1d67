"""The call as a whole: its carrier stream, keypad digits, the hang-up, the carrier's reports
(who answered, call progress, recordings), and the runtime's own facts (delivery confirmations,
latency marks, errors)."""

from __future__ import annotations

import time
from typing import ClassVar, Literal

import msgspec

from .audio import Encoding
from .base import Frame, Kind

__all__ = [
    "DTMF",
    "FINAL_STATUSES",
    "AnsweredBy",
    "CallStatus",
    "Delivered",
    "ErrorEvent",
    "Hangup",
    "RecordingReady",
    "StreamStarted",
    "TimelineMark",
]


class StreamStarted(Frame, frozen=True, kw_only=True):
    """A carrier stream began: identifiers and the custom parameters it carried."""

    kind: ClassVar[Kind] = Kind.EVENT
    stream_id: str
    call_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    encoding: Encoding = "mulaw"
    sample_rate: int = 8000
    params: tuple[tuple[str, str], ...] = ()


class DTMF(Frame, frozen=True, kw_only=True):
    """A keypad digit from the caller (0-9, *, #, A-D)."""

    kind: ClassVar[Kind] = Kind.CONTROL
    digit: str
    timestamp: float = 0.0


class Hangup(Frame, frozen=True, kw_only=True):
    """End the call (sent by the agent or runtime; emitted by a transport when the caller left)."""

    kind: ClassVar[Kind] = Kind.CONTROL
    reason: str = ""


# ------------------------------------------------------- the carrier's reports


class AnsweredBy(Frame, frozen=True, kw_only=True):
    """Who answered an outbound call, as the carrier's machine detection says.

    ``result``: ``"human"``, ``"machine"`` or ``"unknown"``; ``detail``: the carrier's own
    word (Twilio ``machine_end_beep``, Plivo ``true``...); ``greeting_over``: the carrier
    already waited for the end of the machine's greeting (Twilio's ``machine_end_*``), so a
    message can be left at once."""

    kind: ClassVar[Kind] = Kind.CONTROL
    result: Literal["human", "machine", "unknown"]
    detail: str = ""
    greeting_over: bool = False


FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
"""The :class:`CallStatus` values after which the call is over."""


class CallStatus(Frame, frozen=True, kw_only=True):
    """A call-progress report from the carrier's status callback.

    ``status``: ``initiated``, ``ringing``, ``answered``, ``completed``, ``busy``,
    ``no-answer``, ``failed`` or ``canceled`` (the last five are final); ``duration``: seconds
    the call was connected (final statuses), ``carrier_status`` the carrier's own word,
    ``at``: ``time.time()`` when it arrived."""

    kind: ClassVar[Kind] = Kind.EVENT
    call_id: str
    status: str
    duration: float | None = None
    carrier_status: str = ""
    reason: str = ""
    at: float = msgspec.field(default_factory=time.time)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class RecordingReady(Frame, frozen=True, kw_only=True):
    """A recording of the call is available: the carrier's URL (``carrier=True``) or the path
    the recorder node wrote (``carrier=False``; empty when it went to a callback)."""

    kind: ClassVar[Kind] = Kind.EVENT
    call_id: str
    url: str
    duration: float = 0.0
    carrier: bool = True


# ------------------------------------------------------------ the runtime's facts


class Delivered(Frame, frozen=True, kw_only=True):
    """Downstream confirms that the frame tagged ``ref`` was delivered (see polite end)."""

    kind: ClassVar[Kind] = Kind.EVENT
    ref: str


class TimelineMark(Frame, frozen=True, kw_only=True):
    """One point of a turn's latency timeline (``stage`` e.g. ``"stt_final"``)."""

    kind: ClassVar[Kind] = Kind.EVENT
    turn: int
    stage: str
    time: float = msgspec.field(default_factory=time.monotonic)


class ErrorEvent(Frame, frozen=True, kw_only=True):
    """A node reports an error (fatal or not) with its name."""

    kind: ClassVar[Kind] = Kind.EVENT
    node: str
    message: str
    fatal: bool = False
