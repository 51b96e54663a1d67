"""The carrier reader's push path (a socket that hands each message over in a callback, as the
picows media listener's does) keeps every guarantee of the reader-task path."""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from enginekit import BOTH_BACKENDS
from hypothesis import given, settings, strategies as st
from transport_kit import Collect, reader_graph, run_call

from voicegraph import AudioFrame, Call, Frame, Hangup, In, Out
from voicegraph.testing.memsocket import socket_pair
from voicegraph.transports import (
    ProtocolError,
    TwilioMediaOptions,
    accept_twilio_media,
    twilio_media_nodes,
)
from voicegraph.transports._base import CarrierIn
from voicegraph.transports.twilio.media import TwilioStart
from voicegraph.wsio import PushSocket, SocketClosed

SID = "MZ0123456789abcdef0123456789abcdef"
START = {
    "event": "start",
    "sequenceNumber": "1",
    "streamSid": SID,
    "start": {
        "streamSid": SID,
        "accountSid": "AC" + "0" * 32,
        "callSid": "CA" + "1" * 32,
        "tracks": ["inbound"],
        "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}
PORTS = ["audio", "control", "events"]


def media(i: int, payload: bytes | None = None) -> str:
    data = payload if payload is not None else bytes([i % 256]) * 160
    body = {"track": "inbound", "chunk": str(i), "timestamp": str(i * 20)}
    body["payload"] = base64.b64encode(data).decode()
    return json.dumps({"event": "media", "sequenceNumber": str(i), "streamSid": SID, "media": body})


def dtmf(digit: str) -> str:
    return json.dumps({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": digit}})


def mark(name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": name}})


SURPRISE = '{"event":"surprise","streamSid":"' + SID + '","surprise":{}}'
STOP = json.dumps({"event": "stop", "streamSid": SID, "stop": {"callSid": "CA"}})


class PushPeer:
    """A :class:`~voicegraph.wsio.PushSocket` fake: what the test ``deliver``s goes to the
    receiver at once (queued before one is set), ``hang_up`` is the peer's close. Records what
    the reader closed it with; never read with ``receive`` (the reader must not)."""

    def __init__(self) -> None:
        self.queued: deque[str | bytes] = deque()
        self.on_message: Callable[[str | bytes], None] | None = None
        self.on_closed: Callable[[SocketClosed], None] | None = None
        self.gone: SocketClosed | None = None
        self.told = False
        self.close_code: int | None = None
        self.receivers_set = 0

    def set_receiver(
        self,
        on_message: Callable[[str | bytes], None] | None,
        on_closed: Callable[[SocketClosed], None] | None,
    ) -> None:
        self.on_message, self.on_closed = on_message, on_closed
        if on_message is None:
            return
        self.receivers_set += 1
        while self.queued and self.on_message is on_message:
            on_message(self.queued.popleft())
        self._tell()

    def deliver(self, message: str | bytes) -> None:
        if self.on_message is None:
            self.queued.append(message)
        elif self.close_code is None:
            self.on_message(message)

    def hang_up(self) -> None:
        self.gone = SocketClosed(1000, "bye")
        self._tell()

    def _tell(self) -> None:
        if self.gone is not None and self.on_closed is not None and not self.told:
            self.told = True
            self.on_closed(self.gone)

    async def send(self, message: str | bytes) -> None:
        pass

    async def receive(self) -> str | bytes:
        raise AssertionError("a reader with a push socket must not call receive")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code


async def twilio_start() -> TwilioStart:
    server, client = socket_pair()
    await client.send(json.dumps(START))
    return await accept_twilio_media(server)


def forwarded(cin: object) -> list[tuple[str, Frame]]:
    """Spy on what the reader forwards, in the order its pump sends it."""
    sent: list[tuple[str, Frame]] = []
    send = cin.send  # type: ignore[attr-defined]

    def spy(port: str, frame: Frame):  # type: ignore[no-untyped-def]
        sent.append((port, frame))
        return send(port, frame)

    cin.send = spy  # type: ignore[attr-defined]
    return sent


def comparable(items: list[tuple[str, Frame]]) -> list[tuple[str, Frame]]:
    # capture_time is the arrival clock, the one field that differs between two runs
    return [
        (p, msgspec.structs.replace(f, capture_time=0.0) if isinstance(f, AudioFrame) else f)
        for p, f in items
    ]


def test_the_picows_socket_offers_the_push_path() -> None:
    from voicegraph.server._media_picows import PicowsSocket

    assert isinstance(PicowsSocket(1024), PushSocket)
    assert isinstance(PushPeer(), PushSocket)
    assert not isinstance(socket_pair()[0], PushSocket)


message_kinds = st.lists(
    st.one_of(
        st.integers(0, 255).map(media),
        st.sampled_from("0123456789*#").map(dtmf),
        st.sampled_from(["utt-1", "utt-2"]).map(mark),
        st.just(SURPRISE),
    ),
    max_size=40,
)


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(messages=message_kinds, stop=st.booleans(), pauses=st.lists(st.booleans(), max_size=40))
def test_push_and_reader_paths_forward_the_same_frames_in_the_same_order(
    backend: str, messages: list[str], stop: bool, pauses: list[bool]
) -> None:
    ending = [STOP] if stop else []

    async def by_reader_task() -> list[tuple[str, Frame]]:
        start = await twilio_start()
        server, client = socket_pair(capacity=64)
        cin, _ = twilio_media_nodes(server, start)
        sent = forwarded(cin)
        for m in [*messages, *ending]:
            await client.send(m)
        await client.close()
        await run_call(reader_graph(cin, Collect(PORTS)))
        return sent

    async def by_push() -> list[tuple[str, Frame]]:
        start = await twilio_start()
        peer = PushPeer()
        cin, _ = twilio_media_nodes(peer, start)  # type: ignore[arg-type]
        sent = forwarded(cin)

        async def feed() -> None:
            while peer.on_message is None:
                await anyio.lowlevel.checkpoint()
            for i, m in enumerate([*messages, *ending]):
                peer.deliver(m)
                if i < len(pauses) and pauses[i]:  # let the pump run between some messages
                    await anyio.lowlevel.checkpoint()
            peer.hang_up()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                await Call(reader_graph(cin, Collect(PORTS))).run()
        return sent

    by_task = anyio.run(by_reader_task, backend=backend)
    pushed = anyio.run(by_push, backend=backend)
    assert comparable(pushed) == comparable(by_task)
    assert pushed[-1] == (
        "control",
        Hangup(reason="caller hung up" if stop else "socket closed"),
    )


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_push_path_drops_the_oldest_caller_audio_while_the_graph_is_stuck() -> None:
    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start(), TwilioMediaOptions(backlog=4))  # type: ignore[arg-type]
    gate = anyio.Event()
    sink = Collect(PORTS, gate=gate)

    async def caller() -> None:
        while peer.on_message is None:
            await anyio.lowlevel.checkpoint()
        for i in range(50):
            peer.deliver(media(i))
            await anyio.lowlevel.checkpoint()
        peer.deliver(dtmf("7"))
        peer.hang_up()
        gate.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await Call(reader_graph(cin, sink)).run()
    audio = sink.frames("audio")
    assert cin.dropped_audio > 0
    assert len(audio) + cin.dropped_audio == 50
    assert audio[-1].data[:1] == bytes([49])
    assert [type(f).__name__ for f in sink.frames("control")] == ["DTMF", "Hangup"]


@pytest.mark.anyio
async def test_push_path_protocol_error_closes_with_1007_and_ends_the_call() -> None:
    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start())  # type: ignore[arg-type]
    sink = Collect(PORTS)
    peer.deliver(media(1))
    peer.deliver("{not json")
    peer.deliver(media(2))  # after the error: never read
    result = await run_call(reader_graph(cin, sink))
    assert result.reason == "error"
    assert isinstance(result.error.exc, ProtocolError)
    assert "malformed JSON" in result.error.exc.reason
    assert peer.close_code == 1007
    assert len(sink.frames("audio")) + cin.discarded == 1
    assert cin.messages == 2


@pytest.mark.anyio
async def test_push_path_turns_the_peers_close_into_a_hangup() -> None:
    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start())  # type: ignore[arg-type]
    sink = Collect(PORTS)
    peer.hang_up()
    result = await run_call(reader_graph(cin, sink))
    assert result.reason == "completed"
    assert sink.frames("control") == [Hangup(reason="socket closed")]
    assert peer.close_code != 1007


@pytest.mark.anyio
async def test_push_path_skips_and_counts_unknown_events() -> None:
    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start())  # type: ignore[arg-type]
    sink = Collect(PORTS)
    for m in (SURPRISE, media(1), SURPRISE):
        peer.deliver(m)
    peer.hang_up()
    result = await run_call(reader_graph(cin, sink))
    assert result.reason == "completed"
    assert cin.unknown_events == 2
    assert len(sink.frames("audio")) == 1


@pytest.mark.anyio
async def test_push_path_stops_reading_after_the_stream_ends_and_detaches() -> None:
    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start())  # type: ignore[arg-type]
    sink = Collect(PORTS)
    for m in (media(1), STOP, media(2)):
        peer.deliver(m)
    result = await run_call(reader_graph(cin, sink))
    assert result.reason == "completed"
    assert len(sink.frames("audio")) == 1
    assert sink.frames("control") == [Hangup(reason="caller hung up")]
    assert cin.messages == 2
    assert peer.receivers_set == 1 and peer.on_message is None  # handed back on the way out


