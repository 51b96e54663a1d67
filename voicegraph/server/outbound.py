"""Outbound calls: :meth:`AgentRuntime.dial <voicegraph.server.AgentRuntime.dial>`, the
:class:`OutboundCall` handle it returns, and the :class:`CallRegistry` that routes the carrier's
later reports (status callbacks, machine detection) to the handle and to the live call.

Placing a call asks the carrier's REST API to call ``to`` from the line's number; when the callee
answers, the carrier fetches the line's webhook and the call runs the line's graph exactly like
an inbound one. What the carrier reports afterwards -- ringing, answered, completed with its
duration, busy, no-answer, the machine-detection verdict, a recording URL -- arrives on the
runtime's status path (:mod:`voicegraph.server.status`) and is delivered through the registry.

The registry is in-process. With a shared state (several workers or machines, one Redis) a
report that lands on a worker without the handle or the live call is passed to the workers
that hold them (:mod:`voicegraph.server.reports`), whose registries take it from there.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..frames import AnsweredBy, CallStatus, Frame, RecordingReady
from ..interface import CallInterface, IncompatibleOptionsError, InvalidOptionError
from ..transports._rest import DialError, HangupError
from . import reports
from .carrier_rest import plivo_rest, twilio_rest

if TYPE_CHECKING:
    from ..runtime import Call
    from .agent_runtime import AgentRuntime

__all__ = [
    "CallRegistry",
    "DialError",
    "HangupError",
    "OutboundCall",
    "OutboundLimitError",
    "dial",
]

logger = logging.getLogger("voicegraph.server.outbound")

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
MAX_STATUSES = 64  # per handle; a call reports a handful
ANSWERING_NODE = "answering"  # the graph node that takes the machine-detection verdict


ANSWER_GRACE = 5.0
"""Seconds ``hangup()`` waits for an answered Plivo call's UUID after its request is gone."""


class OutboundLimitError(RuntimeError):
    """``dial()`` was called with ``max_outbound`` calls already in flight; wait for one to end
    (``await handle.outcome()``) or raise ``AgentRuntime(max_outbound=...)``."""


