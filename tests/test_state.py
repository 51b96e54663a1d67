"""Call state: single-use tokens, admission, the registry and the channel -- in process and in a
real Redis shared by several workers (each a RedisState, as each process has one)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest
from redis_kit import free_port

from voicegraph.server.state import (
    CallRecord,
    CallState,
    MemoryState,
    RedisState,
    RedisStateError,
    StateUnavailable,
    open_state,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # redis-py is asyncio: on Trio it runs through the bridge


def cluster(url: str, n: int = 2, **kw: Any) -> list[RedisState]:
    prefix = "t" + secrets.token_hex(4)  # each test its own keys in the shared server
    return [RedisState(url, prefix=prefix, **kw) for _ in range(n)]


class Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.changed = anyio.Event()

    async def deliver(self, call_id: str, message: dict[str, Any]) -> None:
        self.got.append((call_id, message))
        self.changed.set()

    async def wait(self) -> None:
        with anyio.fail_after(10):
            await self.changed.wait()


@asynccontextmanager
async def running(*states: CallState, inbox: Inbox | None = None) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for s in states:
            await tg.start(partial(s.run, (inbox or Inbox()).deliver))
        yield
        tg.cancel_scope.cancel()


def record(state: CallState, call_id: str) -> CallRecord:
    return CallRecord(call_id, state.worker_id, line="14155550199", started_at=1.0)


# ------------------------------------------------------------------------- tokens


@pytest.mark.anyio
async def test_a_token_is_redeemed_once_across_workers(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    async with running(a, b):
        exp = int(anyio.current_time()) + 10**9
        assert await a.redeem_token("00aa11bb22cc33dd", exp)
        assert not await b.redeem_token("00aa11bb22cc33dd", exp)
        assert not await a.redeem_token("00aa11bb22cc33dd", exp)
        assert await b.redeem_token("00aa11bb22cc33de", exp)


@pytest.mark.anyio
async def test_in_process_state_redeems_a_token_once() -> None:
    state = MemoryState()
    assert await state.redeem_token("00aa11bb22cc33dd", 2**31)
    assert not await state.redeem_token("00aa11bb22cc33dd", 2**31)


# ---------------------------------------------------------------------- admission


@pytest.mark.anyio
async def test_admission_limit_holds_across_workers(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    assert await a.admit("CA1", 2, 60)
    assert await b.admit("CA2", 2, 60)
    assert not await a.admit("CA3", 2, 60)
    assert not await b.admit("CA3", 2, 60)


@pytest.mark.anyio
async def test_admitting_the_same_call_again_takes_no_second_place(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    assert await a.admit("CA1", 2, 60)
    assert await b.admit("CA1", 2, 60)
    assert await b.admit("CA2", 2, 60)


@pytest.mark.anyio
async def test_a_released_call_frees_its_place(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    assert await a.admit("CA1", 1, 60)
    await a.register(record(a, "CA1"))
    assert not await b.admit("CA2", 1, 60)
    await a.release("CA1")
    assert await b.admit("CA2", 1, 60)


@pytest.mark.anyio
async def test_a_place_whose_stream_never_came_expires(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    assert await a.admit("CA1", 1, 0.2)
    await anyio.sleep(0.5)
    assert await b.admit("CA2", 1, 60)


@pytest.mark.anyio
async def test_a_crashed_workers_calls_expire(redis_server: Any) -> None:
    # the crashed worker registered a call and then never ran its heartbeat again
    crashed, b = cluster(redis_server.url, heartbeat=0.1)
    await crashed.admit("CA1", 1, 60)
    await crashed.register(record(crashed, "CA1"))
    assert (await b.lookup("CA1")) == record(crashed, "CA1")
    await anyio.sleep(0.6)
    assert await b.lookup("CA1") is None
    assert await b.admit("CA2", 1, 60)


@pytest.mark.anyio
async def test_a_live_workers_heartbeat_keeps_its_calls(redis_server: Any) -> None:
    a, b = cluster(redis_server.url, heartbeat=0.1)
    async with running(a):
        await a.register(record(a, "CA1"))
        await anyio.sleep(0.8)  # well past 3 heartbeats
        assert (await b.lookup("CA1")) == record(a, "CA1")
        assert not await b.admit("CA2", 1, 60)


@pytest.mark.anyio
async def test_in_process_admission_counts_this_processes_calls() -> None:
    state = MemoryState()
    assert await state.admit("CA1", 1, 60)  # answering a webhook holds no place here
    await state.register(record(state, "CA1"))
    assert not await state.admit("CA2", 1, 60)
    assert await state.admit("CA1", 1, 60)


# ------------------------------------------------------------------------ channel


@pytest.mark.anyio
async def test_a_message_reaches_the_worker_holding_the_call(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    inbox = Inbox()
    async with running(a, inbox=inbox), running(b):
        await a.register(record(a, "CA1"))
        assert await b.publish("CA1", {"type": "hangup"})
        await inbox.wait()
    assert inbox.got == [("CA1", {"type": "hangup"})]


@pytest.mark.anyio
async def test_a_message_for_no_live_call_is_not_delivered(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    async with running(a, b):
        assert not await b.publish("CA404", {"type": "hangup"})
        await a.admit("CA1", 5, 60)  # admitted, but its stream has not started anywhere
        assert not await b.publish("CA1", {"type": "hangup"})


@pytest.mark.anyio
async def test_in_process_state_delivers_to_its_own_calls() -> None:
    state, inbox = MemoryState(), Inbox()
    async with running(state, inbox=inbox):
        await state.register(record(state, "CA1"))
        assert await state.publish("CA1", {"type": "transfer", "to": "+15551234567"})
        assert not await state.publish("CA2", {"type": "hangup"})
        await inbox.wait()
    assert inbox.got == [("CA1", {"type": "transfer", "to": "+15551234567"})]


@pytest.mark.anyio
async def test_a_message_must_be_a_small_json_object(redis_server: Any) -> None:
    [a] = cluster(redis_server.url, 1)
    with pytest.raises(ValueError, match="at most"):
        await a.publish("CA1", {"pad": "x" * 10_000})
    with pytest.raises(ValueError, match="JSON object"):
        await a.publish("CA1", ["hangup"])  # type: ignore[arg-type]


# ------------------------------------------------------------------- placed calls


@pytest.mark.anyio
async def test_a_report_reaches_the_dialling_worker_and_the_call_holder_once_each(
    redis_server: Any,
) -> None:
    dialler, holder, receiver = cluster(redis_server.url, 3)
    d, h, r = Inbox(), Inbox(), Inbox()
    async with running(dialler, inbox=d), running(holder, inbox=h), running(receiver, inbox=r):
        await dialler.place("CA1", 60)
        await holder.register(record(holder, "CA1"))
        assert await receiver.report("CA1", {"type": "carrier_report"}) == 2
        await d.wait()
        await h.wait()
    assert d.got == h.got == [("CA1", {"type": "carrier_report"})]
    assert r.got == []


@pytest.mark.anyio
async def test_a_report_for_a_worker_holding_both_is_delivered_once(redis_server: Any) -> None:
    a, b = cluster(redis_server.url)
    inbox = Inbox()
    async with running(a, inbox=inbox), running(b):
        await a.place("CA1", 60)
        await a.register(record(a, "CA1"))
        assert await b.report("CA1", {"type": "carrier_report"}) == 1
        await inbox.wait()
    assert inbox.got == [("CA1", {"type": "carrier_report"})]


@pytest.mark.anyio
async def test_an_aliased_placed_call_is_reached_by_either_id(redis_server: Any) -> None:
    dialler, other = cluster(redis_server.url)
    inbox = Inbox()
    async with running(dialler, inbox=inbox), running(other):
        await dialler.place("request-uuid", 60)
        assert await other.report("call-uuid", {"type": "carrier_report"}) == 0
        await other.alias_placed("request-uuid", "call-uuid")
        assert await other.report("call-uuid", {"type": "carrier_report"}) == 1
        await inbox.wait()
    assert inbox.got == [("call-uuid", {"type": "carrier_report"})]


@pytest.mark.anyio
async def test_in_process_state_reports_to_its_placed_and_live_calls() -> None:
    state, inbox = MemoryState(), Inbox()
    async with running(state, inbox=inbox):
        await state.place("request-uuid", 60)
        await state.alias_placed("request-uuid", "call-uuid")
        assert await state.report("call-uuid", {"type": "carrier_report"}) == 1
        assert await state.report("CA404", {"type": "carrier_report"}) == 0
        await inbox.wait()
    assert inbox.got == [("call-uuid", {"type": "carrier_report"})]


# ------------------------------------------------------------------- unreachable


@pytest.mark.anyio
async def test_an_unreachable_redis_raises_state_unavailable_without_the_password() -> None:
    state = RedisState(f"redis://:hunter2secret@127.0.0.1:{free_port()}/0", timeout=0.5)
    with pytest.raises(StateUnavailable, match="127.0.0.1") as err:
        await state.admit("CA1", 5, 60)
    assert "hunter2secret" not in str(err.value) and "hunter2secret" not in repr(state)
    with pytest.raises(StateUnavailable):
        await state.ping()


def test_state_specs_are_checked_at_construction() -> None:
    assert isinstance(open_state(None), MemoryState)
    assert isinstance(open_state("redis://localhost:6379/0"), RedisState)
    with pytest.raises(RedisStateError, match="redis://"):
        open_state("memcached://localhost:11211")
    with pytest.raises(ValueError, match="CallState"):
        open_state(42)
    with pytest.raises(RedisStateError, match="heartbeat"):
        RedisState("redis://localhost:6379/0", heartbeat=0)