# ------------------------------------------------------------------- on the picows socket


class FakePicowsTransport:
    """What the picows socket uses of its transport, recording the close it sends."""

    def __init__(self) -> None:
        self.underlying_transport = self
        self.reading = True
        self.is_close_frame_sent = False
        self.close_codes: list[int] = []
        self.disconnected = False
        self.sent: list[tuple[int, str | bytes]] = []

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def send(self, kind: object, message: str | bytes) -> None:
        self.sent.append((int(kind), message))  # type: ignore[call-overload]

    def send_close(self, code: object, message: bytes = b"") -> None:
        self.is_close_frame_sent = True
        self.close_codes.append(int(code))  # type: ignore[call-overload]

    def disconnect(self, graceful: bool = True) -> None:
        self.disconnected = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def picows_socket() -> tuple[object, FakePicowsTransport]:
    from voicegraph.server._media_picows import PicowsSocket

    transport = FakePicowsTransport()
    sock = PicowsSocket(64 * 1024)
    sock.on_ws_connected(transport)  # type: ignore[arg-type]
    return sock, transport


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_picows_receiver_gets_queued_then_live_messages_without_pausing_reads() -> None:
    from voicegraph.server._media_picows import INBOX

    sock, transport = picows_socket()
    got: list[str | bytes] = []
    ends: list[SocketClosed] = []
    sock._push("early")  # type: ignore[attr-defined]
    sock.set_receiver(got.append, ends.append)  # type: ignore[attr-defined]
    for n in range(INBOX * 2):
        sock._push(f"m{n}")  # type: ignore[attr-defined]
    assert got == ["early", *(f"m{n}" for n in range(INBOX * 2))]
    assert transport.reading  # the receiver bounds what it keeps, not the socket
    sock.on_ws_disconnected(transport)  # type: ignore[attr-defined]
    sock.on_ws_disconnected(transport)  # type: ignore[attr-defined]
    assert len(ends) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_picows_send_nowait_sends_only_what_needs_no_wait() -> None:
    sock, transport = picows_socket()
    assert sock.send_nowait(b"audio") and sock.send_nowait("text")  # type: ignore[attr-defined]
    assert [m for _, m in transport.sent] == [b"audio", "text"]
    assert [k for k, _ in transport.sent] == [2, 1]  # RFC 6455 opcodes: binary, text
    sock.pause_writing()  # type: ignore[attr-defined]  # over the high-water mark: send waits
    assert not sock.send_nowait(b"late")  # type: ignore[attr-defined]
    sock.resume_writing()  # type: ignore[attr-defined]
    await sock.close()  # type: ignore[attr-defined]
    assert not sock.send_nowait(b"after close")  # type: ignore[attr-defined]
    assert [m for _, m in transport.sent] == [b"audio", "text"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_picows_send_nowait_leaves_a_transport_error_to_send() -> None:
    """An error from picows is not raised into whoever offered the frame (another node's
    call): nothing was sent, and ``send`` meets it in its caller's own task."""
    sock, transport = picows_socket()

    def broken(kind: object, message: str | bytes) -> None:
        raise RuntimeError("transport broke")

    transport.send = broken  # type: ignore[method-assign]
    assert not sock.send_nowait(b"audio")  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="transport broke"):
        await sock.send(b"audio")  # type: ignore[attr-defined]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_detached_picows_receiver_leaves_messages_to_receive() -> None:
    sock, _ = picows_socket()
    got: list[str | bytes] = []
    sock.set_receiver(got.append, lambda exc: None)  # type: ignore[attr-defined]
    sock._push("pushed")  # type: ignore[attr-defined]
    sock.set_receiver(None, None)  # type: ignore[attr-defined]
    sock._push("queued")  # type: ignore[attr-defined]
    assert got == ["pushed"]
    assert await sock.receive() == "queued"  # type: ignore[attr-defined]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_carrier_reader_on_picows_closes_a_bad_stream_with_1007() -> None:
    sock, transport = picows_socket()
    cin, _ = twilio_media_nodes(sock, await twilio_start())  # type: ignore[arg-type]
    sink = Collect(PORTS)
    sock._push(media(1))  # type: ignore[attr-defined]
    sock._push('{"event":"media"}')  # type: ignore[attr-defined]
    result = await run_call(reader_graph(cin, sink))
    assert isinstance(result.error.exc, ProtocolError)
    assert transport.close_codes == [1007]
    assert len(sink.frames("audio")) + cin.discarded == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_carrier_reader_on_picows_hangs_up_when_the_peer_leaves() -> None:
    sock, transport = picows_socket()
    cin, _ = twilio_media_nodes(sock, await twilio_start())  # type: ignore[arg-type]
    sink = Collect(PORTS)

    async def caller() -> None:
        while not cin.messages:
            sock._push(media(1))  # type: ignore[attr-defined]
            await anyio.lowlevel.checkpoint()
        sock.on_ws_disconnected(transport)  # type: ignore[attr-defined]

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            result = await Call(reader_graph(cin, sink)).run()
    assert result.reason == "completed"
    assert sink.frames("control") == [Hangup(reason="socket closed")]
    assert len(sink.frames("audio")) >= 1


