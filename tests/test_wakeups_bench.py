"""Smoke run of the wake-up benchmark: a real cascading call, counted per node."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import wakeups


def test_wakeups_quick_counts_hops_wakes_and_fused_calls_per_node(tmp_path: Path) -> None:
    assert wakeups.main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "wakeups.json").read_text())
    assert data["benchmark"] == "wakeups" and data["calls"] == 1
    nodes = data["nodes"]
    # every 20 ms carrier frame reaches the STT, almost all through its direct handler (the
    # picows provider socket sends without waiting); it is woken for far fewer of them
    stt = nodes["stt"]
    assert stt["direct"] > stt["hops"] > 0 and stt["wakes"] < (stt["hops"] + stt["direct"]) / 4
    # decode and VAD run fused: calls, no channel hops of their own
    assert nodes["decode"]["fused"] > 0 and nodes["decode"]["hops"] == 0
    assert nodes["vad"]["fused"] == nodes["decode"]["fused"]
    assert data["total"]["wakes"] > 0
