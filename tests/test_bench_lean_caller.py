"""The concurrency benchmark's lean Twilio caller (``benchmarks._lean_caller``) against a real
AgentRuntime on loopback, and its messages against the test kit's TwilioCall.

The server side is a small graph: a director answers the caller's keys (``1``: a 0.3 s
utterance, ``2``: a 3 s one, ``#``: clear) through a real Playout, which marks its audio and
learns what was played only from the caller's mark echoes. asyncio only: the lean caller is
(picows)."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from benchmarks._lean_caller import CallEnded, LeanCall, payloads
from benchmarks._lean_clock import Clock
from benchmarks._lean_dialer import LeanDialer
from benchmarks._sweep import load_limits
from voicegraph.frames import (
    DTMF,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Clear,
    Frame,
    Hangup,
    MarkAck,
    PlayedPosition,
    StreamStarted,
)
from voicegraph.graph import Graph
from voicegraph.interface import CallInterface
from voicegraph.node import Actor, In, Out
from voicegraph.nodes.audio.playout import Playout, PlayoutOptions
from voicegraph.server import AgentRuntime
from voicegraph.session import CallSession
from voicegraph.testing.server import serve_runtime
from voicegraph.testing.twilio_caller import TwilioCaller
from voicegraph.transports.twilio import messages as m

ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"
MULAW8 = AudioFormat("mulaw", 8000)
SPEECH = bytes(range(256)) * 2 + bytes(range(128))  # 0.08 s: four distinct 20 ms chunks


def utterance(seconds: float) -> bytes:
    return bytes((i * 7) % 251 for i in range(round(seconds * 8000)))


class Director(Actor):
    """Keeps the caller's audio and answers keys: ``1`` and ``2`` speak, ``#`` clears."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs = (
            In("audio", AudioFrame),
            In("control", DTMF, Hangup),
            In("events", Frame),
        )
        self.outputs = (Out("speech", AudioFrame, AudioDone), Out("cut", Clear), Out("bye", Hangup))
        self.caller_audio = bytearray()
        self.started: list[StreamStarted] = []

    async def handle(self, port: str, frame: Frame) -> None:
        if isinstance(frame, AudioFrame):
            self.caller_audio += frame.data
        elif isinstance(frame, StreamStarted):
            self.started.append(frame)
        elif isinstance(frame, Hangup):
            await self.send("bye", frame)
        elif isinstance(frame, DTMF) and frame.digit in "12":
            utt = int(frame.digit)
            data = utterance(0.3 if utt == 1 else 3.0)
            await self.send("speech", AudioFrame(data=data, encoding="mulaw", utterance_id=utt))
            await self.send("speech", AudioDone(utterance_id=utt))
        elif isinstance(frame, DTMF) and frame.digit == "#":
            await self.send("cut", Clear())


def director_graph(lead: float) -> Callable[[CallSession], Graph]:
    def build(session: CallSession) -> Graph:
        g = Graph("director")
        g.add("carrier_in", session.carrier_in)
        g.add("director", Director())
        g.add("playout", Playout(MULAW8, options=PlayoutOptions(lead=lead)))
        g.add("carrier_out", session.carrier_out)
        for port in ("audio", "control", "events"):
            g.connect(f"carrier_in.{port}", f"director.{port}")
        g.connect("carrier_in.events", "playout.acks", types=(MarkAck,))
        g.connect("director.speech", "playout.audio")
        g.connect("director.cut", "playout.control")
        g.connect("playout.out", "carrier_out")
        g.connect("director.bye", "carrier_out")
        return g

    return build


