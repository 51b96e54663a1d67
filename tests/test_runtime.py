"""Call runtime: delivery, fusion equivalence, teardown, deadlines, polite end, observability."""

from __future__ import annotations

import anyio
import pytest
import sniffio
from enginekit import BOTH_BACKENDS, Lifecycle, MapActor, MapStage, PassActor, Sink, Source, audio
from hypothesis import given, settings, strategies as st

from voicegraph import (
    Actor,
    AudioFrame,
    Call,
    Delivered,
    Frame,
    Graph,
    In,
    Interrupt,
    Out,
    SpeechPaused,
    SpeechStopped,
    Transcript,
    decode_frame,
    encode_frame,
)
from voicegraph.testing import virtual_clock


def run(fn, *, backend: str):  # type: ignore[no-untyped-def]
    return anyio.run(fn, backend=backend)


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def chain_graph(
    frames: list[Frame], *, fuse: bool, stages: int = 3, actors: int = 3, sink_delay: float = 0.0
) -> Graph:
    g = Graph(fuse=fuse)
    g.add("src", Source(frames))
    names = ["src"]
    for i in range(stages):
        names.append(g.add(f"s{i}", MapStage(lambda f: f)).name)
    for i in range(actors):
        names.append(g.add(f"a{i}", PassActor()).name)
    g.add("sink", Sink(delay=sink_delay))
    g.chain(*names, "sink")
    return g


@pytest.mark.anyio
@pytest.mark.parametrize("fuse", [True, False])
async def test_chain_delivers_every_frame_in_order(fuse: bool) -> None:
    frames = [audio(i) for i in range(500)]
    g = chain_graph(frames, fuse=fuse)
    result = await Call(g).run()
    assert result.reason == "completed" and result.error is None
    assert g["sink"].got == frames
    assert result.stats["sink"]["frames_in"] == 500
    assert result.stats["s0"]["frames_out"] == 500


# A few deterministic frame transforms that differ in shape: filter, duplicate, rewrite.
def _on_audio(fn):  # type: ignore[no-untyped-def]
    return lambda f: fn(f) if isinstance(f, AudioFrame) else f


TRANSFORMS = {
    "keep": lambda f: f,
    "drop_odd": _on_audio(lambda f: None if int(f.timestamp) % 2 else f),
    "dup": lambda f: [f, f],
    "shift": _on_audio(lambda f: AudioFrame(data=f.data, timestamp=f.timestamp + 1)),
    "to_text": _on_audio(lambda f: Transcript(text=str(f.timestamp))),
}


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    plan=st.lists(st.sampled_from(sorted(TRANSFORMS)), min_size=1, max_size=4),
    n=st.integers(0, 40),
    tail=st.booleans(),
)
def test_fused_stages_behave_exactly_like_the_same_stages_as_actors(
    backend: str, plan: list[str], n: int, tail: bool
) -> None:
    frames = [audio(i) for i in range(n)]

    def build(kind: str) -> Graph:
        g = Graph(fuse=kind == "fused")
        g.add("src", Source(frames))
        prev = "src"
        for i, name in enumerate(plan):
            fn = TRANSFORMS[name]
            fin = [Transcript(text=f"end{i}")] if tail else []
            node = MapActor(fn, fin) if kind == "actors" else MapStage(fn, fin)
            g.add(f"n{i}", node)
            g.connect(prev, f"n{i}")
            prev = f"n{i}"
        g.add("sink", Sink())
        g.connect(prev, "sink")
        return g

    outs = {}

    async def main() -> None:
        for kind in ("fused", "unfused", "actors"):
            g = build(kind)
            result = await Call(g).run()
            assert result.reason == "completed"
            outs[kind] = g["sink"].got

    run(main, backend=backend)
    assert outs["fused"] == outs["unfused"] == outs["actors"]


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 150), cap=st.integers(1, 4))
def test_no_loss_under_back_pressure_with_a_slow_consumer(backend: str, n: int, cap: int) -> None:
    async def main() -> None:
        g = Graph()
        g.add("src", Source([audio(i) for i in range(n)]))
        g.add("a", PassActor())
        g.add("sink", Sink())
        g.connect("src", "a", capacity=cap)
        g.connect("a", "sink", capacity=cap)
        result = await Call(g).run()
        assert [f.timestamp for f in g["sink"].got] == [float(i) for i in range(n)]
        assert result.stats["sink"]["dropped"] == 0
        assert result.stats["sink"]["high_water"] <= cap

    run(main, backend=backend)


