"""The in-process call state: the default when ``AgentRuntime(state=...)`` is not given.

Everything lives in this process: used stream tokens, the calls it holds, its admission count.
With several workers (``voicegraph serve --workers N``) or machines, each has its own, so a
replayed stream token could be accepted once by *another* worker within its lifetime, a message
about a call reaches the call only when it arrives at the worker holding it, and ``max_calls``
counts this worker's calls. Use :class:`~voicegraph.server.state.redis.RedisState` to share them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from ..stream_token import UsedNonces
from .base import CallRecord, Deliver, Dispatcher, PlacedHere, encode_message, new_worker_id

__all__ = ["MemoryState"]


class MemoryState:
    """:class:`~voicegraph.server.state.CallState` in this process (see module docs).

    Admission counts the calls this process holds (a webhook answered here holds no place,
    since its stream may go to another worker). ``max_used`` bounds the remembered tokens."""

    shared = False

    def __init__(self, *, max_used: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.worker_id = new_worker_id()
        self._used = UsedNonces(max_used)
        self._clock = clock
        self._calls: dict[str, CallRecord] = {}
        self._dispatch = Dispatcher()
        self._placed = PlacedHere()

    def __repr__(self) -> str:
        return f"MemoryState(worker={self.worker_id!r}, calls={len(self._calls)})"

    async def redeem_token(self, nonce: str, expires_at: int) -> bool:
        return self._used.redeem(nonce, expires_at, int(self._clock()))

    async def admit(self, call_id: str, limit: int, ttl: float) -> bool:
        return call_id in self._calls or len(self._calls) < limit

    async def register(self, record: CallRecord) -> None:
        self._calls[record.call_id] = record

    async def release(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    async def lookup(self, call_id: str) -> CallRecord | None:
        return self._calls.get(call_id)

    async def publish(self, call_id: str, message: Mapping[str, Any]) -> bool:
        data = encode_message(message)
        if call_id not in self._calls:
            return False
        await self._dispatch.dispatch(call_id, data)
        return True

    async def place(self, call_id: str, ttl: float) -> None:
        self._placed.add(call_id, ttl)

    async def alias_placed(self, other_id: str, call_id: str) -> None:
        ttl = self._placed.ttl(other_id)
        if ttl is not None:
            self._placed.add(call_id, ttl)

    async def report(self, call_id: str, message: Mapping[str, Any]) -> int:
        data = encode_message(message)
        if call_id not in self._calls and self._placed.ttl(call_id) is None:
            return 0
        await self._dispatch.dispatch(call_id, data)
        return 1

    async def ping(self) -> None:
        return None

    async def run(
        self,
        deliver: Deliver,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        await self._dispatch.serve(deliver, task_status=task_status)
