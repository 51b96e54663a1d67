"""OpenTelemetry traces of calls, built from the calls' own events.

Needs ``opentelemetry-api`` (``pip install 'voicegraph[otel]'``) and, to export anything, an SDK
``TracerProvider`` that the application configures (voicegraph only uses the API). The span
tree of one call::

    voicegraph.call                      the whole call (carrier, mode, call id, line)
    ├── voicegraph.turn                  one per turn, caller speech end .. first audio heard
    │   ├── voicegraph.stt_final         caller speech end -> STT final
    │   ├── voicegraph.agent_first_token -> the agent's first token
    │   ├── voicegraph.tts_first_audio   -> the TTS's first audio
    │   ├── voicegraph.first_audio_sent  -> playout sent it to the carrier
    │   ├── voicegraph.first_mark_ack    -> the carrier acknowledged it was played
    │   ├── voicegraph.provider.request  an LLM round of this turn
    │   └── voicegraph.tool              a tool the agent ran in this turn
    ├── voicegraph.provider.connect      a provider handshake (failed ones have error status)
    └── voicegraph.provider.request      an STT/TTS/realtime request, to its first response

Events on the call span: ``barge_in``, ``false_interruption``, ``reconnect``, ``apology``,
``provider_disconnected``, ``provider_failed``. Spans are created after the fact with the
recorded times (a turn when it completes), so nothing runs on the per-frame path and no span is
held open across awaits. Attributes never hold secrets, audio or what was said; the caller's
number only with ``Tracing(caller_number=True)``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from ..events import ProviderEvent, ToolEvent
from ..frames import TimelineMark
from ..timeline import TurnRecord
from ._guard import guarded

__all__ = ["Tracing", "TracingError"]

_CALL_EVENTS = {
    "barge_in_decision": "barge_in",
    "false_interruption": "false_interruption",
    "apology": "apology",
}
MAX_PENDING_TURNS = 64
MAX_PENDING_PER_TURN = 32
KEEP_TURN_CONTEXTS = 16


class TracingError(ValueError):
    """Tracing cannot work as configured (the message says what to change)."""


class Tracing:
    """Traces every call (see the module docs for the span tree).

    ``tracer_provider``: the SDK provider to use (default: the global one the application set
    with ``opentelemetry.trace.set_tracer_provider``). ``caller_number``: record the caller's
    phone number as ``voicegraph.caller`` (off by default: it is personal data)."""

    def __init__(self, tracer_provider: Any = None, *, caller_number: bool = False) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise TracingError(
                "tracing needs opentelemetry-api: pip install 'voicegraph[otel]' (and an SDK "
                "TracerProvider to export spans)"
            ) from None
        from .. import __version__

        self._trace = trace
        self.tracer = trace.get_tracer("voicegraph", __version__, tracer_provider=tracer_provider)
        self.caller_number = caller_number

    def __repr__(self) -> str:
        return f"Tracing(caller_number={self.caller_number})"

    def call_started(self, call: Any, session: Any, timeline: Any) -> _CallTrace:
        """Open the call's span and follow its events until :meth:`_CallTrace.ended`."""
        attrs: dict[str, str] = {
            "voicegraph.call_id": call.call_id,
            "voicegraph.carrier": str(getattr(session, "carrier", "")),
            "voicegraph.mode": str(getattr(session, "mode", "")),
            "voicegraph.line": _line_of(session),
        }
        number = str(getattr(session, "from_number", ""))
        if self.caller_number and number:
            attrs["voicegraph.caller"] = number
        ct = _CallTrace(self, call.call_id, attrs)
        call.subscribe(guarded(ct.on_event))
        timeline.listeners.append(guarded(ct.on_turn))
        return ct


def _line_of(session: Any) -> str:
    iface = getattr(session, "interface", None)
    return str(getattr(iface, "line", "") or "")