@pytest.mark.anyio
async def test_fan_out_and_fan_in_deliver_to_every_edge() -> None:
    g = Graph()
    g.add("src", Source([audio(i) for i in range(10)]))
    g.add("left", PassActor())
    g.add("right", MapStage(lambda f: Transcript(text=str(f.timestamp))))
    g.add("sink", Sink(ports=("a", "b")))
    g.connect("src", "left")
    g.connect("src", "right")
    g.connect("left", "sink.a")
    g.connect("right", "sink.b")
    await Call(g).run()
    sink = g["sink"]
    assert sink.ports.count("a") == 10 and sink.ports.count("b") == 10


@pytest.mark.anyio
@pytest.mark.parametrize("trace", [False, True])
@pytest.mark.parametrize("fuse", [True, False])
async def test_filtered_edges_each_take_only_their_classes_and_subclasses(
    fuse: bool, trace: bool
) -> None:
    frames = [
        audio(0),
        Transcript(text="a"),
        SpeechPaused(silence=0.2),  # a SpeechStopped subclass
        audio(1),
        SpeechStopped(),
        Transcript(text="b"),
    ]
    g = Graph(fuse=fuse)
    g.add("src", Source(frames))
    g.add("pass", MapStage(lambda f: f))  # the edges leave a stage: fused, its segment's route
    for name in ("all", "words", "stops"):
        g.add(name, Sink())
    g.connect("src", "pass")
    g.connect("pass", "all")
    g.connect("pass", "words", types=(Transcript,))
    g.connect("pass", "stops", types=(SpeechStopped,))
    result = await Call(g, trace=trace).run()
    assert result.error is None
    assert g["words"].got == [frames[1], frames[5]]
    assert g["stops"].got == [frames[2], frames[4]]
    # control frames overtake queued media, so only the unfiltered edge's set is compared
    assert sorted(map(repr, g["all"].got)) == sorted(map(repr, frames))
    assert result.stats["pass"]["frames_out"] == len(frames)


@pytest.mark.anyio
async def test_sending_an_undeclared_type_fails_the_call_naming_the_port() -> None:
    class Liar(Actor):
        outputs = (Out("out", Transcript),)

        async def run(self) -> None:
            await self.send("out", audio(0))

    g = Graph()
    g.add("liar", Liar())
    g.add("sink", Sink())
    g.connect("liar", "sink")
    result = await Call(g, call_id="c1").run()
    assert result.reason == "error"
    assert result.error is not None and result.error.node == "liar"
    assert "liar.out" in str(result.error) and "c1" in str(result.error)


@pytest.mark.anyio
@pytest.mark.parametrize("fuse", [True, False])
async def test_a_failing_stage_is_named_whether_fused_or_not(fuse: bool) -> None:
    def boom(f: Frame) -> Frame:
        raise ValueError("bad frame")

    g = Graph(fuse=fuse)
    g.add("src", Source([audio(0)]))
    g.add("codec", MapStage(boom))
    g.add("sink", Sink())
    g.chain("src", "codec", "sink")
    result = await Call(g).run()
    assert result.reason == "error" and result.error is not None
    assert result.error.node == "codec" and isinstance(result.error.exc, ValueError)