def test_the_carrier_inbound_benchmark_measures_both_paths(tmp_path: Path) -> None:
    from benchmarks import carrier_inbound

    assert carrier_inbound.main(["--quick", "--calls", "3", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "carrier_inbound.json").read_text())
    assert set(data["median"]) == {"push", "reader task"}
    assert all(x > 0 for runs in data["us_per_message"].values() for x in runs)


class BuggyIn(CarrierIn):
    """A carrier reader whose translation has a bug (not a protocol error)."""

    outputs = (Out("audio"), Out("control"), Out("events"))

    def translate(self, raw: str | bytes) -> Iterable[tuple[str, Frame]]:
        raise RuntimeError(f"bug on {raw!r}")


@pytest.mark.anyio
async def test_push_path_a_bug_in_translate_fails_the_call_with_that_error() -> None:
    peer = PushPeer()
    peer.deliver("hello")
    result = await run_call(reader_graph(BuggyIn(peer), Collect(PORTS)))  # type: ignore[arg-type]
    assert result.reason == "error"
    assert isinstance(result.error.exc, RuntimeError)
    assert "bug on 'hello'" in str(result.error.exc)


# ---------------------------------------------- asyncio: delivered from the socket's callback


class DeepCollect(Collect):
    """A :class:`Collect` with room for ``capacity`` frames per port (no back-pressure)."""

    def __init__(self, ports: list[str], capacity: int) -> None:
        super().__init__(ports)
        self.inputs = tuple(In(p, capacity=capacity) for p in ports)


