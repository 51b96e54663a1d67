"""Inbox wake batching: a receiver asks to be woken once per batch of media frames; what it
receives and the order within each lane never change, only when its task runs."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from enginekit import BOTH_BACKENDS, audio
from hypothesis import given, settings, strategies as st

from voicegraph import EndOfInput, Frame, Inbox, Interrupt
from voicegraph.frames import MarkAck

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def batched_inbox(batch: int, capacity: int = 64) -> Inbox:
    inbox = Inbox("stt")
    inbox.add_port("audio", capacity=capacity, policy="drop_oldest")
    inbox.add_writer("audio")
    inbox.set_wake_batch("audio", batch)
    return inbox


class Receiver:
    """Receives in its own task and counts how often it ran after waiting."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.got: list[Frame] = []
        self.wakes = 0

    async def run(self) -> None:
        while True:
            empty = self.inbox.qsize() == 0
            try:
                _, frame = await self.inbox.receive()
            except EndOfInput:
                return
            self.wakes += empty
            self.got.append(frame)


async def test_media_below_the_batch_does_not_wake_the_receiver() -> None:
    inbox = batched_inbox(3)
    rx = Receiver(inbox)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rx.run)
        await wait_all_tasks_blocked()
        for i in range(2):
            await inbox.send("audio", audio(i))
        await wait_all_tasks_blocked()
        assert rx.got == []
        await inbox.send("audio", audio(2))
        await wait_all_tasks_blocked()
        assert [f.timestamp for f in rx.got] == [0.0, 1.0, 2.0]
        assert rx.wakes == 1
        inbox.close_writer("audio")


async def test_a_control_frame_wakes_the_receiver_at_once_and_overtakes_queued_media() -> None:
    inbox = batched_inbox(5)
    rx = Receiver(inbox)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rx.run)
        await wait_all_tasks_blocked()
        await inbox.send("audio", audio(0))
        await inbox.send("audio", Interrupt())
        await wait_all_tasks_blocked()
        assert [type(f).__name__ for f in rx.got] == ["Interrupt", "AudioFrame"]
        inbox.close_writer("audio")


async def test_an_event_frame_wakes_the_receiver_and_keeps_its_place_in_the_lane() -> None:
    inbox = batched_inbox(5)
    rx = Receiver(inbox)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rx.run)
        await wait_all_tasks_blocked()
        await inbox.send("audio", audio(0))
        await inbox.send("audio", MarkAck(name="m"))
        await wait_all_tasks_blocked()
        assert [type(f).__name__ for f in rx.got] == ["AudioFrame", "MarkAck"]
        inbox.close_writer("audio")


async def test_end_of_input_delivers_a_partial_batch() -> None:
    inbox = batched_inbox(5)
    rx = Receiver(inbox)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rx.run)
        await wait_all_tasks_blocked()
        await inbox.send("audio", audio(0))
        await inbox.send("audio", audio(1))
        inbox.close_writer("audio")
    assert [f.timestamp for f in rx.got] == [0.0, 1.0]


async def test_lowering_the_batch_wakes_a_receiver_that_now_has_enough() -> None:
    inbox = batched_inbox(5)
    rx = Receiver(inbox)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rx.run)
        await wait_all_tasks_blocked()
        await inbox.send("audio", audio(0))
        await inbox.send("audio", audio(1))
        await wait_all_tasks_blocked()
        assert rx.got == []
        inbox.set_wake_batch("audio", 1)
        await wait_all_tasks_blocked()
        assert [f.timestamp for f in rx.got] == [0.0, 1.0]
        inbox.close_writer("audio")


async def test_a_receive_deadline_still_fires_with_a_partial_batch_queued() -> None:
    inbox = batched_inbox(5)
    await inbox.send("audio", audio(0))
    assert await inbox.receive_until(anyio.current_time() + 0.01) is not None
    assert await inbox.receive_until(anyio.current_time() + 0.01) is None


def test_the_batch_is_clamped_to_the_port_capacity_so_a_full_lane_always_wakes() -> None:
    inbox = batched_inbox(50, capacity=4)
    assert inbox._lanes["audio"].batch == 4


def test_a_batch_below_one_is_refused() -> None:
    inbox = Inbox("stt")
    inbox.add_port("audio")
    with pytest.raises(ValueError, match="wake batch must be >= 1"):
        inbox.set_wake_batch("audio", 0)


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["media", "event", "control"]), max_size=60),
    batches=st.lists(st.integers(1, 8), min_size=1, max_size=6),
)
def test_batching_never_changes_what_is_received_nor_the_order_within_each_lane(
    backend: str, kinds: list[str], batches: list[int]
) -> None:
    def frame(i: int, kind: str) -> Frame:
        if kind == "media":
            return audio(i)
        if kind == "event":
            return MarkAck(name=str(i))
        return Interrupt(utterance_id=i)

    async def deliver(batch_of: list[int]) -> tuple[list[str], list[str]]:
        inbox = batched_inbox(batch_of[0], capacity=len(kinds) + 1)
        rx = Receiver(inbox)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rx.run)
            for i, kind in enumerate(kinds):
                inbox.set_wake_batch("audio", batch_of[i % len(batch_of)])
                await inbox.send("audio", frame(i, kind))
                if i % 3 == 0:
                    await wait_all_tasks_blocked()
            inbox.close_writer("audio")
        lane = [repr(f) for f in rx.got if not isinstance(f, Interrupt)]
        control = [repr(f) for f in rx.got if isinstance(f, Interrupt)]
        return lane, control

    async def main() -> None:
        # Control frames overtake whatever media is queued, so where they land among the media
        # depends on when the receiver runs; within each lane the order is the send order.
        lane, control = await deliver(batches)
        sent = [repr(frame(i, k)) for i, k in enumerate(kinds)]
        assert lane == [f for f, k in zip(sent, kinds, strict=True) if k != "control"]
        assert control == [f for f, k in zip(sent, kinds, strict=True) if k == "control"]

    anyio.run(main, backend=backend)


def test_the_cascading_preset_fuses_its_audio_transforms_into_the_carrier_reader() -> None:
    """Per 20 ms of caller audio, decode and VAD run in the carrier reader's task (no inbox),
    so the STT is the one actor each frame reaches."""
    from voicegraph import Call
    from voicegraph.presets import sketch

    # Twilio streams µ-law (decoded for the VAD); Plivo streams 16-bit PCM the VAD takes as is
    for carrier, expected in (("twilio", {"decode", "vad"}), ("plivo", {"vad"})):
        stats = Call(sketch("cascading", carrier)).stats()
        assert {name for name, entry in stats.items() if "ports" not in entry} == expected