@pytest.mark.anyio
@pytest.mark.parametrize("phase", ["start", "run", "stop"])
async def test_every_started_node_is_stopped_when_one_fails(phase: str) -> None:
    journal: list[str] = []
    g = Graph()
    for name in ("a", "b", "c"):
        g.add(name, Lifecycle(journal, fail_in=phase if name == "b" else "", forever=True))
    for name in ("a", "b", "c"):
        g.add(f"sink_{name}", Sink())
        g.connect(name, f"sink_{name}")
    call = Call(g, call_id="call-7")
    if phase == "stop":
        with anyio.move_on_after(0.05):
            await call.run()
        # stop failures are reported; the run was cancelled from outside, teardown still ran
    else:
        result = await call.run()
        assert result.reason == "error"
        assert result.error.node == "b" and result.error.phase == phase
        assert result.error.call_id == "call-7"
    assert sorted(j for j in journal if j.startswith("stop")) == ["stop a", "stop b", "stop c"]


@pytest.mark.anyio
async def test_stop_errors_are_collected_not_raised() -> None:
    journal: list[str] = []
    g = Graph()
    g.add("a", Lifecycle(journal, fail_in="stop"))
    g.add("sink", Sink())
    g.connect("a", "sink")
    result = await Call(g).run()
    assert result.reason == "completed"
    assert [e.node for e in result.stop_errors] == ["a"]


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
def test_outside_cancellation_stops_every_node_and_leaves_no_task(backend: str) -> None:
    journal: list[str] = []

    async def main() -> None:
        g = Graph()
        for name in ("a", "b"):
            g.add(name, Lifecycle(journal, forever=True))
            g.add(f"sink_{name}", Sink())
            g.connect(name, f"sink_{name}")
        call = Call(g)
        before = _task_count()
        async with anyio.create_task_group() as tg:
            tg.start_soon(call.run)
            await anyio.wait_all_tasks_blocked()
            assert _task_count() > before
            tg.cancel_scope.cancel()
        assert _task_count() == before

    run(main, backend=backend)
    assert sorted(j for j in journal if j.startswith("stop")) == ["stop a", "stop b"]


def _task_count() -> int:
    """Live tasks of the running event loop (either backend)."""
    if sniffio.current_async_library() == "trio":
        import trio

        def walk(task: trio.lowlevel.Task) -> int:
            return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

        return walk(trio.lowlevel.current_root_task())
    import asyncio

    return len(asyncio.all_tasks())


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
def test_max_duration_runs_the_goodbye_hook_then_ends(backend: str) -> None:
    journal: list[str] = []

    async def goodbye(call: Call) -> None:
        journal.append(f"goodbye at {anyio.current_time():.0f}")
        await anyio.sleep(2)

    async def main() -> None:
        g = Graph()
        g.add("a", Lifecycle(journal, forever=True))
        g.add("sink", Sink())
        g.connect("a", "sink")
        result = await Call(g, max_duration=30, on_max_duration=goodbye, grace=5).run()
        assert result.reason == "max_duration"
        assert 31.9 < result.duration < 32.1

    name, options = virtual_clock(backend)
    anyio.run(main, backend=name, backend_options=options)
    assert "goodbye at 30" in journal and "stop a" in journal


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
def test_idle_timeout_ends_a_call_with_no_frames(backend: str) -> None:
    async def main() -> None:
        g = Graph()
        g.add("src", Source([audio(i) for i in range(5)], delay=1.0))
        g.add("sink", Sink())
        g.add("idle", Lifecycle([], forever=True))
        g.add("sink2", Sink())
        g.connect("src", "sink")
        g.connect("idle", "sink2")
        result = await Call(g, idle_timeout=8).run()
        assert result.reason == "idle_timeout"
        # frames flowed for ~5 s, then 8 s of silence (checked in steps of 2 s)
        assert 12.9 < result.duration <= 15.1

    name, options = virtual_clock(backend)
    anyio.run(main, backend=name, backend_options=options)