class Server:
    """The runtime's live calls: each one's graph, session and published events."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.sessions: list[CallSession] = []
        self.events: list[Frame] = []

    def on_call(self, call: Any, session: CallSession, timeline: Any) -> None:
        self.calls.append(call)
        self.sessions.append(session)
        call.subscribe(self.events.append)

    def played(self, utt: int) -> list[PlayedPosition]:
        return [e for e in self.events if isinstance(e, PlayedPosition) and e.utterance_id == utt]


@asynccontextmanager
async def lean_call(lead: float = 0.1) -> AsyncIterator[tuple[LeanCall, Server]]:
    server = Server()
    iface = CallInterface(
        "twilio", NUMBER, account_sid=ACCOUNT, auth_token=TOKEN, graph=director_graph(lead)
    )
    runtime = AgentRuntime([iface], public_url=PUBLIC, drain_timeout=2, on_call=server.on_call)
    clock = Clock()
    clock.start()
    try:
        async with (
            serve_runtime(runtime) as base,
            LeanDialer(base, TOKEN, clock, account_sid=ACCOUNT, to=NUMBER, public_url=PUBLIC) as d,
        ):
            call = await d.dial()
            try:
                yield call, server
            finally:
                await call.hangup()
    finally:
        clock.stop()


async def until(cond: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - the server offers no event for these
            await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_the_server_accepts_the_start_and_hears_the_speech_byte_for_byte() -> None:
    chunks = [SPEECH[i : i + 160] for i in range(0, len(SPEECH), 160)]
    async with lean_call() as (call, server):
        call.say(payloads(chunks))
        await call.wait_spoken()
        director = server.calls[0].graph["director"]
        await until(lambda: SPEECH in director.caller_audio)
    session = server.sessions[0]
    assert (session.call_id, session.stream_id) == (call.call_sid, call.stream_sid)
    assert "line" in session.params  # the TwiML's <Parameter>s came back in start
    assert [s.stream_id for s in director.started] == [call.stream_sid]
    assert len(call.speech_ends) == 1 and call.onsets[0] < call.speech_ends[0]
    assert not call.errors


@pytest.mark.anyio
async def test_marks_are_echoed_as_the_audio_plays_so_the_server_s_playout_completes() -> None:
    async with lean_call() as (call, server):
        call.say(payloads([b"\xff" * 160]))
        await call.wait_spoken()
        call.send_dtmf("1")  # the director speaks 0.3 s through the playout
        await call.wait_reply()
        await until(lambda: server.played(1))
        await call.wait_quiet(gap=0.1)
    [done] = server.played(1)
    assert done.complete and done.played == done.sent == pytest.approx(0.3)
    assert call.first_audio[-1] is not None
    assert call.heard_seconds == pytest.approx(0.3)
    assert len(call.marks_echoed) >= 3  # one per 0.1 s of audio, the last at its end
    assert not call.closed_by_server and not call.errors


@pytest.mark.anyio
async def test_a_clear_drops_the_queued_audio_and_echoes_the_pending_marks_at_once() -> None:
    async with lean_call(lead=1.0) as (call, server):
        call.send_dtmf("2")  # 3 s of audio, sent up to 1 s ahead of playback
        await until(lambda: call.queued_seconds > 0.5)
        call.send_dtmf("#")
        await until(lambda: server.played(2))
        playout = server.calls[0].graph["playout"]
        await until(lambda: playout.late_marks > 0)  # marks of the cleared audio came back
        await call.wait_quiet(gap=0.1)
    [cut] = server.played(2)
    assert not cut.complete and cut.played < cut.sent < 3.0
    assert call.clears == 1 and call.dropped_bytes > 0
    assert call.heard_seconds < cut.sent
    assert not call.errors


@pytest.mark.anyio
async def test_waiting_on_a_line_the_server_closed_raises_call_ended() -> None:
    async with lean_call() as (call, server):
        await until(lambda: server.calls)
        call.say(payloads([b"\xff" * 160] * 250))  # 5 s of speech
        server.calls[0].stop("the agent hung up")
        with pytest.raises(CallEnded):
            await call.wait_spoken()
        assert call.closed_by_server


# ------------------------------------------------------------ the kit's messages, compared


@asynccontextmanager
async def capture_server() -> AsyncIterator[tuple[str, list[list[dict[str, Any]]]]]:
    """A bare Media Streams endpoint: it records each connection's messages and, after
    ``start``, sends one mark (echoed at once: nothing is queued to play)."""
    from websockets.asyncio.server import serve

    calls: list[list[dict[str, Any]]] = []

    async def handler(ws: Any) -> None:
        got: list[dict[str, Any]] = []
        calls.append(got)
        async for raw in ws:
            msg = json.loads(raw)
            got.append(msg)
            if msg["event"] == "start":
                mark = {"event": "mark", "streamSid": msg["streamSid"], "mark": {"name": "m1"}}
                await ws.send(json.dumps(mark))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/stream", calls


def twiml(url: str) -> ET.Element:
    return ET.fromstring(
        f'<Response><Connect><Stream url="{url}"><Parameter name="line" value="main"/>'
        "</Stream></Connect></Response>"
    )


def shape(value: Any) -> Any:
    """The keys of a message, nested, with each leaf's JSON type."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def by_event(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {msg["event"]: msg for msg in reversed(messages)}  # the first of each event


