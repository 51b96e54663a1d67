"""What every call-state backend offers :class:`~voicegraph.server.AgentRuntime`.

The state is what webhook and stream handlers must agree on beyond the signed stream token:

* **single-use tokens** -- :meth:`CallState.redeem_token` accepts a token's nonce once;
* **admission** -- :meth:`CallState.admit` holds a place for a call (``limit`` places in all);
* **the call registry** -- :meth:`CallState.register` / :meth:`CallState.release` say which
  worker holds a live call; :meth:`CallState.lookup` reads it;
* **the channel** -- :meth:`CallState.publish` delivers a small JSON message about a call to the
  handler of the worker that holds it, wherever the request arrived;
* **placed calls** -- :meth:`CallState.place` records which worker holds the dial handle of a call
  it placed (:meth:`CallState.alias_placed` adds Plivo's second id), and :meth:`CallState.report`
  delivers a carrier's report to the workers holding the live call and the handle.

:class:`~voicegraph.server.state.memory.MemoryState` keeps all of it in this process (the default);
:class:`~voicegraph.server.state.redis.RedisState` shares it across workers and machines. A backend
that cannot reach its store raises :class:`StateUnavailable`; the runtime then refuses new calls
(503) and lets live calls go on.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.abc
import msgspec

__all__ = [
    "MAX_MESSAGE",
    "CallRecord",
    "CallState",
    "Dispatcher",
    "Deliver",
    "PlacedHere",
    "StateUnavailable",
    "encode_message",
    "new_worker_id",
]

logger = logging.getLogger("voicegraph.server.state")

MAX_MESSAGE = 8 * 1024
"""Largest encoded message :meth:`CallState.publish` carries (bytes of JSON)."""

Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]
"""The owner's handler: ``deliver(call_id, message)``, run in the worker's event loop."""


class StateUnavailable(Exception):
    """The shared state could not be reached (the message says which and why, never secrets)."""


class CallRecord(msgspec.Struct, frozen=True):
    """Who holds a live call: the worker, the line (called number's digits), when it started
    (Unix time)."""

    call_id: str
    worker: str
    line: str = ""
    started_at: float = 0.0


def new_worker_id() -> str:
    """A worker id unique across machines and restarts: host, pid and a random suffix."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-.")[:40]
    return f"{host or 'host'}-{os.getpid()}-{secrets.token_hex(3)}"


def encode_message(message: Mapping[str, Any]) -> bytes:
    """``message`` as JSON, or ``ValueError`` when it is not a small JSON object."""
    if not isinstance(message, Mapping):
        raise ValueError("a call message is a JSON object (a dict)")
    try:
        data = msgspec.json.encode(message)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValueError(f"a call message must be JSON-serialisable: {exc}") from None
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"a call message is at most {MAX_MESSAGE} bytes of JSON")
    return data


