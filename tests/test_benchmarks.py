"""Smoke runs of the latency benchmarks: each ``--quick`` run completes and writes complete JSON.

Speed is never asserted here (figures belong in docs/benchmarks.md); only that every scenario
runs end to end through the real server, callers and fakes, and reports every field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import bargein, concurrency, engine, llm_http, sockets, textmode, voice
from voicegraph.cli import main as cli_main


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _load(out: Path, name: str) -> dict:
    data = json.loads((out / f"{name}.json").read_text())
    assert data["benchmark"] == name
    assert data["machine"]["cores"] >= 1
    return data


def test_engine_quick_reports_both_configurations(tmp_path: Path) -> None:
    assert engine.main(["--quick", "--out", str(tmp_path)]) == 0
    data = _load(tmp_path, "engine")
    assert set(data["modes"]) == {"actors", "fused"}
    for r in data["modes"].values():
        assert r["throughput_fps"] > 0
        assert _finite(r["unloaded_latency_us"]["p99"])
        assert r["realtime"]["frames"] > 0


def test_voice_quick_reports_every_stage_per_mode_and_draws_plots(tmp_path: Path) -> None:
    assert voice.main(["--quick", "--out", str(tmp_path)]) == 0
    data = _load(tmp_path, "voice")
    assert set(data["modes"]) == {"cascading", "realtime"}
    expected = {
        "cascading": {"stt_final", "agent_first_token", "tts_first_audio", "first_audio_sent"},
        "realtime": {"first_audio_sent"},
    }
    for mode, r in data["modes"].items():
        assert r["turns"] == 1
        assert _finite(r["voice_to_voice_ms"]["p50"])
        assert r["framework_added_ms"]["p50"] == pytest.approx(
            r["voice_to_voice_ms"]["p50"] - r["critical_path_ms"]
        )
        assert set(r["stages_ms"]) == expected[mode] | {"caller_first_audio"}
        assert all(_finite(s["p50"]) for s in r["framework_share_ms"].values())
    assert (tmp_path / "voice-waterfall.svg").stat().st_size > 0
    assert (tmp_path / "voice-cdf.svg").stat().st_size > 0


def test_bargein_quick_sees_clear_tts_cancel_and_llm_close_for_every_interruption(
    tmp_path: Path,
) -> None:
    assert bargein.main(["--quick", "--out", str(tmp_path)]) == 0
    data = _load(tmp_path, "bargein")
    assert data["interruptions"] == 2
    assert all(missing == 0 for missing in data["not_seen"].values()), data["not_seen"]
    for name in ("clear_sent", "clear_at_caller", "tts_cancel", "llm_closed"):
        assert _finite(data["summary_ms"][f"decision_to_{name}_ms"]["p99"])


def test_concurrency_quick_measures_each_n_of_the_sweep(tmp_path: Path) -> None:
    assert concurrency.main(["--quick", "--gc-probe", "--out", str(tmp_path)]) == 0
    data = _load(tmp_path, "concurrency")
    assert [r["calls"] for r in data["runs"]] == [2, 4]
    for r in data["runs"]:
        assert r["failed_calls"] == 0, r["failures"]
        # --gc-probe: the server's collections over the window, by generation
        young = r["server_gc_pauses"]["young"]
        assert young["n"] > 0 and 0 < young["p50_ms"] <= young["max_ms"]
        assert set(r["server_gc_pauses"]) == {"young", "middle", "full"}
        assert r["turns"] == r["calls"]
        assert r["server_cpu_percent"] > 0
        assert isinstance(r["dropped_frames"], int)
        assert _finite(r["framework_added_ms"]["p99"])
        assert r["load_process_cpu_percent"] > 0 and isinstance(r["load_limited"], bool)
        assert r["rss_bytes_per_call"] >= 0
    assert isinstance(data["max_calls_within_budget"], int)
    assert (tmp_path / "concurrency.svg").stat().st_size > 0


def test_concurrency_runs_asyncio_and_trio_from_one_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.__main__ import main as bench_main

    monkeypatch.setenv("VOICEGRAPH_BENCH_BACKEND", "asyncio")  # restored after the test
    argv = ["concurrency", "--quick", "--no-plot", "--out", str(tmp_path), "--backend", "both"]
    assert bench_main(argv) == 0
    data = _load(tmp_path, "concurrency")
    assert set(data["backends"]) == {"asyncio", "trio"}
    rows = data["asyncio_vs_trio"]
    assert [r["calls"] for r in rows] == [2, 4]
    assert all(_finite(r["ratio_percent"]) for r in rows)


def test_concurrency_reports_the_cpu_cost_of_metrics_and_tracing(tmp_path: Path) -> None:
    argv = ["--quick", "--observability", "--no-plot", "--out", str(tmp_path)]
    assert concurrency.main(argv) == 0
    rows = _load(tmp_path, "concurrency")["observability"]
    assert [r["calls"] for r in rows] == [2, 4]
    for r in rows:
        assert r["failed_calls_on"] == 0
        assert r["cpu_percent_per_call_off"] > 0 and r["cpu_percent_per_call_on"] > 0
        assert _finite(r["extra_percent"])


def test_concurrency_compares_the_asgi_stream_route_with_the_media_listener(
    tmp_path: Path,
) -> None:
    argv = ["--quick", "--listener", "both", "--no-plot", "--out", str(tmp_path)]
    assert concurrency.main(argv) == 0
    rows = _load(tmp_path, "concurrency")["listeners"]
    assert [r["calls"] for r in rows] == [2, 4]
    for r in rows:
        assert r["asgi_failed"] == 0 and r["media_failed"] == 0
        assert r["asgi_cpu_percent_per_call"] > 0 and r["media_cpu_percent_per_call"] > 0
        assert _finite(r["media_over_asgi_percent"]) and _finite(r["media_p99_ms"])


def test_memory_quick_via_the_cli_reports_rss_and_tasks_before_and_after(
    tmp_path: Path,
) -> None:
    assert cli_main(["bench", "memory", "--quick", "--out", str(tmp_path)]) == 0
    data = _load(tmp_path, "memory")
    assert data["calls"] == 12
    assert data["failed_calls"] == 0, data["failures"]
    for side in ("before", "after"):
        assert data[side]["rss_bytes"] > 0
        assert data[side]["tasks"] > 0
        assert data[side]["active_calls"] == 0
    assert data["calls_started_by_server"] == 12
    assert _finite(data["rss_growth_mb"])


def test_bench_outside_a_checkout_says_where_the_benchmarks_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["bench", "voice", "--source", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "clone of the voicegraph repository or pass --source DIR" in err


def test_textmode_quick_reports_a_five_turn_conversation_with_two_tool_calls(
    tmp_path: Path,
) -> None:
    assert textmode.main(["--quick", "--out", str(tmp_path)]) == 0
    data = _load(tmp_path, "textmode")
    assert [(r["turns"], r["tool_calls"]) for r in data["runs"]] == [(5, 2)] * 3
    assert _finite(data["median_s"])


def test_llm_http_quick_measures_both_clients_on_one_pooled_connection(tmp_path: Path) -> None:
    assert llm_http.main(["--quick", "--out", str(tmp_path)]) == 0
    clients = _load(tmp_path, "llm_http")["clients"]
    assert set(clients) == {"aiohttp", "httpx"}
    for figures in clients.values():
        assert figures["cpu_us"] > 0 and figures["first_event_us"] > 0
        assert figures["loop_turns"] >= 1
        assert figures["connections"] == 0  # every reply reused the warm-up's connection


def test_sockets_quick_measures_the_websocket_clients_per_message(tmp_path: Path) -> None:
    assert sockets.main(["--quick", "--out", str(tmp_path)]) == 0
    clients = _load(tmp_path, "sockets")["clients"]
    assert clients["websockets"]["send_us"] > 0 and clients["websockets"]["receive_us"] > 0
    assert clients["picows"] is None or clients["picows"]["send_us"] > 0


def test_a_benchmark_main_puts_the_voicegraph_log_level_back_even_when_it_fails() -> None:
    import logging

    from benchmarks.common import quiet_voicegraph

    log = logging.getLogger("voicegraph")
    before, seen = log.level, []

    @quiet_voicegraph(logging.ERROR)
    def main(argv: list[str]) -> int:
        seen.append(log.level)
        raise SystemExit(2)

    with pytest.raises(SystemExit):
        main([])
    assert seen == [logging.ERROR] and log.level == before


def test_hypervisor_steal_is_read_per_cpu_from_proc_stat() -> None:
    import os

    from benchmarks._procs import steal_by_cpu

    hz = os.sysconf("SC_CLK_TCK")
    stat = (
        "cpu  1968361 2223 210421 6176381 12247 0 49355 1067 0 0\n"
        "cpu0 840243 611 74239 3274109 1817 0 22510 498 0 0\n"
        "cpu1 1128117 1611 136181 2902272 10429 0 26844 569 0 0\n"
        "intr 123 4 5\n"
        "ctxt 42\n"
    )
    assert steal_by_cpu(stat) == {0: 498 / hz, 1: 569 / hz}
    assert steal_by_cpu("cpu0 1 2 3\n") == {}  # a kernel without the steal field
    here = steal_by_cpu()
    assert all(isinstance(k, int) and v >= 0 for k, v in here.items())


def test_the_gc_probe_times_each_collection_by_generation_per_window() -> None:
    import gc

    from benchmarks._gcprobe import GcPauses

    probe = GcPauses()
    probe.start()
    probe.start()  # idempotent: one callback
    enabled = gc.isenabled()
    gc.disable()  # only the collections below
    try:
        assert gc.callbacks.count(probe._callback) == 1
        probe.take()  # a new window
        gc.collect(0)
        gc.collect(1)
        gc.collect(1)
        got = probe.take()
        assert (got["young"]["n"], got["middle"]["n"], got["full"]["n"]) == (1, 2, 0)
        assert 0 < got["middle"]["p50_ms"] <= got["middle"]["max_ms"] <= got["middle"]["total_ms"]
        assert got["middle"]["per_s"] > 0 and got["full"]["max_ms"] == 0.0
        assert probe.take()["middle"]["n"] == 0  # each take starts a new window
    finally:
        probe.stop()
        if enabled:
            gc.enable()
    assert probe._callback not in gc.callbacks
