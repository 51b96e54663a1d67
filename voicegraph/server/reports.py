"""Carrier reports about placed calls across workers.

A carrier posts its reports about a call placed by ``dial()`` (status, machine-detection
verdict, recording) to whichever worker its load balancer picks, while the dial handle lives on
the worker that called ``dial()`` and the live call on the worker that took its stream. With
the in-process state (one worker) everything is here and the reports go straight to the
:class:`~voicegraph.server.outbound.CallRegistry`. With a shared state (``AgentRuntime(state=...)``):

* ``dial()`` records that this worker holds the handle (:meth:`CallState.place`), under the
  carrier's call id; Plivo's request UUID is linked to the call UUID when the callee answers
  (:meth:`CallState.alias_placed`, wherever the answer webhook lands);
* a report for a call whose handle or live call is not here goes through
  :meth:`CallState.report` to the workers holding them (once each), whose
  ``carrier_report`` handler hands it to their registry;
* a placed call's graph that starts on a worker without the handle asks the handle's worker for
  a verdict that came first (``carrier_attached``), since machine detection may beat the stream.

A report that reaches no worker holding the call (it came before ``dial()`` got the carrier's
answer, or after the handle expired) is kept by the receiving worker's registry, bounded, as
in a single process.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ..frames import AnsweredBy, CallStatus, Frame, RecordingReady
from .state import StateUnavailable

if TYPE_CHECKING:
    from ..runtime import Call
    from .agent_runtime import AgentRuntime
    from .outbound import OutboundCall

__all__ = ["alias", "attach", "deliver", "handlers", "placed"]

logger = logging.getLogger("voicegraph.server.outbound")

_FRAMES: dict[str, type[Frame]] = {
    cls.__name__: cls for cls in (CallStatus, AnsweredBy, RecordingReady)
}


def _message(frame: Frame) -> dict[str, Any]:
    return {
        "type": "carrier_report",
        "frame": type(frame).__name__,
        "fields": msgspec.to_builtins(frame),
    }


async def placed(runtime: AgentRuntime, handle: OutboundCall) -> None:
    """Record in a shared state that this worker holds ``handle`` (a failure is logged: the
    handle then hears only the reports that land on this worker)."""
    if not runtime.state.shared:
        return
    try:
        await runtime.state.place(handle.call_id, max(60.0, handle.expires - time.time()))
    except StateUnavailable as exc:
        logger.warning("[%s] placed call not shared (reports may miss it): %s", handle.call_id, exc)


async def deliver(runtime: AgentRuntime, call_id: str, frame: Frame) -> None:
    """Hand a carrier report to the call's handle and live graph, wherever they are."""
    registry = runtime.registry
    if not runtime.state.shared or registry.holds_both(call_id):
        await registry.deliver(call_id, frame)
        return
    try:
        reached = await runtime.state.report(registry.resolve(call_id), _message(frame))
    except StateUnavailable as exc:
        logger.warning("[%s] report not shared: %s", call_id, exc)
        reached = 0
    if not reached:
        await registry.deliver(call_id, frame)  # kept here until the call shows up


async def alias(runtime: AgentRuntime, other_id: str, call_id: str) -> None:
    """``other_id`` (Plivo's request UUID) names the call ``call_id`` from now on, here and,
    with a shared state, on the worker holding its handle."""
    registry = runtime.registry
    here = registry.holds_handle(other_id)
    await registry.alias(other_id, call_id)
    if not runtime.state.shared or other_id == call_id:
        return
    try:
        await runtime.state.alias_placed(other_id, call_id)
        if not here:
            message = {"type": "carrier_alias", "call_id": call_id}
            await runtime.state.report(other_id, message)
    except StateUnavailable as exc:
        logger.warning("[%s] alias of %s not shared: %s", call_id, other_id, exc)


async def attach(runtime: AgentRuntime, call_id: str, call: Call) -> None:
    """A placed call's graph runs here now: take what waited for it, here and (shared state)
    on the handle's worker."""
    registry = runtime.registry
    await registry.attach(call_id, call)
    if not runtime.state.shared or registry.holds_handle(call_id):
        return
    try:
        await runtime.state.report(call_id, {"type": "carrier_attached"})
    except StateUnavailable as exc:
        logger.warning("[%s] the dialling worker was not asked for early reports: %s", call_id, exc)


async def _on_report(runtime: AgentRuntime, call_id: str, message: dict[str, Any]) -> None:
    cls = _FRAMES.get(message.get("frame"))  # type: ignore[arg-type]
    try:
        frame = msgspec.convert(message.get("fields"), cls) if cls is not None else None
    except msgspec.ValidationError:
        frame = None
    if frame is None:
        logger.warning("[%s] malformed carrier report from another worker dropped", call_id)
        return
    await runtime.registry.deliver(call_id, frame)


async def _on_alias(runtime: AgentRuntime, other_id: str, message: dict[str, Any]) -> None:
    call_id = message.get("call_id")
    if isinstance(call_id, str) and 0 < len(call_id) <= 64:
        await runtime.registry.alias(other_id, call_id)
        try:
            await runtime.state.alias_placed(other_id, call_id)
        except StateUnavailable as exc:
            logger.warning("[%s] alias of %s not shared: %s", call_id, other_id, exc)


async def _on_attached(runtime: AgentRuntime, call_id: str, message: dict[str, Any]) -> None:
    # here the handle, elsewhere the call: send it the verdict that arrived before its stream
    handle = runtime.registry.handles.get(runtime.registry.resolve(call_id))
    if handle is not None and handle.answered_by is not None and call_id not in runtime.calls:
        try:
            await runtime.state.publish(call_id, _message(handle.answered_by))
        except StateUnavailable as exc:
            logger.warning("[%s] early verdict not passed on: %s", call_id, exc)


def handlers() -> dict[str, Any]:
    """The call handlers (``runtime.call_handlers``) that receive reports from other workers."""
    return {
        "carrier_report": _on_report,
        "carrier_alias": _on_alias,
        "carrier_attached": _on_attached,
    }
