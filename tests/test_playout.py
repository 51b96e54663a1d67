"""Playout against a fake carrier that plays in real time and echoes marks with a delay.

Time is virtual (voicegraph.testing.virtual_clock: an autojump clock on asyncio and on Trio), so
schedules are exact and the tests take no real time. Every test runs on both backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
import numpy as np
import pytest
from enginekit import BOTH_BACKENDS
from hypothesis import given, settings, strategies as st

from voicegraph import (
    Actor,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Call,
    CallResult,
    Clear,
    Cleared,
    EndOfInput,
    Frame,
    Graph,
    In,
    Interrupt,
    MarkAck,
    Out,
    PlaybackMark,
    PlayedPosition,
)
from voicegraph.nodes.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voicegraph.nodes.audio.playout import Playout, PlayoutOptions
from voicegraph.testing import virtual_clock

MULAW8 = AudioFormat("mulaw", 8000)
# Most specifications below are of playback truth at its finest: a mark after every chunk.
PER_CHUNK = PlayoutOptions(chunk=0.02, lead=0.1, mark_interval=0.0, tick=0.005)
PCM24K = AudioFormat("pcm16", 24000)
ECHO_DELAY = 0.03


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return virtual_clock(request.param)


@dataclass
class Arrival:
    at: float  # when the carrier received the chunk
    starts: float  # when it starts playing (back to back after what is buffered)
    frame: AudioFrame


class FakeCarrier(Actor):
    """Plays received audio back to back in real time; echoes each mark ``echo_delay`` after
    playback reaches it. On clear it drops buffered audio and, like Twilio, echoes every pending
    mark at once (``echo_on_clear``), or, like Plivo, answers ``Cleared``."""

    def __init__(self, echo_delay: float = ECHO_DELAY, echo_on_clear: bool = True) -> None:
        super().__init__()
        self.inputs = (In("in", AudioFrame, PlaybackMark, Clear),)
        self.outputs = (Out("acks", MarkAck, Cleared),)
        self.echo_delay = echo_delay
        self.echo_on_clear = echo_on_clear
        self.arrivals: list[Arrival] = []
        self.received: list[Frame] = []
        self.echoes: list[tuple[float, str, bool]] = []  # (echo time, name, was played)
        self.clears: list[tuple[float, int]] = []
        self.play_end = -math.inf
        self._pending: list[tuple[float, float, str]] = []  # (plays at, echo at, name)
        self._outbox: list[tuple[float, Frame, str, bool]] = []

    async def run(self) -> None:
        while True:
            due = min((t for t, *_ in self._outbox), default=math.inf)
            try:
                item = (
                    await self.inbox.receive()
                    if due == math.inf
                    else await self.inbox.receive_until(due)
                )
            except EndOfInput:
                return
            now = anyio.current_time()
            if item is not None:
                self._take(now, item[1])
            for entry in sorted((e for e in self._outbox if e[0] <= now), key=lambda e: e[0]):
                self._outbox.remove(entry)
                _, frame, name, played = entry
                if name:
                    self.echoes.append((now, name, played))
                await self.send("acks", frame)

    def _take(self, now: float, frame: Frame) -> None:
        self.received.append(frame)
        if isinstance(frame, AudioFrame):
            starts = max(self.play_end, now)
            self.arrivals.append(Arrival(now, starts, frame))
            self.play_end = starts + frame.duration
        elif isinstance(frame, PlaybackMark):
            plays = max(self.play_end, now)
            self._pending.append((plays, plays + self.echo_delay, frame.name))
            self._outbox.append(
                (plays + self.echo_delay, MarkAck(name=frame.name), frame.name, True)
            )
        elif isinstance(frame, Clear):
            self.clears.append((now, frame.generation))
            self.play_end = now
            for plays, _echo_at, name in self._pending:
                if plays > now:  # not yet played: cleared
                    self._outbox = [e for e in self._outbox if e[2] != name]
                    if self.echo_on_clear:
                        self._outbox.append(
                            (now + self.echo_delay, MarkAck(name=name), name, False)
                        )
            self._pending = [p for p in self._pending if p[0] <= now]
            if not self.echo_on_clear:
                self._outbox.append((now + self.echo_delay, Cleared(), "", False))


class Script(Actor):
    """Sends ``(at, port, frame)`` items at the given media-clock times."""

    outputs = (Out("audio", AudioFrame, AudioDone), Out("control", Interrupt, Clear))

    def __init__(self, items: list[tuple[float, str, Frame]]) -> None:
        super().__init__()
        self.items = items

    async def run(self) -> None:
        for at, port, frame in self.items:
            await anyio.sleep_until(at)
            await self.send(port, frame)
        await anyio.sleep(math.inf)  # keep the control edge open until the call ends


class Recorder(Actor):
    inputs = (In("in", PlayedPosition),)

    def __init__(self) -> None:
        super().__init__()
        self.got: list[PlayedPosition] = []

    async def handle(self, port: str, frame: Frame) -> None:
        self.got.append(frame)  # type: ignore[arg-type]


class Probe(Actor):
    """Samples the playout's synchronous state at the given times."""

    outputs = (Out("out", Interrupt),)

    def __init__(self, playout: Playout, times: list[float]) -> None:
        super().__init__()
        self.playout, self.times = playout, times
        self.samples: list[tuple[float, bool, int, float, float]] = []

    async def run(self) -> None:
        p = self.playout
        for t in self.times:
            await anyio.sleep_until(t)
            self.samples.append(
                (t, p.speaking, p.current_utterance, p.sent_seconds, p.played_seconds)
            )
        await anyio.sleep(math.inf)


