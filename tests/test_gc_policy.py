"""GcPolicy: full garbage collections (long event-loop pauses) run when the runtime chooses,
not whenever CPython's heuristics fire during live calls."""

from __future__ import annotations

import gc
import sys

import anyio
import pytest

from benchmarks import _rig as rig
from voicegraph.server import AgentRuntimeError, GcPolicy
from voicegraph.server.gc_policy import IDLE_AFTER
from voicegraph.testing import serve_runtime

GENERATIONAL = sys.version_info < (3, 14)


@pytest.fixture(autouse=True)
def collector_restored():
    before = gc.get_threshold()
    yield
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_start_freezes_what_is_alive_and_stop_gives_it_back() -> None:
    policy = GcPolicy()
    policy.start()
    try:
        assert gc.get_freeze_count() > 0
        if GENERATIONAL:
            assert gc.get_threshold()[2] >= 1_000_000  # CPython no longer starts full ones
            assert policy.owns_full_collections
    finally:
        policy.stop()
    assert not policy.owns_full_collections


@pytest.mark.skipif(not GENERATIONAL, reason="3.14+: CPython's own incremental collector runs")
def test_young_collections_are_kept_short_while_the_policy_holds() -> None:
    before = gc.get_threshold()
    policy = GcPolicy()
    assert policy.young == (150, 2)
    policy.start()
    try:
        assert gc.get_threshold()[:2] == (150, 2)
    finally:
        policy.stop()
    assert gc.get_threshold() == before
    own = GcPolicy(young=None)  # CPython's own young thresholds, full collections still owned
    own.start()
    try:
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] >= 1_000_000
    finally:
        own.stop()


def test_two_runtimes_of_one_process_restore_the_collector_when_the_last_stops() -> None:
    before = gc.get_threshold()
    a, b = GcPolicy(), GcPolicy()
    a.start()
    b.start()
    a.stop()
    assert gc.get_freeze_count() > 0 and (gc.get_threshold() != before or not GENERATIONAL)
    b.stop()
    assert gc.get_threshold() == before


@pytest.mark.skipif(not GENERATIONAL, reason="3.14+: CPython's own incremental collector runs")
def test_a_full_collection_runs_every_n_call_ends() -> None:
    policy = GcPolicy(every_calls=3)
    policy.start()
    try:
        policy.call_ended(live_calls=5)
        policy.call_ended(live_calls=4)
        assert policy.full_collections == 0
        policy.call_ended(live_calls=3)  # the third end since the last one
        assert policy.full_collections == 1
    finally:
        policy.stop()


@pytest.mark.skipif(not GENERATIONAL, reason="3.14+: CPython's own incremental collector runs")
def test_when_the_last_call_ends_a_full_collection_runs_if_enough_calls_ended() -> None:
    policy = GcPolicy(every_calls=1000)
    policy.start()
    try:
        for _ in range(IDLE_AFTER - 2):
            policy.call_ended(live_calls=1)
        policy.call_ended(live_calls=0)  # idle, but too little garbage to be worth it yet
        assert policy.full_collections == 0
        policy.call_ended(live_calls=0)  # idle and IDLE_AFTER calls ended: nobody waits
        assert policy.full_collections == 1
    finally:
        policy.stop()


@pytest.mark.skipif(not GENERATIONAL, reason="3.14+: CPython's own incremental collector runs")
def test_a_full_collection_runs_at_the_first_call_end_after_max_interval() -> None:
    policy = GcPolicy(max_interval=1.0)
    policy.start()
    try:
        policy._last -= 1.5  # as if the last full collection was 1.5 s ago
        policy.call_ended(live_calls=10)
        assert policy.full_collections == 1 and policy.last_pause >= 0
    finally:
        policy.stop()


def test_a_policy_not_started_never_collects() -> None:
    policy = GcPolicy(every_calls=1)
    policy.call_ended(live_calls=0)
    assert policy.full_collections == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_calls": 0}, "every_calls must be 1..100000"),
        ({"max_interval": 0.5}, "max_interval must be 1..86400"),
        ({"young": (5, 3)}, "young must be"),
        ({"young": (300, 0)}, "young must be"),
        ({"young": (300,)}, "young must be"),
        ({"young": (300.0, 3)}, "young must be"),
        ({"young": 300}, "young must be"),
        ({"young": "ab"}, "young must be"),
    ],
)
def test_bad_settings_are_refused_when_built(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GcPolicy(**kwargs)


def test_the_runtime_refuses_anything_else_as_its_policy() -> None:
    urls = {
        "deepgram": "ws://127.0.0.1:9",
        "chat": "http://127.0.0.1:9/v1",
        "cartesia": "ws://127.0.0.1:9",
    }
    iface = rig.interface("cascading", urls, rig.Latencies())
    with pytest.raises(AgentRuntimeError, match="gc_policy= takes"):
        rig.runtime(iface, gc_policy="yes")
    assert rig.runtime(iface, gc_policy=False).gc_policy is None


@pytest.mark.anyio
async def test_a_serving_runtime_owns_full_collections_and_gives_them_back_at_stop() -> None:
    lat = rig.Latencies.zero()
    speech = b"".join(rig.speech_chunks(0.6))
    async with rig.run_fakes("cascading", lat) as fakes:
        runtime = rig.runtime(rig.interface("cascading", fakes.urls, lat, "fixed"))
        policy = runtime.gc_policy
        async with serve_runtime(runtime) as url:
            assert gc.get_freeze_count() > 0
            with anyio.fail_after(30):
                await rig.dial_through(url, rig.SILENCE * 5 + speech + rig.SILENCE * 40)
            if GENERATIONAL:
                assert policy.owns_full_collections
    assert gc.get_freeze_count() == 0  # stopped: the collector has everything back


def test_the_deploy_guide_example_builds_its_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    import types
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "gc_policy=" in b)
    urls = {
        "deepgram": "ws://127.0.0.1:9",
        "chat": "http://127.0.0.1:9/v1",
        "cartesia": "ws://127.0.0.1:9",
    }
    lines = types.ModuleType("lines")  # the guide's module of CallInterface objects
    lines.LINES = [rig.interface("cascading", urls, rig.Latencies())]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lines", lines)
    scope: dict = {}
    exec(compile(code, "deploy.md", "exec"), scope)
    policy = scope["runtime"].gc_policy
    assert isinstance(policy, GcPolicy)
    assert (policy.every_calls, policy.max_interval) == (100, 120)