class _CallTrace:
    """One call's spans."""

    def __init__(self, tracing: Tracing, call_id: str, attrs: dict[str, Any]) -> None:
        self.trace = tracing._trace
        self.tracer = tracing.tracer
        self.call_id = call_id
        # monotonic seconds -> epoch nanoseconds, as OpenTelemetry wants
        self.offset = time.time_ns() - time.monotonic_ns()
        self.span = self.tracer.start_span("voicegraph.call", attributes=attrs)
        self.ctx = self.trace.set_span_in_context(self.span)
        self.turns: OrderedDict[int, Any] = OrderedDict()  # turn -> context of its span
        self.pending: dict[int, list[Any]] = {}  # turn -> events waiting for its span
        self.last_turn = 0
        self.done = False

    def _ns(self, t: float) -> int:
        return int(t * 1e9) + self.offset

    def _child(
        self, name: str, parent: Any, start: float, end: float, attrs: dict[str, Any]
    ) -> Any:
        span = self.tracer.start_span(
            name, context=parent, start_time=self._ns(start), attributes=attrs
        )
        span.end(end_time=self._ns(max(end, start)))
        return span

    # ------------------------------------------------------------------ events

    def on_event(self, ev: Any) -> None:
        if self.done:
            return
        cls = ev.__class__
        if cls is TimelineMark:
            if ev.turn < 0:
                name = _CALL_EVENTS.get(ev.stage)
                if name is not None:
                    self.span.add_event(
                        name, {"voicegraph.turn": self.last_turn}, timestamp=self._ns(ev.time)
                    )
            elif ev.turn > self.last_turn:
                self.last_turn = ev.turn
        elif cls is ProviderEvent:
            self._provider(ev)
        elif cls is ToolEvent:
            self._in_turn(ev)

    def _provider(self, ev: ProviderEvent) -> None:
        attrs: dict[str, str | bool] = {
            "voicegraph.provider": ev.provider,
            "voicegraph.node": ev.node,
        }
        if ev.what == "connect":
            attrs["voicegraph.reconnect"] = ev.reconnect
            span = self.tracer.start_span(
                "voicegraph.provider.connect",
                context=self.ctx,
                start_time=self._ns(ev.start),
                attributes=attrs,
            )
            if not ev.ok:
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, ev.error))
            span.end(end_time=self._ns(ev.end))
            if ev.ok and ev.reconnect:
                self.span.add_event("reconnect", attrs, timestamp=self._ns(ev.end))
        elif ev.what == "request":
            if ev.turn:
                self._in_turn(ev)
            else:
                self._request(ev, self.ctx)
        else:
            name = "provider_disconnected" if ev.what == "disconnect" else "provider_failed"
            attrs["voicegraph.error"] = ev.error
            self.span.add_event(name, attrs, timestamp=self._ns(ev.end))

    def _request(self, ev: ProviderEvent, parent: Any) -> None:
        attrs: dict[str, Any] = {"voicegraph.provider": ev.provider, "voicegraph.node": ev.node}
        if ev.first:
            attrs["voicegraph.ttfb_ms"] = round(1000 * (ev.first - ev.start), 3)
        span = self.tracer.start_span(
            "voicegraph.provider.request",
            context=parent,
            start_time=self._ns(ev.start),
            attributes=attrs,
        )
        if not ev.ok and ev.error != "cancelled":
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, ev.error))
        elif ev.error:
            span.set_attribute("voicegraph.error", ev.error)
        span.end(end_time=self._ns(max(ev.end, ev.start)))

    def _tool(self, ev: ToolEvent, parent: Any) -> None:
        span = self.tracer.start_span(
            "voicegraph.tool",
            context=parent,
            start_time=self._ns(ev.start),
            attributes={"voicegraph.tool": ev.name[:64]},
        )
        if not ev.ok:
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, "tool failed"))
        span.end(end_time=self._ns(max(ev.end, ev.start)))

    def _emit(self, ev: Any, parent: Any) -> None:
        if isinstance(ev, ToolEvent):
            self._tool(ev, parent)
        else:
            self._request(ev, parent)

    def _in_turn(self, ev: Any) -> None:
        """A tool run or LLM round of turn ``ev.turn``: a child of that turn's span, which may
        not exist yet (turn spans are made when the turn completes)."""
        parent = self.turns.get(ev.turn) if ev.turn else self.ctx
        if parent is not None:
            self._emit(ev, parent)
            return
        if ev.turn not in self.pending and len(self.pending) >= MAX_PENDING_TURNS:
            for turn in sorted(self.pending)[: len(self.pending) // 2]:
                for old in self.pending.pop(turn):
                    self._emit(old, self.ctx)
        waiting = self.pending.setdefault(ev.turn, [])
        if len(waiting) < MAX_PENDING_PER_TURN:
            waiting.append(ev)

    # ------------------------------------------------------------------- turns

    def on_turn(self, rec: TurnRecord) -> None:
        """A turn completed (from the call's :class:`~voicegraph.timeline.TurnTimeline`)."""
        if self.done or not rec.stages:
            return
        times = rec.stages.values()
        attrs: dict[str, Any] = {"voicegraph.call_id": self.call_id, "voicegraph.turn": rec.turn}
        v2v = rec.durations_ms().get("voice_to_voice")
        if v2v is not None:
            attrs["voicegraph.voice_to_voice_ms"] = round(v2v, 3)
        span = self.tracer.start_span(
            "voicegraph.turn", context=self.ctx, start_time=self._ns(min(times)), attributes=attrs
        )
        ctx = self.trace.set_span_in_context(span)
        for stage, start, end in rec.intervals():
            self._child(f"voicegraph.{stage}", ctx, start, end, {"voicegraph.stage": stage})
        span.end(end_time=self._ns(max(times)))
        self.turns[rec.turn] = ctx
        while len(self.turns) > KEEP_TURN_CONTEXTS:
            self.turns.popitem(last=False)
        for ev in self.pending.pop(rec.turn, ()):
            self._emit(ev, ctx)

    def ended(self, reason: str | None) -> None:
        """End the call's span (events of turns that never completed go under it)."""
        if self.done:
            return
        self.done = True
        for turn in sorted(self.pending):
            for ev in self.pending[turn]:
                self._emit(ev, self.ctx)
        self.pending.clear()
        self.span.set_attribute("voicegraph.outcome", reason or "cancelled")
        if reason == "error":
            self.span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, "node failed"))
        self.span.end()