class OutboundCall:
    """One call placed by ``dial()``.

    ``call_id`` is the carrier's call id (Twilio's call SID; Plivo's request UUID until the
    callee answers, then the call UUID). ``statuses`` holds every :class:`CallStatus` reported
    so far, in arrival order; ``answered_by`` the machine-detection verdict; ``recordings`` the
    carrier's recording reports; ``call`` the live :class:`~voicegraph.runtime.Call` while the
    graph runs. Await :meth:`outcome` for the final status."""

    def __init__(self, to: str, interface: CallInterface, machine_detection: bool) -> None:
        self.to = to
        self.interface = interface
        self.machine_detection = machine_detection
        self.call_id = ""
        self.request_id = ""
        self.statuses: list[CallStatus] = []
        self.answered_by: AnsweredBy | None = None
        self.recordings: list[RecordingReady] = []
        self.call: Call | None = None
        self.created = time.time()
        self.expires = self.created + 24 * 3600
        """When a call with no final report counts as lost (``dial()`` sets ring time plus
        the line's time limit plus a margin); see :meth:`CallRegistry.in_flight`."""
        self._final: CallStatus | None = None
        self._done = anyio.Event()
        self._answered_or_over = anyio.Event()  # Plivo's call UUID or a final status arrived

    def __repr__(self) -> str:
        return f"OutboundCall(to={self.to!r}, call_id={self.call_id!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        """The latest status (``"initiated"`` until the carrier reports one)."""
        return self.statuses[-1].status if self.statuses else "initiated"

    @property
    def final(self) -> CallStatus | None:
        """The final status once the call is over (``completed``, ``busy``, ``no-answer``,
        ``failed`` or ``canceled``), else ``None``."""
        return self._final

    async def outcome(self, timeout: float | None = None) -> CallStatus:
        """Wait for the final status and return it. Raises ``TimeoutError`` after ``timeout``
        seconds (the call goes on; ask again). Cancellation only stops the wait."""
        with anyio.move_on_after(float("inf") if timeout is None else timeout):
            await self._done.wait()
        if self._final is None:
            raise TimeoutError(
                f"call to {self.to} has no final status after {timeout:g}s (now {self.status!r})"
            )
        return self._final

    async def hangup(self) -> bool:
        """End this call now, whatever its stage: a call still ringing is cancelled, an
        answered one hung up (the carrier then ends its stream, and the graph with it). The
        final status arrives as usual (``canceled`` or ``completed``; await :meth:`outcome`).

        True if the carrier accepted the hang-up, False if the call was already over. Raises
        :class:`HangupError` (``voicegraph.server.outbound.HangupError``) if the carrier refused or could not be
        reached (the call goes on). Works from the process that placed the call."""
        if self._final is not None or not self.call_id:
            return False
        iface = self.interface
        if iface.telephony == "twilio":
            # Status=completed ends a call whether it is queued, ringing or in progress
            return await twilio_rest(iface).hangup(self.call_id)
        plivo = plivo_rest(iface)
        answered = self.call is not None or any(s.status == "answered" for s in self.statuses)
        # Before the answer Plivo cancels the call by its request; a 404 means it was answered
        # (or is over) meanwhile, and an answered call is hung up by its call UUID.
        if not answered and await plivo.cancel_request(self.request_id):
            return True
        if self.call_id == self.request_id:  # the answer webhook names the call UUID any moment
            with anyio.move_on_after(ANSWER_GRACE):
                await self._answered_or_over.wait()
        if self.call_id == self.request_id or self._final is not None:
            return False
        return await plivo.hangup(self.call_id)

    def _record(self, event: Frame) -> None:
        if isinstance(event, CallStatus):
            if self._final is not None:
                return  # a late duplicate after the end
            if len(self.statuses) < MAX_STATUSES:
                self.statuses.append(event)
            if event.final:
                self._final = event
                self._done.set()
                self._answered_or_over.set()
        elif isinstance(event, AnsweredBy):
            self.answered_by = event
        elif isinstance(event, RecordingReady) and len(self.recordings) < MAX_STATUSES:
            self.recordings.append(event)


class CallRegistry:
    """Outbound handles and live calls by carrier call id, in this process.

    Reports can arrive before the id is known here (a carrier's first status may beat the
    answer to the create request; a verdict may beat the stream): those are kept, bounded by
    ``max_early`` ids and ``early_ttl`` seconds, and replayed when the id arrives."""

    def __init__(self, max_early: int = 1000, early_ttl: float = 120.0) -> None:
        self.handles: dict[str, OutboundCall] = {}
        self.calls: dict[str, Call] = {}
        self._aliases: dict[str, str] = {}
        self._early: OrderedDict[str, tuple[float, list[Frame]]] = OrderedDict()
        self.max_early = max_early
        self.early_ttl = early_ttl

    def in_flight(self) -> int:
        """Placed calls without a final status yet. A call whose final report never came by
        its ``expires`` time is closed here as ``failed`` (its slot would leak otherwise)."""
        now = time.time()
        for handle in list(self.handles.values()):
            if handle.final is None and now > handle.expires:
                lost = CallStatus(
                    call_id=handle.call_id,
                    status="failed",
                    reason="no final report from the carrier",
                )
                handle._record(lost)
        return sum(1 for h in self.handles.values() if h.final is None)

    def _id(self, call_id: str) -> str:
        return self._aliases.get(call_id, call_id)

    def resolve(self, call_id: str) -> str:
        """The id this registry knows the call by (Plivo's call UUID for its request UUID)."""
        return self._aliases.get(call_id, call_id)

    def holds_handle(self, call_id: str) -> bool:
        """Whether the dial handle of ``call_id`` is in this process."""
        return self._id(call_id) in self.handles

    def holds_both(self, call_id: str) -> bool:
        """Whether both the dial handle and the live call of ``call_id`` are in this process."""
        cid = self._id(call_id)
        return cid in self.handles and cid in self.calls

    async def add(self, handle: OutboundCall) -> None:
        """Register a placed call under ``handle.call_id``; replay what arrived before."""
        self.handles[handle.call_id] = handle
        await self._replay(handle.call_id)

    async def alias(self, other_id: str, call_id: str) -> None:
        """``other_id`` (Plivo's request UUID) names the call ``call_id`` from now on."""
        if other_id == call_id:
            return
        if len(self._aliases) >= 10 * self.max_early:
            self._aliases.pop(next(iter(self._aliases)))
        self._aliases[other_id] = call_id
        handle = self.handles.pop(other_id, None)
        if handle is not None:
            handle.call_id = call_id
            self.handles[call_id] = handle
            handle._answered_or_over.set()
        await self._replay(other_id, call_id)
        await self._replay(call_id)

    async def attach(self, call_id: str, call: Call) -> None:
        """The call's graph runs here now: deliver what waited for it."""
        self.calls[call_id] = call
        handle = self.handles.get(self._id(call_id))
        if handle is not None:
            handle.call = call
            if handle.answered_by is not None:
                await self._to_call(call, handle.answered_by)
        await self._replay(call_id)

    def detach(self, call_id: str) -> None:
        """The call's graph ended."""
        self.calls.pop(call_id, None)
        handle = self.handles.get(self._id(call_id))
        if handle is not None:
            handle.call = None

    async def deliver(self, call_id: str, event: Frame) -> None:
        """Hand a carrier report to the call's handle and live graph (kept for later when
        neither is known here yet). Final statuses retire the handle."""
        cid = self._id(call_id)
        handle, call = self.handles.get(cid), self.calls.get(cid)
        if handle is None and call is None:
            self._keep(cid, event)
            return
        if handle is not None:
            handle._record(event)
            if isinstance(event, CallStatus) and event.final:
                self._retire(cid)
        if call is not None:
            await self._to_call(call, event)
        elif isinstance(event, AnsweredBy):
            self._keep(cid, event)  # the stream is not up yet

    def _retire(self, call_id: str) -> None:
        # keep the last finished handles around a little for late reports, bounded
        done = [k for k, h in self.handles.items() if h.final is not None]
        for k in done[: max(0, len(done) - self.max_early)]:
            del self.handles[k]

    async def _to_call(self, call: Call, event: Frame) -> None:
        call.publish(event)
        if isinstance(event, AnsweredBy) and ANSWERING_NODE in call.graph:
            await call.inject(ANSWERING_NODE, "verdict", event)

    def _keep(self, call_id: str, event: Frame) -> None:
        now = anyio.current_time()
        while self._early and (
            len(self._early) >= self.max_early
            or now - next(iter(self._early.values()))[0] > self.early_ttl
        ):
            self._early.popitem(last=False)
        entry = self._early.setdefault(call_id, (now, []))
        if len(entry[1]) < MAX_STATUSES:
            entry[1].append(event)

    async def _replay(self, early_id: str, call_id: str | None = None) -> None:
        entry = self._early.pop(early_id, None)
        if entry is not None:
            for event in entry[1]:
                await self.deliver(call_id or early_id, event)


async def notify(hook: Callable[[CallStatus], Any] | None, status: CallStatus) -> None:
    """Call the runtime's ``on_status`` hook (sync or async); its errors are logged only."""
    if hook is None:
        return
    try:
        result = hook(status)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        logger.error("[%s] on_status hook failed: %s", status.call_id, exc, exc_info=exc)


def _interface(runtime: AgentRuntime, line: CallInterface | str | None) -> CallInterface:
    if isinstance(line, CallInterface):
        if line not in runtime.interfaces:
            raise InvalidOptionError("line= is a CallInterface this runtime does not serve")
        return line
    if line is None:
        if len(runtime.interfaces) != 1:
            numbers = ", ".join(i.phone_number for i in runtime.interfaces)
            raise InvalidOptionError(
                f"this runtime serves several lines ({numbers}); pass line= with the number "
                "to call from"
            )
        return runtime.interfaces[0]
    found = next((i for i in runtime.interfaces if i.phone_number == line), None)
    if found is None:
        raise InvalidOptionError(f"line={line!r} is not a number this runtime serves")
    return found


async def dial(
    runtime: AgentRuntime,
    to: str,
    *,
    line: CallInterface | str | None = None,
    machine_detection: bool = False,
    ring_timeout: int = 30,
    carrier_recording: bool = False,
) -> OutboundCall:
    """Place one call (see :meth:`AgentRuntime.dial <voicegraph.server.AgentRuntime.dial>`)."""
    if not isinstance(to, str) or not _E164.fullmatch(to):
        raise InvalidOptionError(
            f"to={to!r} is not E.164; write it as '+' then country code and number, digits "
            "only (e.g. '+15551234567')"
        )
    iface = _interface(runtime, line)
    if machine_detection and iface.pipeline == "managed":
        raise IncompatibleOptionsError(
            "machine_detection needs pipeline='cascading' or 'realtime' (in managed mode Twilio "
            "speaks the greeting before any verdict); dial without it or change the pipeline"
        )
    if not 5 <= ring_timeout <= 600:
        raise InvalidOptionError(f"ring_timeout={ring_timeout!r} must be 5..600 seconds")
    if runtime.public_url is None:
        raise IncompatibleOptionsError(
            "dial() needs AgentRuntime(public_url=...): the carrier must be told where the "
            "webhook and the status callbacks are"
        )
    if runtime.draining:
        raise OutboundLimitError("the runtime is shutting down; no new calls are placed")
    registry = runtime.registry
    if registry.in_flight() + runtime.dialing >= runtime.max_outbound:
        raise OutboundLimitError(
            f"{runtime.max_outbound} outbound calls are in flight (max_outbound); wait for one "
            "to end or raise AgentRuntime(max_outbound=...)"
        )
    handle = OutboundCall(to, iface, machine_detection)
    handle.expires = handle.created + ring_timeout + iface.max_call_duration_seconds + 600
    # the query tells the answering worker (any worker) that the verdict will come and, on
    # Plivo, that the answered call is to be recorded (Twilio records from the create request)
    query = "&".join(
        q
        for q, wanted in (
            ("dial=amd", machine_detection),
            ("rec=1", carrier_recording and iface.telephony == "plivo"),
        )
        if wanted
    )
    webhook = runtime.public_url + iface.webhook_path + (f"?{query}" if query else "")
    status = runtime.public_url + runtime.status_path
    time_limit = int(iface.max_call_duration_seconds) + 60  # our goodbye comes first
    runtime.dialing += 1  # the slot is taken while the request is on its way
    try:
        if iface.telephony == "twilio":
            handle.call_id = await twilio_rest(iface).create_call(
                to,
                iface.phone_number,
                webhook,
                status_callback=status,
                timeout=ring_timeout,
                time_limit=time_limit,
                machine_detection=machine_detection,
                record=carrier_recording,
            )
        else:
            handle.call_id = handle.request_id = await plivo_rest(iface).create_call(
                to,
                iface.phone_number,
                webhook,
                hangup_url=status,
                ring_url=status,
                ring_timeout=ring_timeout,
                time_limit=time_limit,
                machine_detection=machine_detection,
                machine_detection_url=status,
            )
        await registry.add(handle)
        await reports.placed(runtime, handle)
    finally:
        runtime.dialing -= 1
    logger.info("[%s] dialling %s from %s", handle.call_id, to, iface.phone_number)
    return handle
