"""Inbox channels: ordering, no loss under block, exact drops under drop_oldest, priority lane."""

from __future__ import annotations

import anyio
import pytest
from enginekit import BOTH_BACKENDS, audio
from hypothesis import given, settings, strategies as st

from voicegraph import DTMF, EndOfInput, Inbox, Interrupt, SpeechStarted


def run(fn, *, backend: str):  # type: ignore[no-untyped-def]
    return anyio.run(fn, backend=backend)


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 16), n=st.integers(0, 200))
def test_drop_oldest_keeps_newest_and_counts_every_drop(
    backend: str, capacity: int, n: int
) -> None:
    async def main() -> None:
        inbox = Inbox("sink")
        inbox.add_port("in", capacity=capacity, policy="drop_oldest")
        inbox.add_writer("in")
        for i in range(n):
            await inbox.send("in", audio(i))
        assert inbox.qsize() == min(n, capacity)  # bounded memory
        stats = inbox.ports["in"]
        assert stats.dropped == max(0, n - capacity)
        inbox.close_writer("in")
        got = []
        while True:
            try:
                got.append((await inbox.receive())[1].timestamp)
            except EndOfInput:
                break
        assert got == [float(i) for i in range(max(0, n - capacity), n)]

    run(main, backend=backend)


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=30, deadline=None)
@given(capacity=st.integers(1, 8), n=st.integers(0, 120), writers=st.integers(1, 4))
def test_block_policy_loses_nothing_and_keeps_per_writer_order(
    backend: str, capacity: int, n: int, writers: int
) -> None:
    async def main() -> None:
        inbox = Inbox("sink")
        inbox.add_port("in", capacity=capacity)
        for _ in range(writers):
            inbox.add_writer("in")
        got: list[tuple[int, float]] = []

        async def writer(w: int) -> None:
            for i in range(n):
                await inbox.send("in", audio(i, tag=w))
            inbox.close_writer("in")

        async with anyio.create_task_group() as tg:
            for w in range(writers):
                tg.start_soon(writer, w)
            while True:
                try:
                    _, f = await inbox.receive()
                except EndOfInput:
                    break
                assert inbox.qsize() <= capacity
                got.append((f.utterance_id, f.timestamp))
        assert len(got) == n * writers
        for w in range(writers):
            assert [t for u, t in got if u == w] == [float(i) for i in range(n)]
        assert inbox.ports["in"].dropped == 0
        assert inbox.ports["in"].high_water <= capacity

    run(main, backend=backend)


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=40, deadline=None)
@given(kinds=st.lists(st.booleans(), min_size=1, max_size=60))
def test_control_frames_overtake_queued_media_in_order(backend: str, kinds: list[bool]) -> None:
    async def main() -> None:
        inbox = Inbox("sink")
        inbox.add_port("in", capacity=100)
        inbox.add_writer("in")
        for i, is_control in enumerate(kinds):
            await inbox.send("in", SpeechStarted(timestamp=i) if is_control else audio(i))
        inbox.close_writer("in")
        got = []
        while True:
            try:
                got.append((await inbox.receive())[1])
            except EndOfInput:
                break
        controls = [f.timestamp for f in got if isinstance(f, SpeechStarted)]
        media = [f.timestamp for f in got if not isinstance(f, SpeechStarted)]
        assert got[: len(controls)] == [f for f in got if isinstance(f, SpeechStarted)]
        assert controls == sorted(controls) and media == sorted(media)
        assert len(got) == len(kinds)

    run(main, backend=backend)


@pytest.mark.anyio
async def test_control_lane_is_never_dropped_even_on_drop_oldest_ports() -> None:
    inbox = Inbox("sink", control_capacity=4)
    inbox.add_port("in", capacity=1, policy="drop_oldest")
    inbox.add_writer("in")
    for i in range(4):
        await inbox.send("in", DTMF(digit=str(i)))
    with anyio.move_on_after(0.05) as scope:
        await inbox.send("in", DTMF(digit="9"))  # full control lane blocks, never drops
    assert scope.cancelled_caught
    assert inbox.ports["in"].dropped == 0
    digits = [(await inbox.receive())[1].digit for _ in range(4)]
    assert digits == ["0", "1", "2", "3"]


@pytest.mark.anyio
async def test_ports_are_served_round_robin() -> None:
    inbox = Inbox("mixer")
    for p in ("a", "b"):
        inbox.add_port(p, capacity=10)
        inbox.add_writer(p)
    for i in range(3):
        await inbox.send("a", audio(i))
    for i in range(3):
        await inbox.send("b", audio(i))
    ports = [(await inbox.receive())[0] for _ in range(6)]
    assert ports == ["a", "b", "a", "b", "a", "b"]


