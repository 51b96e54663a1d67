"""Observability parts on their own: JSON logs, the loop-lag monitor, metrics (single and
multi-process), tracing options, the Grafana dashboard and the optional extras."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voicegraph import Call, TimelineMark
from voicegraph.events import ProviderEvent, ToolEvent
from voicegraph.observability import (
    JsonFormatter,
    LoopLag,
    LoopLagError,
    Metrics,
    MetricsError,
    Observability,
    ObservabilityError,
    Tracing,
    TracingError,
    call_context,
    configure_json_logging,
)
from voicegraph.observability.logjson import CallContextFilter
from voicegraph.observability.prometheus import METRICS, outcome_of
from voicegraph.runtime import _CallLog
from voicegraph.timeline import TurnRecord, TurnTimeline

ROOT = Path(__file__).resolve().parent.parent


class FakeCall:
    """What observers use of a :class:`~voicegraph.runtime.Call`: id, event bus, stats."""

    def __init__(self, call_id: str = "CA1") -> None:
        self.call_id = call_id
        self.subscribers: list[Any] = []
        self.dropped: dict[str, int] = {}

    def subscribe(self, cb: Any) -> Any:
        self.subscribers.append(cb)
        return lambda: None

    def publish(self, ev: Any) -> None:
        for cb in self.subscribers:
            cb(ev)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {node: {"dropped": n} for node, n in self.dropped.items()}


class FakeSession:
    carrier, mode, from_number = "plivo", "cascading", "+15551230000"

    class interface:  # stands in for the session's CallInterface
        line = "14155550199"


def scraped(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }


# ------------------------------------------------------------------- JSON logs


def test_a_json_log_line_carries_the_call_id_line_and_node_without_the_text_prefix() -> None:
    log = _CallLog(logging.getLogger("voicegraph.node.X"), {"call_id": "CA9", "node": "stt"})
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.addFilter(CallContextFilter())  # as configure_json_logging installs it
    handler.emit = records.append  # type: ignore[method-assign]
    log.logger.addHandler(handler)
    log.logger.setLevel(logging.INFO)
    try:
        with call_context("CA9", "14155550199"):
            log.info("reconnected after %d tries", 2)
    finally:
        log.logger.removeHandler(handler)
    line = JsonFormatter().format(records[0])
    assert "\n" not in line
    out = json.loads(line)
    assert out["call_id"] == "CA9" and out["line"] == "14155550199" and out["node"] == "stt"
    assert out["message"] == "reconnected after 2 tries"
    assert out["level"] == "INFO" and out["logger"] == "voicegraph.node.X"


def test_records_logged_by_user_code_during_a_call_get_the_call_from_its_context() -> None:
    record = logging.LogRecord("my.tool", logging.WARNING, __file__, 1, "slow db", None, None)
    with call_context("CA7", "15550001111"):
        out = json.loads(JsonFormatter().format(record))
    outside = json.loads(JsonFormatter().format(record))
    assert (out["call_id"], out["line"], out["node"]) == ("CA7", "15550001111", None)
    assert (outside["call_id"], outside["line"]) == (None, None)


def test_the_turn_timeline_in_json_format_has_the_keys_of_its_plain_json_line() -> None:
    stream = io.StringIO()
    root, timeline_log = logging.getLogger(), logging.getLogger("voicegraph.timeline")
    levels = root.level, timeline_log.level
    handlers = list(root.handlers)
    handler = configure_json_logging(logging.INFO, stream)
    timeline_log.setLevel(logging.INFO)  # other tests may have quietened "voicegraph"
    try:
        tl = TurnTimeline("CA5")
        tl.on_event(TimelineMark(turn=2, stage="caller_speech_end", time=1.0))
        tl.on_event(TimelineMark(turn=2, stage="first_audio_sent", time=1.25))
        tl.on_event(TimelineMark(turn=2, stage="first_mark_ack", time=1.5))
    finally:
        root.removeHandler(handler)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(levels[0])
        timeline_log.setLevel(levels[1])
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    plain = tl.turns[0].as_dict()
    assert {k: line[k] for k in plain} == json.loads(json.dumps(plain))
    assert line["logger"] == "voicegraph.timeline" and line["call_id"] == "CA5"


# --------------------------------------------------------------- loop lag


@pytest.mark.anyio
async def test_a_blocked_loop_warns_naming_the_active_calls_and_feeds_the_metric(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    lag = LoopLag(threshold=0.05, interval=0.01)
    lag.on_sample.append(metrics.on_lag)
    stalled = anyio.Event()
    lag.on_sample.append(lambda _, over: over and stalled.set())
    caplog.set_level(logging.WARNING, "voicegraph.looplag")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lag.run, lambda: ["CA-one", "CA-two"])
        await anyio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 -- the point: a blocking call stalls the loop
        with anyio.fail_after(10):
            await stalled.wait()
        tg.cancel_scope.cancel()
    assert lag.max >= 0.2  # a blocked loop cannot wake the monitor early
    (warning,) = [r for r in caplog.records if r.name == "voicegraph.looplag"]
    assert "CA-one, CA-two" in warning.getMessage() and "2 active call(s)" in warning.getMessage()
    values = scraped(metrics)
    assert values[("voicegraph_event_loop_stalls_total", frozenset())] == 1
    assert values[("voicegraph_event_loop_lag_seconds_count", frozenset())] == lag.samples


@pytest.mark.parametrize(
    "kw", [{"threshold": 0}, {"threshold": 0.1, "interval": 0}, {"warn_every": -1}]
)
def test_loop_lag_options_out_of_range_are_refused_at_construction(kw: dict[str, float]) -> None:
    with pytest.raises(LoopLagError):
        LoopLag(**kw)


# ----------------------------------------------------------------- metrics


def test_every_listed_metric_is_exposed_with_its_type_and_labels() -> None:
    metrics = Metrics()
    families = {f.name: f for f in metrics.registry.collect()}
    assert set(families) == set(METRICS)  # (counters are listed without _total)
    for name, (kind, _, labels) in METRICS.items():
        assert families[name].type == kind
        assert tuple(metrics[name]._labelnames) == labels


def test_call_events_move_the_counters_of_their_call() -> None:
    metrics = Metrics()
    call, tl = FakeCall(), TurnTimeline("CA1")
    obs = metrics.call_started(call, "twilio", "realtime", tl)
    call.publish(TimelineMark(turn=-1, stage="barge_in_decision"))
    call.publish(TimelineMark(turn=-1, stage="false_interruption"))
    call.publish(TimelineMark(turn=-1, stage="apology"))
    call.publish(ProviderEvent(provider="deepgram", what="connect", start=1.0, end=1.1))
    call.publish(
        ProviderEvent(provider="deepgram", what="connect", start=2.0, end=2.2, reconnect=True)
    )
    call.publish(
        ProviderEvent(
            provider="deepgram", what="disconnect", start=1.1, end=2.0, ok=False, error="x"
        )
    )
    call.publish(ToolEvent(name="book", start=1.0, end=1.5, ok=False))
    call.dropped = {"carrier_in": 3}
    metrics.refresh()
    call.dropped = {"carrier_in": 5}
    obs.ended("hangup: caller hung up")
    v = scraped(metrics)
    lab = frozenset({("carrier", "twilio"), ("mode", "realtime")})
    for name in ("barge_ins", "false_interruptions", "apologies", "calls_started"):
        assert v[(f"voicegraph_{name}_total", lab)] == 1, name
    assert v[("voicegraph_provider_reconnects_total", frozenset({("provider", "deepgram")}))] == 1
    errors = frozenset({("provider", "deepgram"), ("error", "x")})
    assert v[("voicegraph_provider_errors_total", errors)] == 1
    assert v[("voicegraph_tool_calls_total", frozenset({("outcome", "error")}))] == 1
    assert v[("voicegraph_dropped_frames_total", frozenset({("node", "carrier_in")}))] == 5
    assert v[("voicegraph_calls_ended_total", lab | {("outcome", "hangup")})] == 1
    assert v[("voicegraph_active_calls", frozenset())] == 0


def test_turn_stage_histograms_use_each_stages_own_interval() -> None:
    metrics = Metrics()
    call, tl = FakeCall(), TurnTimeline("CA1")
    metrics.call_started(call, "twilio", "cascading", tl)
    # the STT final came before the VAD's speech end: its stage took no time, the LLM's
    # stage starts at the later of the two
    for stage, t in [
        ("caller_speech_end", 10.0),
        ("stt_final", 9.9),
        ("agent_first_token", 10.5),
        ("tts_first_audio", 10.7),
        ("first_audio_sent", 10.75),
        ("first_mark_ack", 10.95),
    ]:
        tl.on_event(TimelineMark(turn=3, stage=stage, time=t))
    v = scraped(metrics)

    def stage_sum(stage: str) -> float:
        key = frozenset({("carrier", "twilio"), ("mode", "cascading"), ("stage", stage)})
        return v[("voicegraph_turn_stage_seconds_sum", key)]

    assert stage_sum("stt_final") == 0
    assert stage_sum("agent_first_token") == pytest.approx(0.5)
    assert stage_sum("first_mark_ack") == pytest.approx(0.2)
    v2v = frozenset({("carrier", "twilio"), ("mode", "cascading")})
    assert v[("voicegraph_voice_to_voice_seconds_sum", v2v)] == pytest.approx(0.75)


def test_free_text_end_reasons_become_a_closed_set_of_outcomes() -> None:
    assert outcome_of("hangup: agent ended the call") == "hangup"
    assert outcome_of("max_duration") == "max_duration"
    assert outcome_of("something a user typed") == "other"
    assert outcome_of(None) == "cancelled"


@pytest.mark.parametrize("kw", [{"path": "metrics"}, {"path": "/m?x=1"}, {"bearer_token": "short"}])
def test_metrics_options_that_cannot_work_are_refused_at_construction(kw: Any) -> None:
    with pytest.raises(MetricsError):
        Metrics(**kw)


def test_the_bearer_token_is_compared_whole_and_never_shown() -> None:
    metrics = Metrics(bearer_token="s3cret-token-0123456789")
    assert metrics.authorised("Bearer s3cret-token-0123456789")
    assert metrics.authorised("bearer s3cret-token-0123456789")
    assert not metrics.authorised("Bearer s3cret-token-012345678")
    assert not metrics.authorised(None)
    assert "s3cret" not in repr(metrics) + repr(Observability(metrics=metrics))


WORKER = """
import os, sys
from voicegraph.observability import Metrics
from voicegraph.timeline import TurnTimeline