@pytest.mark.anyio
async def test_polite_end_waits_for_delivery_confirmation_then_stops() -> None:
    class Speaker(Actor):
        inputs = (In("in", Transcript),)

        async def handle(self, port: str, frame: Frame) -> None:
            await anyio.sleep(0.01)  # "playing" takes time
            self.publish(Delivered(ref=frame.text))  # type: ignore[attr-defined]

    journal: list[str] = []
    g = Graph()
    g.add("speaker", Speaker())
    g.add("life", Lifecycle(journal, forever=True))
    g.connect("life", "speaker")  # keeps the speaker's input open
    call = Call(g)
    confirmed: list[bool] = []

    async def end() -> None:
        await anyio.wait_all_tasks_blocked()
        confirmed.append(
            await call.end_politely(
                Transcript(text="bye"),
                into="speaker.in",
                delivered=lambda e: isinstance(e, Delivered) and e.ref == "bye",
            )
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(end)
        result = await call.run()
    assert confirmed == [True]
    assert result.reason == "ended"
    assert any(isinstance(e, Delivered) for e in call.recent_events)
    assert "stop life" in journal


@pytest.mark.anyio
async def test_polite_end_times_out_without_confirmation() -> None:
    g = Graph()
    g.add("sink", Sink())
    g.add("life", Lifecycle([], forever=True))
    g.connect("life", "sink")
    call = Call(g)
    got: list[bool] = []

    async def end() -> None:
        await anyio.wait_all_tasks_blocked()
        got.append(
            await call.end_politely(
                Transcript(text="x"), into="sink.in", delivered=lambda e: False, timeout=0.05
            )
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(end)
        result = await call.run()
    assert got == [False] and result.reason == "ended"


@pytest.mark.anyio
async def test_drop_oldest_edge_counts_drops_in_call_stats() -> None:
    g = Graph()
    g.add("src", Source([audio(i) for i in range(100)]))
    g.add("sink", Sink(delay=0.001))
    g.connect("src", "sink", policy="drop_oldest", capacity=4)
    result = await Call(g).run()
    got = len(g["sink"].got)
    assert result.stats["sink"]["dropped"] == 100 - got
    assert got < 100 and result.stats["sink"]["high_water"] == 4


@pytest.mark.anyio
async def test_trace_records_each_delivery_when_enabled() -> None:
    g = chain_graph([audio(0), audio(1)], fuse=True, stages=1, actors=1)
    call = Call(g, trace=True)
    await call.run()
    assert call.trace is not None
    hops = [(src, dst) for _, src, dst, _ in call.trace]
    assert hops.count(("src", "s0")) == 2 and hops.count(("a0", "sink")) == 2
    assert Call(chain_graph([], fuse=True)).trace is None


@pytest.mark.anyio
async def test_inject_and_interrupt_reach_an_actor_before_queued_media() -> None:
    g = Graph()
    g.add("src", Source([]))
    g.add("sink", Sink(delay=0.0))
    g.connect("src", "sink")
    call = Call(g)
    actor = g["sink"]
    inbox = actor.inbox  # type: ignore[attr-defined]
    await inbox.send("in", audio(1))
    await call.inject("sink", "in", Interrupt())
    assert isinstance((await inbox.receive())[1], Interrupt)


@settings(max_examples=50, deadline=None)
@given(
    st.one_of(
        st.builds(
            AudioFrame,
            data=st.binary(max_size=64),
            encoding=st.sampled_from(["pcm16", "mulaw"]),
            sample_rate=st.sampled_from([8000, 16000, 24000]),
            timestamp=st.floats(0, 1e6),
            capture_time=st.floats(0, 1e6),
            utterance_id=st.integers(0, 2**31),
        ),
        st.builds(Transcript, text=st.text(max_size=20), is_final=st.booleans()),
        st.builds(Interrupt, reason=st.text(max_size=10), utterance_id=st.integers(0, 100)),
    )
)
def test_frames_round_trip_through_msgpack(frame: Frame) -> None:
    assert decode_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
def test_a_call_runs_once(backend: str) -> None:
    async def main() -> None:
        call = Call(chain_graph([], fuse=True))
        await call.run()
        with pytest.raises(RuntimeError, match="already ran"):
            await call.run()

    run(main, backend=backend)