@pytest.mark.anyio
async def test_closing_the_receiver_releases_blocked_senders_and_counts_drops() -> None:
    inbox = Inbox("sink")
    inbox.add_port("in", capacity=1)
    inbox.add_writer("in")
    await inbox.send("in", audio(0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(inbox.send, "in", audio(1))  # blocks: lane full
        await anyio.wait_all_tasks_blocked()
        inbox.close_receiving()
    assert inbox.ports["in"].dropped == 1
    assert inbox.dropped_after_close == 1
    await inbox.send("in", audio(2))
    assert inbox.dropped_after_close == 2


@pytest.mark.anyio
async def test_cancelled_blocked_send_does_not_enqueue() -> None:
    inbox = Inbox("sink")
    inbox.add_port("in", capacity=1)
    inbox.add_writer("in")
    await inbox.send("in", audio(0))
    with anyio.move_on_after(0.01):
        await inbox.send("in", audio(1))
    assert inbox.qsize() == 1
    assert (await inbox.receive())[1].timestamp == 0.0


@pytest.mark.anyio
async def test_receive_until_returns_none_at_deadline() -> None:
    inbox = Inbox("sink")
    inbox.add_port("in")
    inbox.add_writer("in")
    assert await inbox.receive_until(anyio.current_time() + 0.01) is None
    await inbox.send("in", Interrupt())
    port, frame = await inbox.receive_until(anyio.current_time() + 0.01)  # type: ignore[misc]
    assert isinstance(frame, Interrupt) and port == "in"


def test_edges_into_one_port_must_agree_on_policy() -> None:
    inbox = Inbox("sink")
    inbox.add_port("in", capacity=8, policy="block")
    with pytest.raises(ValueError, match="share policy"):
        inbox.add_port("in", capacity=8, policy="drop_oldest")


# ------------------------------------------------------------------- direct handler


@pytest.mark.anyio
async def test_a_direct_handler_takes_frames_only_while_the_receiver_waits_on_an_empty_inbox() -> (
    None
):
    inbox = Inbox("sink")
    inbox.add_port("in", capacity=8)
    inbox.add_writer("in")
    taken: list[float] = []
    accept = True

    def direct(frame: object) -> bool:
        if accept:
            taken.append(frame.timestamp)  # type: ignore[attr-defined]
        return accept

    inbox.set_direct("in", direct)
    await inbox.send("in", audio(0))  # nobody waits: queued, the handler is not asked
    assert taken == [] and inbox.qsize() == 1
    assert (await inbox.receive())[1].timestamp == 0.0
    got: list[float] = []

    async def receiver() -> None:
        while True:
            try:
                got.append((await inbox.receive())[1].timestamp)
            except EndOfInput:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await anyio.wait_all_tasks_blocked()
        await inbox.send("in", audio(1))  # the receiver waits, nothing queued: taken
        await inbox.send("in", audio(2))
        assert taken == [1.0, 2.0] and inbox.qsize() == 0
        accept = False
        await inbox.send("in", audio(3))  # declined: queued, the receiver is woken for it
        await inbox.send("in", audio(4))  # queued behind it: the handler is not asked
        accept = True
        await inbox.send("in", audio(5))
        assert taken == [1.0, 2.0]
        await anyio.wait_all_tasks_blocked()
        await inbox.send("in", audio(6))  # drained and waiting again: taken
        inbox.close_writer("in")
    assert taken == [1.0, 2.0, 6.0]
    assert got == [3.0, 4.0, 5.0]
    assert inbox.ports["in"].received == 7  # the direct ones count as received


@pytest.mark.anyio
async def test_a_direct_handler_never_overtakes_a_queued_control_frame() -> None:
    inbox = Inbox("sink")
    inbox.add_port("in", capacity=8)
    inbox.add_writer("in")
    taken: list[float] = []
    inbox.set_direct("in", lambda f: taken.append(f.timestamp) is None)  # type: ignore[attr-defined]
    order: list[str] = []

    async def receiver() -> None:
        while True:
            try:
                order.append(type((await inbox.receive())[1]).__name__)
            except EndOfInput:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await anyio.wait_all_tasks_blocked()
        await inbox.send("in", Interrupt())  # control: queued, wakes the receiver
        await inbox.send("in", audio(1))  # the control frame is still queued: queued too
        await anyio.wait_all_tasks_blocked()
        inbox.set_direct("in", None)
        await inbox.send("in", audio(2))  # removed: queued
        inbox.close_writer("in")
    assert taken == []
    assert order == ["Interrupt", "AudioFrame", "AudioFrame"]