@runtime_checkable
class CallState(Protocol):
    """The state one runtime shares with its peers (see module docs).

    Every method but :meth:`run` may raise :class:`StateUnavailable`. Cancellation abandons
    the operation; its effect on the store may or may not have happened."""

    worker_id: str
    """This worker's id in the registry."""

    shared: bool
    """Whether other processes see this state (False for the in-process default)."""

    async def redeem_token(self, nonce: str, expires_at: int) -> bool:
        """True the first time ``nonce`` (a verified stream token's nonce, valid until the Unix
        time ``expires_at``) is redeemed anywhere, False after that."""
        ...

    async def admit(self, call_id: str, limit: int, ttl: float) -> bool:
        """Hold a place for ``call_id`` unless ``limit`` calls already hold one; the place is
        kept for ``ttl`` seconds unless the call is registered in that time. Admitting the
        same call id again is not counted twice."""
        ...

    async def register(self, record: CallRecord) -> None:
        """Record that this worker holds ``record.call_id`` (kept alive by :meth:`run`)."""
        ...

    async def release(self, call_id: str) -> None:
        """Forget a call that ended on this worker (frees its place)."""
        ...

    async def lookup(self, call_id: str) -> CallRecord | None:
        """Who holds ``call_id``, or None when no live call has that id."""
        ...

    async def publish(self, call_id: str, message: Mapping[str, Any]) -> bool:
        """Deliver ``message`` to the handler of the worker holding ``call_id``. True when a
        live owner received it (its handler runs there, later), False when nobody holds the
        call. ``ValueError`` when the message is not a small JSON object."""
        ...

    async def place(self, call_id: str, ttl: float) -> None:
        """Record that this worker holds the dial handle of the placed call ``call_id``, for
        ``ttl`` seconds (reports about it then reach this worker, see :meth:`report`)."""
        ...

    async def alias_placed(self, other_id: str, call_id: str) -> None:
        """The placed call known as ``other_id`` (Plivo's request UUID) is also ``call_id``
        (its call UUID): reports keyed by either reach the worker holding its handle."""
        ...

    async def report(self, call_id: str, message: Mapping[str, Any]) -> int:
        """Deliver ``message`` once to each worker that holds ``call_id``'s live call or its
        dial handle (their handlers run there, later, even when the call is no longer live);
        returns how many workers received it (0: nobody holds either)."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; :class:`StateUnavailable` otherwise (readiness)."""
        ...

    async def run(self, deliver: Deliver, *, task_status: anyio.abc.TaskStatus[None] = ...) -> None:
        """Serve this worker until cancelled: keep its calls' registrations alive and pass
        messages for them to ``deliver``. Reports started at once and never raises for an
        unreachable store (it retries, and logs)."""
        ...


class Dispatcher:
    """Runs the owner's handler for each message, in the worker's event loop.

    While :meth:`serve` runs, each message gets its own task (at most ``max_running`` at once;
    more wait), so a slow handler (a REST hang-up) never holds up the channel. Without it, the
    handler runs in the caller's task. A failing handler is logged, never raised."""

    def __init__(self, max_running: int = 64) -> None:
        self._deliver: Deliver | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._limit = anyio.Semaphore(max_running)

    async def serve(self, deliver: Deliver, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._deliver = deliver
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None

    async def dispatch(self, call_id: str, data: bytes) -> None:
        try:
            message = msgspec.json.decode(data)
        except msgspec.DecodeError:
            logger.warning("[%s] undecodable call message dropped", call_id)
            return
        if not isinstance(message, dict):
            logger.warning("[%s] call message is not a JSON object; dropped", call_id)
            return
        if self._tg is not None:
            await self._limit.acquire()
            self._tg.start_soon(self._run, call_id, message, True)
        else:
            await self._run(call_id, message, False)

    async def _run(self, call_id: str, message: dict[str, Any], limited: bool) -> None:
        try:
            if self._deliver is not None:
                await self._deliver(call_id, message)
            else:
                logger.warning("[%s] call message arrived before the state ran; dropped", call_id)
        except Exception as exc:
            logger.error("[%s] call message handler failed: %s", call_id, exc, exc_info=exc)
        finally:
            if limited:
                self._limit.release()


class PlacedHere:
    """The dial handles this worker holds, by carrier call id, each until its expiry
    (``time.monotonic()`` seconds); at most ``limit`` (the oldest are forgotten first)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._until: dict[str, float] = {}
        self._limit = limit

    def add(self, call_id: str, ttl: float) -> None:
        now = time.monotonic()
        if len(self._until) >= self._limit:
            for k in [k for k, t in self._until.items() if t < now]:
                del self._until[k]
            while len(self._until) >= self._limit:
                del self._until[next(iter(self._until))]
        self._until[call_id] = now + max(1.0, ttl)

    def ttl(self, call_id: str) -> float | None:
        """Seconds left for ``call_id``, or None when it is not (or no longer) held here."""
        until = self._until.get(call_id)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._until[call_id]
            return None
        return left
