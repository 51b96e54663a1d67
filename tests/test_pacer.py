"""The process-wide pacer: deadlines of many waiters served by one ticker, on both backends and
on virtual time (so the instants below are exact)."""

from __future__ import annotations

import anyio
import pytest
from enginekit import BOTH_BACKENDS

from voicegraph.channel import Inbox
from voicegraph.frames import AudioFrame
from voicegraph.pacer import PHASE_STEP, Pacer, current_pacer, on_grid
from voicegraph.testing import virtual_clock


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return virtual_clock(request.param)


def test_a_deadline_is_rounded_up_to_the_grid_and_one_on_it_stays() -> None:
    assert on_grid(0.0512, 0.005) == pytest.approx(0.055)
    assert on_grid(0.06000000001, 0.005) == pytest.approx(0.06)
    assert on_grid(0.0512, 0.0) == 0.0512


def test_a_phase_shifts_the_grid() -> None:
    assert on_grid(0.0512, 0.02, 0.004) == pytest.approx(0.064)
    assert on_grid(0.064, 0.02, 0.004) == pytest.approx(0.064)
    assert on_grid(0.0639, 0.02, 0.004) == pytest.approx(0.064)
    assert on_grid(0.06401, 0.02, 0.004) == pytest.approx(0.084)


def test_spread_hands_out_successive_whole_millisecond_slots_of_the_grid() -> None:
    pacer = Pacer()
    phases = [pacer.spread(0.02) for _ in range(12)]
    assert PHASE_STEP == 0.002
    assert phases == pytest.approx([0.002 * k for k in range(10)] + [0.0, 0.002])
    assert all(round(p * 1000) == pytest.approx(p * 1000) for p in phases)
    # a grid of one slot or none has nothing to spread
    assert pacer.spread(0.002) == 0.0
    assert pacer.spread(0.0) == 0.0


@pytest.mark.anyio
async def test_waiters_on_other_phases_of_one_grid_wake_at_their_own_instants() -> None:
    pacer = current_pacer()
    fired: dict[float, float] = {}
    for phase in (0.0, 0.006, 0.012):
        pacer.call_at(
            0.1001, lambda p=phase: fired.setdefault(p, anyio.current_time()), 0.02, phase
        )
    await anyio.sleep(0.2)
    assert fired == {
        0.0: pytest.approx(0.12),
        0.006: pytest.approx(0.106),
        0.012: pytest.approx(0.112),
    }


@pytest.mark.anyio
async def test_paced_receive_until_keeps_its_phase() -> None:
    inbox = Inbox("test")
    inbox.add_port("in")
    inbox.add_writer("in")
    assert await inbox.receive_until(0.101, grid=0.02, phase=0.004) is None
    assert anyio.current_time() == pytest.approx(0.104)


@pytest.mark.anyio
async def test_deadlines_within_one_grid_step_share_one_wakeup() -> None:
    pacer = current_pacer()
    fired: list[tuple[int, float]] = []
    for k in range(100):
        at = 0.1001 + k * 0.00004  # 0.1001 .. 0.105: one grid step
        pacer.call_at(at, lambda k=k: fired.append((k, anyio.current_time())), grid=0.005)
    before = pacer.wakeups
    await anyio.sleep(0.2)
    assert sorted(k for k, _ in fired) == list(range(100))
    assert [t for _, t in fired] == [pytest.approx(0.105)] * 100
    assert pacer.wakeups - before == 1


@pytest.mark.anyio
async def test_a_cancelled_deadline_never_fires() -> None:
    fired: list[str] = []
    handle = current_pacer().call_at(0.05, lambda: fired.append("late"))
    current_pacer().call_at(0.06, lambda: fired.append("kept"))
    handle.cancel()
    await anyio.sleep(0.1)
    assert fired == ["kept"]


@pytest.mark.anyio
async def test_an_earlier_deadline_wakes_the_ticker_sooner() -> None:
    fired: list[float] = []
    pacer = current_pacer()
    pacer.call_at(1.0, lambda: fired.append(anyio.current_time()))
    await anyio.sleep(0.01)  # the ticker now sleeps until 1.0
    pacer.call_at(0.2, lambda: fired.append(anyio.current_time()))
    await anyio.sleep(1.1)
    assert fired == [pytest.approx(0.2), pytest.approx(1.0)]


@pytest.mark.anyio
async def test_paced_receive_until_returns_none_at_the_grid_step_after_the_deadline() -> None:
    inbox = Inbox("test")
    inbox.add_port("in")
    inbox.add_writer("in")
    assert await inbox.receive_until(0.101, grid=0.01) is None
    assert anyio.current_time() == pytest.approx(0.11)


@pytest.mark.anyio
async def test_paced_receive_until_returns_a_frame_that_arrives_before_the_deadline() -> None:
    inbox = Inbox("test")
    inbox.add_port("in")
    inbox.add_writer("in")
    frame = AudioFrame(data=bytes(320))

    async def later() -> None:
        await anyio.sleep(0.03)
        await inbox.send("in", frame)

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        assert await inbox.receive_until(1.0, grid=0.01) == ("in", frame)
    assert anyio.current_time() == pytest.approx(0.03)


@pytest.mark.anyio
async def test_a_waker_with_a_deadline_returns_at_it_or_at_a_wake_whichever_is_first() -> None:
    from voicegraph.backends import new_waker

    waker = new_waker()
    start = anyio.current_time()
    await waker.wait_until(start + 0.25)
    assert anyio.current_time() == pytest.approx(start + 0.25)

    async def wake_soon() -> None:
        await anyio.sleep(0.05)
        waker.wake()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wake_soon)
        t0 = anyio.current_time()
        await waker.wait_until(t0 + 10.0)
        assert anyio.current_time() == pytest.approx(t0 + 0.05)  # woken, not timed out
    with anyio.move_on_after(0.1):  # cancelling a waiter is safe; its timer goes with it
        await waker.wait_until(anyio.current_time() + 5.0)
    waker.wake()  # nobody waits: lost, harmless


@pytest.mark.anyio
async def test_the_ticker_sleeps_without_a_cancel_scope_per_tick() -> None:
    # A cancel scope per tick meant a timer, a cancellation and a caught CancelledError for
    # every grid step of every busy process; the ticker now sleeps on a waker's deadline.
    from voicegraph import pacer as module

    pacer = current_pacer()
    fired: list[float] = []
    scopes: list[object] = []
    real = module.anyio.CancelScope
    module.anyio.CancelScope = lambda *a, **k: scopes.append(k) or real(*a, **k)  # type: ignore[assignment]
    try:
        for k in range(20):
            pacer.call_at(0.01 + k * 0.02, lambda: fired.append(anyio.current_time()), grid=0.02)
        await anyio.sleep(0.5)
    finally:
        module.anyio.CancelScope = real  # type: ignore[misc]
    assert len(fired) == 20
    from voicegraph.backends import current_backend

    if current_backend() == "asyncio":  # Trio's own cancel scopes are what its waker uses
        assert scopes == []
