"""Bounded inboxes: the queues behind graph edges.

Each actor owns one :class:`Inbox`. Every input port has its own bounded *media lane* (media and
event frames, FIFO) with the overflow policy of the edges feeding it; all ports share one bounded
*priority lane* for control frames, which the receiver always drains first. So control frames
overtake queued media, and order is kept per port and lane.

Overflow policies:

* ``"block"`` (default): the sender waits for room (back-pressure). Nothing is lost.
* ``"drop_oldest"``: the oldest queued media frame of that port is discarded and counted in
  :attr:`PortStats.dropped`; the sender never waits. For live caller audio, whose reader must
  never stall. Control and event frames are never dropped: the priority lane always blocks when
  full, and a full lane holding only events makes the sender wait.

Fast path: when a lane has room (send) or holds a frame (receive) the operation completes without
a scheduler round trip. To stay fair, every ``YIELD_EVERY``-th fast operation of an inbox yields
to the scheduler (which is also where cancellation is delivered on the fast path).

Wake batching: a receiver that handles a port's media in batches anyway (an STT node sending
100 ms to its provider) can ask to be woken only once the port holds ``n`` media frames
(:meth:`Inbox.set_wake_batch`); senders queue the rest without a task switch. A control or event
frame, end of input, the receiver's own deadline and a lowered batch still wake it at once, and a
receive takes whatever is queued, so only *when* the receiver runs changes, never what it receives
nor the order within a lane (control frames, as always, overtake the media queued meanwhile). Default ``n = 1``: every frame wakes it.

Close semantics: each input port counts its open writers; when every writer of every port has
closed and the lanes are empty, :meth:`Inbox.receive` raises :class:`EndOfInput`. Closing the
inbox from the receiving side (:meth:`close_receiving`) discards what is queued (counted as
dropped) and makes later sends count as dropped instead of waiting forever.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio
import anyio.lowlevel

from .backends import Waker, new_waker
from .frames import Frame, Kind
from .pacer import PacerHandle, current_pacer, on_grid

__all__ = ["EndOfInput", "Inbox", "Policy", "PortStats", "YIELD_EVERY"]

Policy = Literal["block", "drop_oldest"]
YIELD_EVERY = 64
CONTROL = Kind.CONTROL
MEDIA = Kind.MEDIA


class EndOfInput(Exception):
    """Raised by :meth:`Inbox.receive` when every writer closed and nothing is queued."""


class PortStats:
    """Counters of one input port: frames queued, dropped, and the queue's high-water mark."""

    __slots__ = ("dropped", "high_water", "received")

    def __init__(self) -> None:
        self.received = 0
        self.dropped = 0
        self.high_water = 0

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "dropped": self.dropped, "high_water": self.high_water}


class _Lane:
    __slots__ = (
        "batch",
        "capacity",
        "direct",
        "index",
        "items",
        "name",
        "policy",
        "space",
        "stats",
        "writers",
    )

    def __init__(self, name: str, index: int, capacity: int, policy: Policy) -> None:
        if capacity < 1:
            raise ValueError(f"port {name!r}: capacity must be >= 1, got {capacity}")
        self.name = name
        self.index = index
        self.capacity = capacity
        self.policy = policy
        self.items: deque[Frame] = deque()
        self.space: anyio.Event | None = None
        self.stats = PortStats()
        self.writers = 0
        self.batch = 1  # media frames queued before the receiver is woken
        self.direct: Callable[[Frame], bool] | None = None  # see Inbox.set_direct


