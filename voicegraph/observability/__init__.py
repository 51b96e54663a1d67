"""See every call: Prometheus metrics, OpenTelemetry traces, event-loop lag, JSON logs.

Observers subscribe to what calls already record (their event bus and turn timelines); nothing
is added to the per-frame path. ``prometheus-client`` and ``opentelemetry-api`` are optional
extras, imported only when :class:`Metrics` or :class:`Tracing` is built. See
``docs/observability.md``.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "Observability": ".hub",
    "ObservabilityError": ".hub",
    "CallObservation": ".hub",
    "Metrics": ".prometheus",
    "MetricsError": ".prometheus",
    "METRICS": ".prometheus",
    "Tracing": ".otel",
    "TracingError": ".otel",
    "LoopLag": ".looplag",
    "LoopLagError": ".looplag",
    "JsonFormatter": ".logjson",
    "configure_json_logging": ".logjson",
    "call_context": ".logjson",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
