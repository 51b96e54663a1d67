"""Prometheus metrics of the calls a process serves, from the calls' own events.

Needs ``prometheus-client`` (``pip install 'voicegraph[prometheus]'``). :class:`Metrics`
subscribes to each call's event bus and turn timeline (nothing on the per-frame path) and
serves the text exposition format on the runtime's ``/metrics`` route (see
:class:`~voicegraph.observability.Observability`). Every metric is listed in :data:`METRICS`;
``docs/observability.md`` says what each means.

Several worker processes: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by the
workers *before* they start. Then every worker writes its values there and any worker's
``/metrics`` serves the sum over all of them (active calls are summed over live workers).
Without it each worker serves only its own calls (scrape each worker separately).
"""

from __future__ import annotations

import os
from typing import Any

from ..events import ProviderEvent, ToolEvent
from ..frames import TimelineMark
from ..timeline import TurnRecord
from ._guard import guarded

__all__ = ["METRICS", "Metrics", "MetricsError", "OUTCOMES", "worker_exited"]

STAGE_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

OUTCOMES = (
    "completed",
    "hangup",
    "error",
    "max_duration",
    "idle_timeout",
    "shutdown",
    "stopped",
    "cancelled",
    "other",
)
"""Values of the ``outcome`` label: the call's end reason, reduced to a closed set."""

# name -> (type, help, labels). The single list the metrics, the docs and the dashboard test use.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "voicegraph_active_calls": ("gauge", "Calls running now.", ()),
    "voicegraph_calls_started": ("counter", "Calls started.", ("carrier", "mode")),
    "voicegraph_calls_ended": (
        "counter",
        "Calls ended, by outcome.",
        ("carrier", "mode", "outcome"),
    ),
    "voicegraph_turn_stage_seconds": (
        "histogram",
        "Duration of each turn stage (from the previous stage to this one).",
        ("carrier", "mode", "stage"),
    ),
    "voicegraph_voice_to_voice_seconds": (
        "histogram",
        "Caller speech end to the reply's first audio sent to the carrier.",
        ("carrier", "mode"),
    ),
    "voicegraph_barge_ins": ("counter", "Caller interruptions of the agent.", ("carrier", "mode")),
    "voicegraph_false_interruptions": (
        "counter",
        "Interruptions that produced no words (noise); the agent resumed or re-prompted.",
        ("carrier", "mode"),
    ),
    "voicegraph_apologies": (
        "counter",
        "Apologies said because something failed (a provider down, an agent error).",
        ("carrier", "mode"),
    ),
    "voicegraph_dropped_frames": (
        "counter",
        "Frames dropped on a node's inputs (drop-oldest edges under overload).",
        ("node",),
    ),
    "voicegraph_provider_errors": (
        "counter",
        "Provider failures: failed connects, dropped connections, give-ups, failed requests.",
        ("provider", "error"),
    ),
    "voicegraph_provider_reconnects": (
        "counter",
        "Provider connections made again after a drop or failure.",
        ("provider",),
    ),
    "voicegraph_provider_connect_seconds": (
        "histogram",
        "Provider connection handshakes that succeeded.",
        ("provider",),
    ),
    "voicegraph_provider_ttfb_seconds": (
        "histogram",
        "Provider request to its first response (STT final, TTS audio, LLM token).",
        ("provider",),
    ),
    "voicegraph_tool_calls": ("counter", "Tools the agent ran, by outcome.", ("outcome",)),
    "voicegraph_event_loop_lag_seconds": (
        "histogram",
        "How late the event loop woke a sleeping task.",
        (),
    ),
    "voicegraph_event_loop_stalls": (
        "counter",
        "Event-loop lag samples above the warning threshold.",
        (),
    ),
}


class MetricsError(ValueError):
    """The metrics options cannot work (the message says what to change)."""


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MetricsError(
            "metrics need prometheus-client: pip install 'voicegraph[prometheus]'"
        ) from None
    return prometheus_client