class Inbox:
    """The bounded, multi-port, two-lane queue of one actor. One receiver, many senders.

    Cancellation: a ``send`` cancelled while waiting for room has not queued its frame; a
    ``receive`` cancelled while waiting has not taken one.
    """

    def __init__(self, owner: str, control_capacity: int = 256) -> None:
        self.owner = owner
        self._lanes: dict[str, _Lane] = {}
        self._order: list[_Lane] = []
        self._control: deque[tuple[str, Frame]] = deque()
        self._control_capacity = control_capacity
        self._control_space: anyio.Event | None = None
        self._ready: Waker | None = None  # set while the receiver waits
        self._waker: Waker | None = None  # made by the first wait (it needs the running loop)
        self._timer: PacerHandle | None = None
        self._rr = 0
        self._ops = 0
        self._queued = 0
        self._closed_rx = False
        self._open_lanes = 0  # ports with a writer still open (end of input at none)
        self.dropped_after_close = 0

    # -- set-up (graph build time)

    def add_port(self, name: str, capacity: int = 64, policy: Policy = "block") -> None:
        if name in self._lanes:
            lane = self._lanes[name]
            if lane.policy != policy or lane.capacity != capacity:
                raise ValueError(
                    f"{self.owner}.{name}: edges into one port must share policy and capacity "
                    f"(have {lane.policy}/{lane.capacity}, got {policy}/{capacity})"
                )
            return
        lane = _Lane(name, len(self._order), capacity, policy)
        self._lanes[name] = lane
        self._order.append(lane)

    def has_port(self, name: str) -> bool:
        return name in self._lanes

    def add_writer(self, port: str) -> None:
        lane = self._lanes[port]
        lane.writers += 1
        if lane.writers == 1:
            self._open_lanes += 1

    def close_writer(self, port: str) -> None:
        """One writer of ``port`` is done. Wakes the receiver so it can notice end of input."""
        lane = self._lanes[port]
        lane.writers -= 1
        if lane.writers == 0:
            self._open_lanes -= 1
        self._wake()

    def set_wake_batch(self, port: str, frames: int) -> None:
        """Wake the receiver only once ``port`` holds ``frames`` media frames (clamped to the
        port's capacity); ``1`` (the default) wakes it for every frame. For a receiver that
        batches the port's media itself: it must not depend on seeing each frame promptly,
        since up to ``frames - 1`` of them wait until the next frame, a control or event frame,
        end of input or the receiver's own deadline wakes it."""
        if frames < 1:
            raise ValueError(f"{self.owner}.{port}: wake batch must be >= 1, got {frames}")
        lane = self._lanes[port]
        lane.batch = min(frames, lane.capacity)
        if len(lane.items) >= lane.batch:
            self._wake()

    def set_direct(self, port: str, handler: Callable[[Frame], bool] | None) -> None:
        """Let ``handler`` take ``port``'s frames at once, in the sender's call, while the
        receiver waits with nothing queued: no task is woken for them. ``handler(frame)``
        returns True when it took the frame (counted as received), False to have it queued as
        usual; it must not raise or block, and it must do with the frame exactly what the
        receiver would have done had it been woken for it. ``None`` removes it."""
        self._lanes[port].direct = handler

    @property
    def ports(self) -> dict[str, PortStats]:
        return {lane.name: lane.stats for lane in self._order}

    def qsize(self) -> int:
        return self._queued + len(self._control)

    # -- sending

    async def send(self, port: str, frame: Frame) -> None:
        """Queue ``frame`` on ``port``; may wait for room (policy ``block``, control lane)."""
        if self._closed_rx:
            self.dropped_after_close += 1
            return
        if frame.kind is CONTROL:
            while len(self._control) >= self._control_capacity:
                if self._control_space is None:
                    self._control_space = anyio.Event()
                await self._control_space.wait()
                if self._closed_rx:
                    self.dropped_after_close += 1
                    return
            self._control.append((port, frame))
            if self._ready is not None:
                self._ready.wake()
                self._ready = None
        elif (
            (lane := self._lanes[port]).direct is not None
            and self._ready is not None
            and not self._queued
            and not self._control
            and lane.direct(frame)
        ):
            lane.stats.received += 1  # taken by the receiver's direct handler
        else:
            items = lane.items
            if len(items) >= lane.capacity:
                if lane.policy == "drop_oldest" and self._drop_oldest_media(lane):
                    pass
                else:
                    while len(items) >= lane.capacity:
                        if lane.space is None:
                            lane.space = anyio.Event()
                        await lane.space.wait()
                        if self._closed_rx:
                            self.dropped_after_close += 1
                            return
            items.append(frame)
            self._queued += 1
            n = len(items)
            if n > lane.stats.high_water:
                lane.stats.high_water = n
            # wake batching: below the batch, a media frame is queued without waking anyone
            if self._ready is not None and (n >= lane.batch or frame.kind is not MEDIA):
                self._ready.wake()
                self._ready = None
        self._ops += 1
        if self._ops >= YIELD_EVERY:
            self._ops = 0
            await anyio.lowlevel.checkpoint()

    def _drop_oldest_media(self, lane: _Lane) -> bool:
        """Drop the lane's oldest media frame (events are never dropped); False if it holds
        only events, in which case the sender waits like on a blocking lane."""
        items = lane.items
        if items[0].kind is MEDIA:
            items.popleft()
        else:
            for i, f in enumerate(items):
                if f.kind is MEDIA:
                    del items[i]
                    break
            else:
                return False
        lane.stats.dropped += 1
        self._queued -= 1
        return True

    def _wake(self) -> None:
        if self._ready is not None:
            self._ready.wake()
            self._ready = None

    # -- receiving

    def receive_nowait(self) -> tuple[str, Frame] | None:
        """Take the next frame without waiting: control first, then ports round-robin.

        Returns ``None`` when nothing is queued. Raises :class:`EndOfInput` at end of input."""
        if self._control:
            item = self._control.popleft()
            if self._control_space is not None:
                self._control_space.set()
                self._control_space = None
            self._lanes[item[0]].stats.received += 1
            return item
        if self._queued:
            order = self._order
            n = len(order)
            start = self._rr
            for i in range(n):
                lane = order[(start + i) % n]
                if lane.items:
                    frame = lane.items.popleft()
                    self._queued -= 1
                    lane.stats.received += 1
                    self._rr = (lane.index + 1) % n
                    if lane.space is not None:
                        lane.space.set()
                        lane.space = None
                    return lane.name, frame
        if self._closed_rx or self._open_lanes <= 0:
            raise EndOfInput
        return None

    async def receive(self) -> tuple[str, Frame]:
        """Wait for the next ``(port, frame)``. Raises :class:`EndOfInput` at end of input."""
        item = self.receive_nowait()
        if item is not None:
            self._ops += 1
            if self._ops >= YIELD_EVERY:
                self._ops = 0
                await anyio.lowlevel.checkpoint()
            return item
        while True:
            self._ready = ready = self._waker or self._new_waker()
            await ready.wait()
            item = self.receive_nowait()
            if item is not None:
                return item

    def _new_waker(self) -> Waker:
        self._waker = waker = new_waker()
        return waker

    async def receive_until(
        self, deadline: float | None, grid: float = 0.0, phase: float = 0.0
    ) -> tuple[str, Frame] | None:
        """Like :meth:`receive`, but return ``None`` once ``anyio.current_time()`` passes
        ``deadline`` with nothing queued (``None``: no deadline, as :meth:`receive`).

        ``grid > 0``: the deadline may be served up to ``grid`` seconds late, by the event
        loop's shared :class:`~voicegraph.pacer.Pacer` instead of a timer of this inbox's own
        (deadlines of many calls then share one wake-up; see :mod:`voicegraph.pacer`), on the
        grid ``phase + k * grid`` (:meth:`~voicegraph.pacer.Pacer.spread`)."""
        if deadline is None:
            return await self.receive()
        item = self.receive_nowait()
        if item is not None:
            return item
        if grid <= 0:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                return await self.receive()
            return None
        return await self._receive_paced(deadline, grid, phase)

    async def _receive_paced(
        self, deadline: float, grid: float, phase: float
    ) -> tuple[str, Frame] | None:
        timer = self._timer
        if timer is None or not timer.pending or timer.when != on_grid(deadline, grid, phase):
            # One armed deadline per inbox, re-armed only when it moves: a frame arriving
            # leaves it in place for the next wait (its firing then is a harmless spurious wake).
            if timer is not None:
                timer.cancel()
            timer = self._timer = current_pacer().call_at(deadline, self._wake, grid, phase)
        while True:
            self._ready = ready = self._waker or self._new_waker()
            try:
                await ready.wait()
            except BaseException:
                if self._ready is ready:
                    self._ready = None
                raise
            item = self.receive_nowait()
            if item is not None:
                return item
            if timer.fired:
                return None

    def close_receiving(self) -> None:
        """The receiver is gone: count what is queued as dropped and release waiting senders."""
        self._closed_rx = True
        for lane in self._order:
            lane.stats.dropped += len(lane.items)
            lane.items.clear()
            if lane.space is not None:
                lane.space.set()
                lane.space = None
        self.dropped_after_close += len(self._control)
        self._control.clear()
        self._queued = 0
        if self._control_space is not None:
            self._control_space.set()
            self._control_space = None