def speech(fmt: AudioFormat, seconds: float, utt: int, frame_s: float = 0.1) -> list[AudioFrame]:
    """Agent audio in ``frame_s`` pieces of a 300 Hz tone."""
    n = int(fmt.sample_rate * seconds)
    t = np.arange(n) / fmt.sample_rate
    pcm = (6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    if fmt.encoding == "mulaw":
        data = pcm16_to_ulaw(pcm.tobytes())
    else:
        data = pcm.tobytes()
    step = fmt.bytes_for(frame_s)
    return [
        AudioFrame(
            data=data[i : i + step],
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            utterance_id=utt,
        )
        for i in range(0, len(data), step)
    ]


def burst(at: float, frames: list[AudioFrame], utt: int, done: bool = True) -> list:
    items: list[tuple[float, str, Frame]] = [(at, "audio", f) for f in frames]
    if done:
        items.append((at, "audio", AudioDone(utterance_id=utt)))
    return items


@dataclass
class Run:
    result: CallResult
    playout: Playout
    carrier: FakeCarrier
    events: list[PlayedPosition]
    bus: list[Frame]
    probe: Probe | None


async def run_call(
    items: list[tuple[float, str, Frame]],
    *,
    duration: float = 3.0,
    carrier: FakeCarrier | None = None,
    playout: Playout | None = None,
    probe_times: list[float] | None = None,
    expect_error: bool = False,
) -> Run:
    g = Graph("playout-test")
    g.add("script", Script(items))
    p = g.add("playout", playout or Playout(MULAW8, options=PER_CHUNK))
    c = g.add("carrier", carrier or FakeCarrier())
    rec = g.add("rec", Recorder())
    g.connect("script.audio", "playout.audio")
    g.connect("script.control", "playout.control")
    g.connect("playout.out", "carrier.in")
    g.connect("carrier.acks", "playout.acks", feedback=True)
    g.connect("playout.events", "rec")
    probe = None
    if probe_times:
        probe = g.add("probe", Probe(p, probe_times))  # type: ignore[arg-type]
        g.connect("probe", "playout.control")
    call = Call(g, "test", max_duration=duration)
    bus: list[Frame] = []
    call.subscribe(bus.append)
    result = await call.run()
    assert (result.reason == "error") is expect_error, result.error
    return Run(result, p, c, rec.got, bus, probe)  # type: ignore[arg-type]


def audio_out(carrier: FakeCarrier) -> list[AudioFrame]:
    return [a.frame for a in carrier.arrivals]


def acknowledged(carrier: FakeCarrier, before: float) -> float:
    """Seconds of audio sent ahead of the last mark the carrier echoed as played by ``before``."""
    echoed = {name for t, name, played in carrier.echoes if t < before and played}
    sent = known = 0.0
    for f in carrier.received:
        if isinstance(f, AudioFrame):
            sent += f.duration
        elif isinstance(f, PlaybackMark) and f.name in echoed:
            known = sent
    return known


@pytest.mark.anyio
async def test_audio_delivered_at_once_reaches_the_carrier_without_gaps() -> None:
    run = await run_call(burst(0.0, speech(MULAW8, 2.0, 1), 1))
    arrivals = run.carrier.arrivals
    assert sum(a.frame.duration for a in arrivals) == pytest.approx(2.0)
    for prev, cur in zip(arrivals, arrivals[1:], strict=False):
        assert cur.starts == pytest.approx(prev.starts + prev.frame.duration)  # back to back
    assert run.playout.underruns == 0


@pytest.mark.anyio
async def test_audio_trickling_in_faster_than_real_time_plays_without_gaps() -> None:
    frames = speech(MULAW8, 2.0, 1, frame_s=0.2)
    items = [(i * 0.1, "audio", f) for i, f in enumerate(frames)]  # 0.2 s of audio every 0.1 s
    items.append((1.0, "audio", AudioDone(utterance_id=1)))
    run = await run_call(items)
    arrivals = run.carrier.arrivals
    for prev, cur in zip(arrivals, arrivals[1:], strict=False):
        assert cur.at <= prev.starts + prev.frame.duration + 1e-9
    assert run.playout.underruns == 0


@pytest.mark.anyio
async def test_chunks_are_sent_the_lead_ahead_of_real_time_and_no_further() -> None:
    run = await run_call(burst(0.0, speech(MULAW8, 2.0, 1), 1))
    ahead = [a.starts - a.at for a in run.carrier.arrivals]
    assert max(ahead) <= 0.1 - 0.02 + 1e-9  # buffered before this chunk: at most lead - chunk
    assert ahead[5:-1] == pytest.approx([0.08] * len(ahead[5:-1]))
    assert [a.at for a in run.carrier.arrivals[:5]] == [0.0] * 5  # the initial lead goes at once


@pytest.mark.anyio
async def test_every_chunk_is_one_chunk_long_and_followed_by_a_mark() -> None:
    run = await run_call(burst(0.0, speech(MULAW8, 0.5, 1), 1))
    got = run.carrier.received
    assert [type(f) for f in got] == [AudioFrame, PlaybackMark] * 25
    assert {len(f.data) for f in got if isinstance(f, AudioFrame)} == {160}
    assert len({f.name for f in got if isinstance(f, PlaybackMark)}) == 25


@pytest.mark.anyio
async def test_by_default_a_mark_follows_each_tenth_of_a_second_and_the_end_of_an_utterance() -> (
    None
):
    run = await run_call(burst(0.0, speech(MULAW8, 0.45, 1), 1), playout=Playout(MULAW8))
    got = run.carrier.received
    sizes = [len(f.data) for f in got if isinstance(f, AudioFrame)]
    assert sum(sizes) == 3600 and max(sizes) == 480  # messages of up to 60 ms
    unmarked = 0.0
    for i, f in enumerate(got):
        if isinstance(f, AudioFrame):
            unmarked += f.duration
            last = i == len(got) - 2
            # a mark right after the message that completes 0.1 s, and after the last one
            assert isinstance(got[i + 1], PlaybackMark) is (unmarked >= 0.1 - 1e-9 or last)
            if isinstance(got[i + 1], PlaybackMark):
                unmarked = 0.0
    [pos] = run.events
    assert pos.complete and pos.played == pytest.approx(0.45)


@pytest.mark.anyio
async def test_with_marks_per_interval_a_clear_reports_the_audio_before_the_last_echoed_mark() -> (
    None
):
    t_interrupt = 0.537
    items = burst(0.0, speech(MULAW8, 2.0, 3), 3) + [(t_interrupt, "control", Interrupt())]
    run = await run_call(items, playout=Playout(MULAW8))
    echoed = [name for t, name, played in run.carrier.echoes if t < t_interrupt and played]
    assert len(echoed) == 4  # marks after each 0.1 s or more, echoed 0.03 s after it played
    [pos] = run.events
    # The caller heard 0.537 s; what is known is the audio before the last echoed mark
    # (a barge-in reports less than was heard, never more).
    assert 0.537 - 0.1 - 0.06 - 0.03 <= pos.played <= 0.537
    assert pos.played == pytest.approx(acknowledged(run.carrier, t_interrupt))
    assert not pos.complete and pos.sent > pos.played


@pytest.mark.anyio
async def test_agent_audio_in_another_format_is_converted_to_the_carriers() -> None:
    run = await run_call(burst(0.0, speech(PCM24K, 1.0, 1, frame_s=0.05), 1))
    out = audio_out(run.carrier)
    assert {f.format for f in out} == {MULAW8}
    assert sum(len(f.data) for f in out) == 8000  # flushed at AudioDone: nothing lost
    pcm = np.frombuffer(ulaw_to_pcm16(b"".join(f.data for f in out)), dtype="<i2").astype(float)
    assert np.sqrt(np.mean(pcm[800:-800] ** 2)) == pytest.approx(6000 / np.sqrt(2), rel=0.05)


@pytest.mark.anyio
async def test_a_fully_acknowledged_utterance_reports_complete_played_position() -> None:
    run = await run_call(burst(0.0, speech(MULAW8, 1.0, 7), 7))
    assert run.events == [
        PlayedPosition(utterance_id=7, played=1.0, sent=1.0, generation=0, complete=True)
    ]


@pytest.mark.anyio
async def test_complete_position_waits_for_the_last_marks_echo() -> None:
    run = await run_call(burst(0.0, speech(MULAW8, 1.0, 7), 7), probe_times=[0.99, 1.02, 1.04])
    assert run.probe is not None
    assert [s[1] for s in run.probe.samples] == [True, True, False]  # last echo at 1.03


@pytest.mark.anyio
async def test_played_positions_are_published_on_the_call_bus() -> None:
    run = await run_call(burst(0.0, speech(MULAW8, 0.4, 2), 2))
    assert [e for e in run.bus if isinstance(e, PlayedPosition)] == run.events


@pytest.mark.anyio
async def test_played_position_after_interrupt_is_exactly_the_acknowledged_audio() -> None:
    t_interrupt = 0.537
    items = burst(0.0, speech(MULAW8, 2.0, 3), 3)
    items.append((t_interrupt, "control", Interrupt()))
    run = await run_call(items)
    acked_before = [name for t, name, played in run.carrier.echoes if t < t_interrupt and played]
    assert len(acked_before) == 25  # chunk k ends at 0.02(k+1), echoes 0.03 later
    [pos] = run.events
    assert pos.utterance_id == 3 and not pos.complete
    assert pos.played == pytest.approx(0.02 * len(acked_before))
    assert pos.sent > pos.played
    assert pos.sent == pytest.approx(sum(f.duration for f in audio_out(run.carrier)))


@pytest.mark.anyio
async def test_interrupt_clears_the_carrier_with_a_new_generation() -> None:
    items = burst(0.0, speech(MULAW8, 2.0, 3), 3) + [(0.5, "control", Interrupt())]
    run = await run_call(items)
    assert run.carrier.clears == [(0.5, 1)]
    assert run.playout.generation == 1


@pytest.mark.anyio
async def test_nothing_queued_before_the_interrupt_is_sent_after_it() -> None:
    items = burst(0.0, speech(MULAW8, 2.0, 3), 3) + [(0.5, "control", Interrupt())]
    run = await run_call(items)
    assert all(a.at <= 0.5 for a in run.carrier.arrivals)
    assert not run.playout.speaking


@pytest.mark.anyio
async def test_late_marks_of_the_old_generation_are_ignored() -> None:
    items = burst(0.0, speech(MULAW8, 2.0, 3), 3) + [(0.5, "control", Interrupt())]
    run = await run_call(items)
    late = [name for t, name, _ in run.carrier.echoes if t > 0.5]
    assert late  # the fake (like Twilio) echoed the cleared marks after the clear
    assert run.playout.late_marks == len(late)
    [pos] = run.events
    assert pos.played == pytest.approx(0.02 * (len(run.carrier.echoes) - len(late)))


@pytest.mark.anyio
async def test_mark_names_carry_the_playback_generation() -> None:
    items = burst(0.0, speech(MULAW8, 0.4, 3), 3, done=False)
    items += [(0.2, "control", Interrupt())] + burst(0.3, speech(MULAW8, 0.2, 4), 4)
    run = await run_call(items)
    names = [f.name for f in run.carrier.received if isinstance(f, PlaybackMark)]
    assert {n.split(".")[0] for n in names[:5]} == {"vg0"}
    assert {n.split(".")[0] for n in names[-10:]} == {"vg1"}


@pytest.mark.anyio
async def test_next_utterance_after_interrupt_completes_with_its_own_position() -> None:
    items = burst(0.0, speech(MULAW8, 2.0, 3), 3) + [(0.5, "control", Interrupt())]
    items += burst(0.8, speech(MULAW8, 0.6, 4), 4)
    run = await run_call(items)
    assert run.events[-1] == PlayedPosition(
        utterance_id=4, played=0.6, sent=0.6, generation=1, complete=True
    )


@pytest.mark.anyio
async def test_audio_of_the_interrupted_utterance_arriving_after_the_interrupt_is_dropped() -> None:
    frames = speech(MULAW8, 2.0, 3)
    items = burst(0.0, frames[:5], 3, done=False) + [(0.3, "control", Interrupt())]
    items += burst(0.4, frames[5:], 3)
    run = await run_call(items)
    assert all(a.at <= 0.3 for a in run.carrier.arrivals)
    assert run.playout.dropped_interrupted == len(frames) - 5
    assert [e.complete for e in run.events] == [False]  # AudioDone of utterance 3 is ignored


@pytest.mark.anyio
async def test_interrupt_naming_an_utterance_drops_its_later_audio() -> None:
    items = [(0.0, "control", Interrupt(utterance_id=9))] + burst(0.1, speech(MULAW8, 0.4, 9), 9)
    run = await run_call(items)
    assert run.carrier.arrivals == []
    assert run.playout.dropped_interrupted == 4


@pytest.mark.anyio
async def test_clear_frame_on_control_clears_like_an_interrupt() -> None:
    items = burst(0.0, speech(MULAW8, 2.0, 3), 3) + [(0.5, "control", Clear())]
    run = await run_call(items, carrier=FakeCarrier(echo_on_clear=False))
    assert run.carrier.clears == [(0.5, 1)]
    assert run.playout.clears_confirmed == 1  # Plivo-style clearedAudio counted
    assert [e.complete for e in run.events] == [False]


@pytest.mark.anyio
async def test_nothing_is_sent_while_no_audio_is_queued() -> None:
    items = burst(0.0, speech(MULAW8, 0.2, 1), 1) + burst(1.5, speech(MULAW8, 0.2, 2), 2)
    run = await run_call(items)
    times = [a.at for a in run.carrier.arrivals]
    assert not [t for t in times if 0.2 < t < 1.5]
    assert len(times) == 20


@pytest.mark.anyio
async def test_state_reports_speaking_utterance_and_sent_and_played_seconds() -> None:
    run = await run_call(burst(0.0, speech(MULAW8, 1.0, 5), 5), probe_times=[0.505, 2.0])
    assert run.probe is not None
    (t, speaking, utt, sent, played), idle = run.probe.samples
    assert (speaking, utt) == (True, 5)
    assert sent == pytest.approx(0.6)  # 0.5 s played out + 0.1 s lead
    assert played == pytest.approx(0.46)  # echoes trail playback by 30 ms
    assert idle[1:] == (False, 0, 0.0, 0.0)


@pytest.mark.anyio
async def test_unknown_mark_names_are_counted_and_ignored() -> None:
    playout = Playout(MULAW8, options=PER_CHUNK)
    g = Graph()
    g.add("script", Script(burst(0.0, speech(MULAW8, 0.2, 1), 1)))
    g.add("playout", playout)
    g.add("carrier", FakeCarrier())

    class Junk(Actor):
        outputs = (Out("out", MarkAck),)

        async def run(self) -> None:
            await self.send("out", MarkAck(name="someone-else"))
            await self.send("out", MarkAck(name="vgx.1"))

    g.add("junk", Junk())
    g.connect("script.audio", "playout.audio")
    g.connect("junk", "playout.acks")
    g.connect("playout.out", "carrier.in")
    await Call(g, max_duration=1.0).run()
    assert playout.unknown_marks == 2


@pytest.mark.anyio
async def test_empty_audio_frame_ends_the_call_with_a_clear_error() -> None:
    items = [(0.0, "audio", AudioFrame(data=b"", encoding="mulaw", sample_rate=8000))]
    run = await run_call(items, expect_error=True)
    assert run.result.reason == "error"
    assert run.result.error is not None and "empty AudioFrame" in str(run.result.error)


@pytest.mark.anyio
async def test_odd_length_pcm_ends_the_call_with_a_clear_error() -> None:
    items = [(0.0, "audio", AudioFrame(data=b"\0" * 301, sample_rate=24000))]
    run = await run_call(items, expect_error=True)
    assert run.result.error is not None and "even length" in str(run.result.error)


@pytest.mark.anyio
async def test_audio_beyond_the_queue_bound_is_dropped_and_counted() -> None:
    playout = Playout(MULAW8, options=PlayoutOptions(max_queued=0.5))
    run = await run_call(burst(0.0, speech(MULAW8, 1.0, 1), 1), playout=playout)
    assert run.playout.dropped_overflow == 5
    assert sum(f.duration for f in audio_out(run.carrier)) == pytest.approx(0.5)


def test_playout_output_port_pins_the_carrier_format() -> None:
    assert Playout(MULAW8).output("out").format == MULAW8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk": 0.0}, "chunk must be"),
        ({"lead": -1.0}, "lead must be"),
        ({"lead": 0.01, "chunk": 0.02}, "lead must be from chunk"),
        ({"mark_prefix": "a.b"}, "mark_prefix"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlayoutOptions(**kwargs)


def run_virtual(main, backend: str) -> Run:  # type: ignore[no-untyped-def]
    """Run ``main`` on ``backend`` on a fresh virtual clock, from a synchronous (hypothesis) test."""
    name, options = virtual_clock(backend)
    return anyio.run(main, backend=name, backend_options=options)


def run_on_mock_clock(items: list[tuple[float, str, Frame]], duration: float, backend: str) -> Run:
    """Run one call to its end on a fresh virtual clock."""

    async def main() -> Run:
        return await run_call(items, duration=duration)

    return run_virtual(main, backend)


agent_format = st.sampled_from([MULAW8, AudioFormat("pcm16", 8000), PCM24K])


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    fmt=agent_format,
    sizes=st.lists(st.floats(0.005, 0.3), min_size=1, max_size=25),
    speed=st.floats(0.05, 0.6),
)
def test_any_faster_than_real_time_delivery_reaches_the_carrier_without_gaps(
    backend: str, fmt: AudioFormat, sizes: list[float], speed: float
) -> None:
    """Frames of any size, produced at any speed above real time (the first 150 ms at once),
    reach the carrier back to back, in whole chunks, with nothing lost."""
    total = 0.15 + sum(sizes)
    pcm = speech(fmt, total, 1, frame_s=total)[0].data
    width = 2 if fmt.encoding == "pcm16" else 1
    cuts = [0.15, *sizes]
    items: list[tuple[float, str, Frame]] = []
    start = 0.0
    for seconds in cuts:
        a = int(start * fmt.sample_rate) * width
        b = int((start + seconds) * fmt.sample_rate) * width
        if b > a:
            items.append(
                (
                    start * speed,
                    "audio",
                    AudioFrame(
                        data=pcm[a:b],
                        encoding=fmt.encoding,
                        sample_rate=fmt.sample_rate,
                        utterance_id=1,
                    ),
                )
            )
        start += seconds
    items.append((start * speed, "audio", AudioDone(utterance_id=1)))
    run = run_on_mock_clock(items, duration=total + 1.0, backend=backend)
    arrivals = run.carrier.arrivals
    for prev, cur in zip(arrivals, arrivals[1:], strict=False):
        assert cur.starts == pytest.approx(prev.starts + prev.frame.duration, abs=1e-9)
    assert {len(a.frame.data) for a in arrivals[:-1]} == {160}
    given_samples = sum(len(f.data) // width for _, _, f in items if isinstance(f, AudioFrame))
    sent = sum(len(a.frame.data) for a in arrivals)  # µ-law: one byte per sample
    assert abs(sent - given_samples * 8000 / fmt.sample_rate) <= 1
    assert run.playout.underruns == 0
    assert run.events[-1].complete


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(at=st.floats(0.001, 1.4), echo_delay=st.floats(0.0, 0.2))
def test_played_position_after_a_clear_at_any_moment_is_the_acknowledged_audio(
    backend: str, at: float, echo_delay: float
) -> None:
    items = burst(0.0, speech(MULAW8, 1.5, 3), 3) + [(at, "control", Interrupt())]

    async def main() -> Run:
        return await run_call(items, duration=2.5, carrier=FakeCarrier(echo_delay=echo_delay))

    run = run_virtual(main, backend)
    acked = [name for t, name, played in run.carrier.echoes if t < at and played]
    [pos] = [e for e in run.events if e.utterance_id == 3]
    assert pos.played == pytest.approx(0.02 * len(acked))
    assert pos.complete is (len(acked) == 75)


# Longer messages: 20 ms pieces joined up to `chunk` when they are due together.
JOINED = PlayoutOptions(chunk=0.06, lead=0.14, mark_interval=0.0)


@pytest.mark.anyio
async def test_a_longer_chunk_sends_fewer_messages_back_to_back() -> None:
    run = await run_call(
        burst(0.0, speech(MULAW8, 2.0, 1), 1), playout=Playout(MULAW8, options=JOINED)
    )
    arrivals = run.carrier.arrivals
    sizes = [len(a.frame.data) for a in arrivals]
    assert sum(sizes) == 16000 and all(s % 160 == 0 and s <= 480 for s in sizes)
    # 60 ms each once audio is queued ahead (a smaller one goes when that is all there is)
    assert len(sizes) <= 36 and sizes.count(480) >= 31
    for prev, cur in zip(arrivals, arrivals[1:], strict=False):
        assert cur.starts == pytest.approx(prev.starts + prev.frame.duration)  # no gaps
    held = [a.starts + a.frame.duration - a.at for a in arrivals]
    assert max(held) <= 0.14 + 1e-9  # the carrier never holds more than the lead
    assert run.playout.underruns == 0


@pytest.mark.anyio
async def test_calls_sharing_a_loop_send_on_their_own_slots_of_the_pacing_grid() -> None:
    # Every call's playout is paced by the loop's one pacer on a 20 ms grid (JOINED's tick);
    # each takes its own 2 ms slot of it, so many calls' sends do not all land at one instant.
    runs: list[Run] = []

    async def one() -> None:
        playout = Playout(MULAW8, options=JOINED)
        runs.append(await run_call(burst(0.0, speech(MULAW8, 1.0, 1), 1), playout=playout))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    slots = []
    for run in runs:
        arrivals = run.carrier.arrivals
        assert sum(len(a.frame.data) for a in arrivals) == 8000
        paced = [a.at for a in arrivals if a.at > 0]  # the first lead goes at once
        offsets = {round(at * 1000) % 20 for at in paced}
        assert len(offsets) == 1  # each call keeps its slot
        slots.append(offsets.pop())
        held = [a.starts + a.frame.duration - a.at for a in arrivals]
        assert max(held) <= 0.14 + 1e-9
        assert run.playout.underruns == 0
    assert sorted(slots) == [0, 2]


@pytest.mark.anyio
async def test_a_longer_chunk_does_not_hold_back_the_first_audio_of_a_reply() -> None:
    first = speech(MULAW8, 0.02, 1)  # only 20 ms of TTS so far
    rest = speech(MULAW8, 0.5, 1)
    items = [(0.0, "audio", first[0])] + burst(0.3, rest, 1)
    run = await run_call(items, playout=Playout(MULAW8, options=JOINED))
    head = run.carrier.arrivals[0]
    assert head.at == 0.0 and len(head.frame.data) == 160  # sent at once, not after 60 ms


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(at=st.floats(0.001, 1.4), echo_delay=st.floats(0.0, 0.2))
def test_with_longer_chunks_a_clear_reports_exactly_the_acknowledged_messages(
    backend: str, at: float, echo_delay: float
) -> None:
    items = burst(0.0, speech(MULAW8, 1.5, 3), 3) + [(at, "control", Interrupt())]

    async def main() -> Run:
        return await run_call(
            items,
            duration=2.5,
            carrier=FakeCarrier(echo_delay=echo_delay),
            playout=Playout(MULAW8, options=JOINED),
        )

    run = run_virtual(main, backend)
    acked = {name for t, name, played in run.carrier.echoes if t < at and played}
    heard = 0.0  # the audio before each acknowledged mark (one mark per message here)
    for frame, after in zip(run.carrier.received, run.carrier.received[1:], strict=False):
        if isinstance(frame, AudioFrame) and isinstance(after, PlaybackMark):
            if after.name in acked:
                heard += frame.duration
    [pos] = [e for e in run.events if e.utterance_id == 3]
    assert pos.played == pytest.approx(heard)
    assert pos.complete is (heard == pytest.approx(1.5))