class Metrics:
    """The Prometheus metrics of one process and its ``/metrics`` route.

    ``path``: where the runtime serves them (default ``/metrics``). ``bearer_token``: when
    given, a scrape must send ``Authorization: Bearer <token>`` (compared in constant time;
    never logged). ``registry``: a ``prometheus_client.CollectorRegistry`` to register in
    (default: a fresh one, so several runtimes in one process do not clash); ignored in
    multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set), where every worker's values are
    merged at scrape time."""

    def __init__(
        self,
        path: str = "/metrics",
        *,
        bearer_token: str | None = None,
        registry: Any = None,
    ) -> None:
        pc = _prometheus()
        if not path.startswith("/") or "?" in path or len(path) > 200:
            raise MetricsError(f"path={path!r}: give an absolute URL path like '/metrics'")
        if bearer_token is not None and (
            not isinstance(bearer_token, str) or len(bearer_token) < 16
        ):
            raise MetricsError("bearer_token must be a string of at least 16 characters")
        self.path = path
        self._token = bearer_token.encode() if bearer_token is not None else None
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if self.multiprocess_dir:
            self.registry = None
            target = None  # values go to the shared directory; scrapes merge them
        else:
            self.registry = registry if registry is not None else pc.CollectorRegistry()
            target = self.registry
        self._m: dict[str, Any] = {}
        for name, (kind, doc, labels) in METRICS.items():
            kw: dict[str, Any] = {"registry": target}
            if kind == "gauge":
                kw["multiprocess_mode"] = "livesum"
            elif kind == "histogram":
                kw["buckets"] = LAG_BUCKETS if "loop" in name else STAGE_BUCKETS
            cls = {"gauge": pc.Gauge, "counter": pc.Counter, "histogram": pc.Histogram}[kind]
            self._m[name] = cls(name, doc, labels, **kw)
        self._live: dict[str, _CallMetrics] = {}

    def __repr__(self) -> str:
        auth = ", bearer_token=<hidden>" if self._token else ""
        return f"Metrics(path={self.path!r}{auth})"

    def __getitem__(self, name: str) -> Any:
        """The ``prometheus_client`` metric object named ``name`` (see :data:`METRICS`)."""
        return self._m[name]

    # ------------------------------------------------------------ observing calls

    def call_started(self, call: Any, carrier: str, mode: str, timeline: Any) -> _CallMetrics:
        """Count a call and follow its events until :meth:`_CallMetrics.ended`."""
        obs = _CallMetrics(self, call, carrier, mode)
        call.subscribe(guarded(obs.on_event))
        timeline.listeners.append(guarded(obs.on_turn))
        self._live[call.call_id] = obs
        return obs

    def refresh(self) -> None:
        """Bring the dropped-frame counters up to date with the running calls."""
        for obs in list(self._live.values()):
            obs.count_drops()

    def on_lag(self, lag: float, stalled: bool) -> None:
        """The loop-lag monitor's hook."""
        self._m["voicegraph_event_loop_lag_seconds"].observe(lag)
        if stalled:
            self._m["voicegraph_event_loop_stalls"].inc()

    # ------------------------------------------------------------------- serving

    def authorised(self, authorization: str | None) -> bool:
        """Whether a scrape's ``Authorization`` header value is allowed."""
        if self._token is None:
            return True
        import hmac

        got = (authorization or "").encode("latin-1", "replace")
        scheme, _, token = got.partition(b" ")
        # compare_digest: the time taken does not tell how much of the token matched
        return hmac.compare_digest(scheme.lower() + b" " + token.strip(), b"bearer " + self._token)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition body and its content type (all workers' values in multiprocess
        mode)."""
        pc = _prometheus()
        self.refresh()
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = pc.CollectorRegistry()
            # prometheus_client's multiprocess module is not annotated
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            registry = self.registry
        return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST


def worker_exited(pid: int | None) -> None:
    """Tell multiprocess mode that worker ``pid`` is gone, so its live gauges (active calls)
    stop counting. Does nothing outside multiprocess mode or without prometheus-client."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or pid is None:
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # unannotated