async def kit_messages(url: str, calls: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    caller = TwilioCaller("http://127.0.0.1:9", TOKEN, account_sid=ACCOUNT)
    async with caller.open_stream(twiml(url), "CA" + "1" * 32) as call:
        await call.send_audio(b"\xff" * 320, speed=0)
        await call.wait_for_mark("m1")
        await call.send_dtmf("1")
    await until(lambda: calls and calls[-1][-1]["event"] == "stop")
    return calls[-1]


async def lean_messages(url: str, calls: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    clock = Clock()
    clock.start()
    try:
        async with LeanDialer("http://127.0.0.1:9", TOKEN, clock, account_sid=ACCOUNT) as d:
            call = await d.open_stream(twiml(url), "CA" + "2" * 32)
            await until(lambda: sum(msg["event"] == "media" for msg in calls[-1]) >= 2)
            await until(lambda: "m1" in call.marks_echoed)
            call.send_dtmf("1")
            await call.hangup()
    finally:
        clock.stop()
    await until(lambda: calls[-1][-1]["event"] == "stop")
    return calls[-1]


@pytest.mark.anyio
async def test_each_message_has_the_fields_of_the_kit_s_twilio_call() -> None:
    async with capture_server() as (url, calls):
        kit = await kit_messages(url, calls)
        lean = await lean_messages(url, calls)
    kit_events, lean_events = by_event(kit), by_event(lean)
    every = {"connected", "start", "media", "mark", "dtmf", "stop"}
    assert set(lean_events) == set(kit_events) == every
    # connected carries protocol and version, as Twilio's does, from both callers
    connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert lean_events.pop("connected") == kit_events["connected"] == connected
    for event, msg in lean_events.items():
        assert shape(msg) == shape(kit_events[event]), event
    start, kit_start = lean_events["start"]["start"], kit_events["start"]["start"]
    assert start["mediaFormat"] == kit_start["mediaFormat"]
    assert start["customParameters"] == kit_start["customParameters"] == {"line": "main"}


@pytest.mark.anyio
async def test_counters_run_as_twilio_s_and_the_server_s_schema_reads_every_message() -> None:
    async with capture_server() as (url, calls):
        lean = await lean_messages(url, calls)
    decoder = msgspec.json.Decoder(m.MediaInbound)
    decoded = [decoder.decode(json.dumps(msg)) for msg in lean]
    assert isinstance(decoded[0], m.Connected) and isinstance(decoded[1], m.Start)
    numbered = decoded[1:]
    assert [int(x.sequenceNumber) for x in numbered] == list(range(1, len(numbered) + 1))
    assert {x.streamSid for x in numbered} == {decoded[1].start.streamSid}
    media = [x.media for x in decoded if isinstance(x, m.Media)]
    assert [int(b.chunk) for b in media] == list(range(1, len(media) + 1))
    assert [int(b.timestamp) for b in media] == [20 * i for i in range(len(media))]
    assert all(b.payload == b"\xff" * 160 and b.track == "inbound" for b in media)
    assert isinstance(decoded[-1], m.Stop) and decoded[-1].stop.callSid == "CA" + "2" * 32


# ------------------------------------------------------------------ the load side's limits


def test_a_load_side_with_room_everywhere_was_not_the_limit() -> None:
    assert load_limits(40.0, 1, 25.0, [8.0, 7.0], 3.0) == []


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((95.0, 1, 30.0, [30.0, 35.0], 3.0), "its 1 core(s) were 95 % busy"),
        ((120.0, 2, 92.0, [14.0, 14.0], 3.0), "the provider fakes' process used 92 % of a core"),
        ((120.0, 2, 20.0, [91.0, 9.0], 3.0), "a caller process used 91 % of a core"),
        ((50.0, 1, 30.0, [10.0, 10.0], 12.0), "the callers' 20 ms clock ran 12 ms late (p99)"),
    ],
)
def test_the_load_side_was_the_limit_when_a_core_a_process_or_the_clock_was(
    args: tuple[float, int, float, list[float], float], reason: str
) -> None:
    assert load_limits(*args) == [reason]


def test_the_clock_reports_how_late_its_recorded_ticks_ran() -> None:
    clock = Clock()
    clock.late_ms[0], clock.late_ms[2], clock.late_ms[40] = 90, 9, 1
    late = clock.lateness()
    assert (late["ticks"], late["p50"], late["p99"], late["max"]) == (100, 0.0, 2.0, 40.0)


class _Ticks:
    """A stand-in call that records the slot of the clock's firing that ticked it."""

    def __init__(self, clock: Clock, log: list[tuple[int, int]], name: int) -> None:
        self.clock, self.log, self.name = clock, log, name

    def tick(self, now: float) -> None:
        fired = (self.clock._next - 1) % self.clock.phases  # the slot this firing ticks
        self.log.append((fired, self.name))


@pytest.mark.anyio
@pytest.mark.parametrize("phases", [1, 10])
async def test_the_clock_spreads_its_calls_over_the_20_ms_in_its_phases(phases: int) -> None:
    clock = Clock(phases)
    log: list[tuple[int, int]] = []
    calls = [_Ticks(clock, log, k) for k in range(25)]
    for c in calls:
        clock.join(c)  # type: ignore[arg-type]
    clock.leave(calls[0])  # type: ignore[arg-type]
    clock.leave(calls[0])  # type: ignore[arg-type]  # a second leave is a no-op
    assert clock.calls == 24
    sizes = [24] if phases == 1 else [3, 3, 3, 3, 2, 2, 2, 2, 2, 2]
    assert sorted(len(s) for s in clock.slots) == sorted(sizes)
    slot_of = {c.name: k for k, s in enumerate(clock.slots) for c in s}  # type: ignore[attr-defined]
    clock.start()
    await until(lambda: len(log) >= 3 * 24)
    clock.stop()
    # each call ticks in its own slot's firings only, once per round of the slots
    assert all(slot_of[name] == fired for fired, name in log)
    counts = [sum(name == k for _, name in log) for k in range(1, 25)]
    assert max(counts) - min(counts) <= 1
    assert all(name != 0 for _, name in log)


def test_the_clock_takes_1_to_20_phases() -> None:
    with pytest.raises(ValueError, match="phases must be 1..20"):
        Clock(0)
    with pytest.raises(ValueError, match="phases must be 1..20"):
        Clock(21)