async def run_reader(cin: CarrierIn, sink: Collect, caller: Callable[[], Any]) -> Any:
    """Run the reader into ``sink`` while ``caller()`` plays the peer; the call's result."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            return await Call(reader_graph(cin, sink)).run()


async def started(peer: PushPeer) -> None:
    """Until the reader took the socket and its pump is idle (everything ready has run)."""
    while peer.on_message is None:
        await anyio.lowlevel.checkpoint()
    await anyio.sleep(0.02)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_on_asyncio_a_message_reaches_the_next_inbox_within_the_sockets_callback() -> None:
    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start())  # type: ignore[arg-type]
    sink = DeepCollect(PORTS, 8)
    queued: list[int] = []

    async def caller() -> None:
        await started(peer)
        peer.deliver(media(1))
        queued.append(sink.inbox.qsize())  # no await since: no task ran in between
        peer.hang_up()

    result = await run_reader(cin, sink, caller)
    assert result.reason == "completed"
    assert queued == [1]  # the pump was not needed to forward it
    assert len(sink.frames("audio")) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_on_asyncio_an_inline_send_that_must_wait_is_finished_by_the_pump_in_order() -> None:
    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start())  # type: ignore[arg-type]
    gate = anyio.Event()
    sink = Collect(PORTS, gate=gate)  # one frame per port: the second send waits

    async def caller() -> None:
        await started(peer)
        for i in range(6):
            peer.deliver(media(i))
        peer.deliver(dtmf("5"))
        peer.deliver(media(6))
        peer.hang_up()
        gate.set()

    result = await run_reader(cin, sink, caller)
    assert result.reason == "completed"
    assert cin.dropped_audio == 0 and cin.discarded == 0
    assert [f.data[:1] for f in sink.frames("audio")] == [bytes([i]) for i in range(7)]
    assert [type(f).__name__ for f in sink.frames("control")] == ["DTMF", "Hangup"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_on_asyncio_callbacks_outside_any_task_and_context_deliver_everything() -> None:
    """picows calls back from the event loop itself, in no task: the inline sends still find
    anyio's backend (every 64th send into an inbox yields) and lose nothing."""
    import asyncio
    import contextvars

    peer = PushPeer()
    cin, _ = twilio_media_nodes(peer, await twilio_start())  # type: ignore[arg-type]
    sink = DeepCollect(PORTS, 1000)
    n = 3 * 64 + 5

    def burst() -> None:
        for i in range(n):
            peer.deliver(media(i))
        peer.hang_up()

    async def caller() -> None:
        await started(peer)
        asyncio.get_running_loop().call_soon(burst, context=contextvars.Context())

    result = await run_reader(cin, sink, caller)
    assert result.reason == "completed", result.error
    assert [f.data[:1] for f in sink.frames("audio")] == [bytes([i % 256]) for i in range(n)]