def outcome_of(reason: str | None) -> str:
    """A call's end reason as one of :data:`OUTCOMES` (free-text reasons would make the label
    unbounded)."""
    if reason is None:
        return "cancelled"
    head = reason.split(":", 1)[0].strip()
    return head if head in OUTCOMES else "other"


class _CallMetrics:
    """One call's subscription: label children bound once, drops counted as deltas."""

    def __init__(self, metrics: Metrics, call: Any, carrier: str, mode: str) -> None:
        m = metrics._m
        self.metrics = metrics
        self.call = call
        self.carrier, self.mode = carrier, mode
        self.barge_ins = m["voicegraph_barge_ins"].labels(carrier, mode)
        self.false_interruptions = m["voicegraph_false_interruptions"].labels(carrier, mode)
        self.apologies = m["voicegraph_apologies"].labels(carrier, mode)
        self.v2v = m["voicegraph_voice_to_voice_seconds"].labels(carrier, mode)
        self.stage = m["voicegraph_turn_stage_seconds"]
        self.drops_seen: dict[str, int] = {}
        m["voicegraph_calls_started"].labels(carrier, mode).inc()
        m["voicegraph_active_calls"].inc()
        self.done = False

    def on_event(self, ev: Any) -> None:
        cls = ev.__class__
        if cls is TimelineMark:
            if ev.turn < 0:
                stage = ev.stage
                if stage == "barge_in_decision":
                    self.barge_ins.inc()
                elif stage == "false_interruption":
                    self.false_interruptions.inc()
                elif stage == "apology":
                    self.apologies.inc()
        elif cls is ProviderEvent:
            self._provider(ev)
        elif cls is ToolEvent:
            outcome = "ok" if ev.ok else "error"
            self.metrics._m["voicegraph_tool_calls"].labels(outcome).inc()

    def _provider(self, ev: ProviderEvent) -> None:
        m = self.metrics._m
        if not ev.ok and ev.error != "cancelled":
            m["voicegraph_provider_errors"].labels(ev.provider, ev.error or "error").inc()
        if ev.what == "connect" and ev.ok:
            m["voicegraph_provider_connect_seconds"].labels(ev.provider).observe(ev.end - ev.start)
            if ev.reconnect:
                m["voicegraph_provider_reconnects"].labels(ev.provider).inc()
        elif ev.what == "request" and ev.first:
            m["voicegraph_provider_ttfb_seconds"].labels(ev.provider).observe(ev.first - ev.start)

    def on_turn(self, rec: TurnRecord) -> None:
        for stage, start, end in rec.intervals():
            self.stage.labels(self.carrier, self.mode, stage).observe(end - start)
        speech_end, sent = rec.stages.get("caller_speech_end"), rec.stages.get("first_audio_sent")
        if speech_end is not None and sent is not None:
            self.v2v.observe(max(0.0, sent - speech_end))

    def count_drops(self) -> None:
        counter = self.metrics._m["voicegraph_dropped_frames"]
        for node, entry in self.call.stats().items():
            dropped = entry.get("dropped", 0)
            delta = dropped - self.drops_seen.get(node, 0)
            if delta > 0:
                counter.labels(node).inc(delta)
                self.drops_seen[node] = dropped

    def ended(self, reason: str | None) -> None:
        """The call is over: final drops, the outcome, one fewer active call. Idempotent."""
        if self.done:
            return
        self.done = True
        self.count_drops()
        m = self.metrics._m
        m["voicegraph_calls_ended"].labels(self.carrier, self.mode, outcome_of(reason)).inc()
        m["voicegraph_active_calls"].dec()
        self.metrics._live.pop(self.call.call_id, None)