class Call:
    def __init__(self, cid): self.call_id = cid
    def subscribe(self, cb): return lambda: None
    def stats(self): return {}

metrics = Metrics()
obs = metrics.call_started(Call(sys.argv[1]), "twilio", "cascading", TurnTimeline(sys.argv[1]))
if sys.argv[2] == "end":
    obs.ended("completed")
"""


def test_workers_in_multiprocess_mode_are_summed_by_any_workers_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for cid, end in (("CA-a", "keep"), ("CA-b", "end")):
        subprocess.run([sys.executable, "-c", WORKER, cid, end], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    v = scraped(Metrics())  # this process is a third worker serving the scrape
    lab = frozenset({("carrier", "twilio"), ("mode", "cascading")})
    assert v[("voicegraph_calls_started_total", lab)] == 2
    assert v[("voicegraph_calls_ended_total", lab | {("outcome", "completed")})] == 1
    assert v[("voicegraph_active_calls", frozenset())] == 1


def test_a_worker_marked_dead_no_longer_counts_as_active_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicegraph.observability.prometheus import worker_exited

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, "CA-a", "keep"], env=env)
    assert worker.wait(timeout=60) == 0
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert scraped(Metrics())[("voicegraph_active_calls", frozenset())] == 1
    worker_exited(worker.pid)
    assert scraped(Metrics()).get(("voicegraph_active_calls", frozenset()), 0) == 0


def test_the_command_line_can_log_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from voicegraph import cli

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(cli, "COMMANDS", {"graph": cli.COMMANDS["graph"]})
    assert cli.main(["--log-format", "json", "graph", "--preset", "cascading"]) == 0
    (handler,) = root.handlers
    assert isinstance(handler.formatter, JsonFormatter)


# ----------------------------------------------------------------- tracing


def _traced(caller_number: bool) -> list[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    call, tl = FakeCall(), TurnTimeline("CA1")
    ct = Tracing(provider, caller_number=caller_number).call_started(call, FakeSession(), tl)
    call.publish(ProviderEvent(provider="cartesia", what="request", start=5.0, end=5.2, first=5.2))
    ct.ended("completed")
    return list(exporter.get_finished_spans())


def test_the_callers_number_is_traced_only_on_opt_in() -> None:
    default = next(s for s in _traced(False) if s.name == "voicegraph.call")
    opted = next(s for s in _traced(True) if s.name == "voicegraph.call")
    assert "voicegraph.caller" not in default.attributes
    assert opted.attributes["voicegraph.caller"] == "+15551230000"
    assert default.attributes["voicegraph.line"] == "14155550199"


def test_a_provider_request_is_a_child_of_the_call_with_its_time_to_first_byte() -> None:
    spans = _traced(False)
    root = next(s for s in spans if s.name == "voicegraph.call")
    req = next(s for s in spans if s.name == "voicegraph.provider.request")
    assert req.parent.span_id == root.context.span_id
    assert req.attributes["voicegraph.ttfb_ms"] == pytest.approx(200)
    assert req.end_time - req.start_time == pytest.approx(0.2e9, abs=1e3)


def test_a_turn_record_interval_never_ends_before_it_starts() -> None:
    rec = TurnRecord("c", 1, {"caller_speech_end": 2.0, "stt_final": 1.5, "tts_first_audio": 3})
    assert rec.intervals() == [("stt_final", 2.0, 2.0), ("tts_first_audio", 2.0, 3)]


# ------------------------------------------------------------ optional extras


def test_without_the_extras_metrics_and_tracing_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MetricsError, match=r"voicegraph\[prometheus\]"):
        Metrics()
    with pytest.raises(TracingError, match=r"voicegraph\[otel\]"):
        Tracing()


def test_importing_voicegraph_and_running_a_call_import_neither_extra() -> None:
    code = (
        "import sys, voicegraph.server, voicegraph.server.carriers, voicegraph.observability;"
        "from voicegraph.observability import Observability, LoopLag;"
        "Observability(loop_lag=LoopLag());"
        "bad = [m for m in sys.modules if m.startswith(('prometheus_client', 'opentelemetry'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_observability_refuses_options_of_the_wrong_kind() -> None:
    with pytest.raises(ObservabilityError):
        Observability(metrics="/metrics")
    with pytest.raises(ObservabilityError):
        Observability(loop_lag=0.1)  # type: ignore[arg-type]


def test_a_call_observer_sees_real_call_events() -> None:
    """The observers' view of a call is the Call's own bus (no fake in between)."""
    from voicegraph import Actor, Graph

    g = Graph("g")
    g.add("idle", Actor())
    metrics = Metrics()
    call = Call(g, "CA3")
    metrics.call_started(call, "twilio", "cascading", TurnTimeline.attach(call))
    call.publish(TimelineMark(turn=-1, stage="barge_in_decision"))
    lab = frozenset({("carrier", "twilio"), ("mode", "cascading")})
    assert scraped(metrics)[("voicegraph_barge_ins_total", lab)] == 1


# ---------------------------------------------------------------- dashboard


def test_the_grafana_dashboard_uses_only_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "voicegraph.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    assert len(exprs) >= 8
    exposed = set()
    for name, (kind, _, _) in METRICS.items():
        suffixes = {
            "counter": ["_total"],
            "gauge": [""],
            "histogram": ["_bucket", "_sum", "_count"],
        }
        exposed |= {name + s for s in suffixes[kind]}
    used = {m for e in exprs for m in re.findall(r"voicegraph_[a-z0-9_]+", e)}
    assert used <= exposed, used - exposed
    # and every metric is on the dashboard
    assert {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in used} == set(METRICS)


def test_the_observability_set_up_example_builds_a_runtime_with_its_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace

    text = (ROOT / "docs" / "observability.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    monkeypatch.setenv("METRICS_TOKEN", "doc-test-token-0123456789")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "doc-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-doc-test")
    monkeypatch.setattr(trace, "set_tracer_provider", lambda provider: None)  # keep it local
    scope: dict[str, Any] = {}
    exec(compile(code, "observability.md", "exec"), scope)
    runtime = scope["runtime"]
    assert runtime.observability.handles({"type": "http", "path": "/metrics"})
    assert runtime.observability.loop_lag.threshold == 0.1


def test_a_failing_observer_is_logged_and_the_publishing_node_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    call, tl = FakeCall(), TurnTimeline("CA1")
    metrics.call_started(call, "twilio", "cascading", tl)
    metrics["voicegraph_barge_ins"].labels("twilio", "cascading").inc = None  # broken
    call.publish(TimelineMark(turn=-1, stage="barge_in_decision"))  # does not raise
    assert "observer" in caplog.text and "failed" in caplog.text
