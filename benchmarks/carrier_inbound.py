"""The carrier inbound path on the media listener's picows socket, per caller message.

    python -m benchmarks carrier_inbound [--calls 20] [--rounds 1500] [--quick]

``--calls`` Twilio Media Streams readers (``TwilioMediaIn``, each on a picows socket whose
transport is a stand-in: no kernel socket, no WebSocket parsing) forward to a counting actor.
Each round hands every socket one 20 ms media message, the way picows's frame callback does,
and lets the loop run once. This process's CPU time per message is measured for both ways
the reader takes a message: pushed from the socket's callback (what the media listener uses)
and through a reader task blocked in ``receive`` (every other socket). The difference is what
the push path saves per caller frame; the absolute figure includes the translation, the
reader's backlog, its forwarding task and one inbox hop.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from typing import Any

import anyio
import anyio.lowlevel

from .common import backend, run, table, write_json

SID = "MZ" + "0" * 32
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


def media(i: int) -> str:
    body = {"track": "inbound", "chunk": str(i), "timestamp": str(i * 20)}
    body["payload"] = base64.b64encode(bytes([i % 256]) * 160).decode()
    return json.dumps({"event": "media", "sequenceNumber": str(i), "streamSid": SID, "media": body})


class StandInTransport:
    """What the picows socket uses of its transport; it sends nowhere."""

    def __init__(self) -> None:
        self.underlying_transport = self
        self.is_close_frame_sent = False

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def send(self, *args: Any) -> None:
        pass

    def send_close(self, *args: Any) -> None:
        self.is_close_frame_sent = True

    def disconnect(self, graceful: bool = True) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Pull:
    """The same socket without its push interface: the reader then runs a reader task."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    async def send(self, message: str | bytes) -> None:
        await self.sock.send(message)

    async def receive(self) -> str | bytes:
        return await self.sock.receive()  # type: ignore[no-any-return]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.sock.close(code, reason)


async def measure(path: str, calls: int, rounds: int) -> float:
    """CPU µs per message with ``calls`` readers taking ``rounds`` messages each."""
    from voicegraph import Actor, Call, Frame, Graph, In
    from voicegraph.server._media_picows import PicowsSocket
    from voicegraph.testing.memsocket import socket_pair
    from voicegraph.transports import accept_twilio_media, twilio_media_nodes

    class Count(Actor):
        inputs = (In("audio"), In("control"), In("events"))

        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        async def handle(self, port: str, frame: Frame) -> None:
            self.n += 1

    server, client = socket_pair()
    await client.send(json.dumps(START))
    start = await accept_twilio_media(server)
    socks: list[tuple[Any, StandInTransport]] = []
    graphs, counts = [], []
    for _ in range(calls):
        transport, sock = StandInTransport(), PicowsSocket(1 << 16)
        sock.on_ws_connected(transport)  # type: ignore[arg-type]
        cin, _ = twilio_media_nodes(sock if path == "push" else Pull(sock), start)
        count, graph = Count(), Graph("inbound")
        graph.add("carrier_in", cin)
        graph.add("count", count)
        for port in ("audio", "control", "events"):
            graph.connect(f"carrier_in.{port}", f"count.{port}")
        socks.append((sock, transport))
        graphs.append(graph)
        counts.append(count)
    messages = [media(i) for i in range(64)]
    async with anyio.create_task_group() as tg:
        for graph in graphs:
            tg.start_soon(Call(graph).run)
        for _ in range(20):  # every call started and waiting
            await anyio.lowlevel.checkpoint()
        began = time.process_time()
        for k in range(rounds):
            message = messages[k % 64]
            for sock, _ in socks:
                sock._push(message)  # what picows's frame callback does with a whole message
            await anyio.lowlevel.checkpoint()
        spent = time.process_time() - began
        for sock, transport in socks:
            sock.on_ws_disconnected(transport)
    if any(c.n < rounds for c in counts):
        raise RuntimeError("a reader lost messages; the measurement is void")
    return spent / (rounds * calls) * 1e6


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks carrier_inbound", description=__doc__)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=3, help="runs per path, alternated; median")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if backend() != "asyncio":
        print("carrier_inbound: picows runs on asyncio only", file=sys.stderr)
        return 0
    rounds, repeat = (100, 1) if args.quick else (args.rounds, args.repeat)
    runs: dict[str, list[float]] = {"push": [], "reader task": []}
    for _ in range(repeat):
        runs["push"].append(run(measure, "push", args.calls, rounds))
        runs["reader task"].append(run(measure, "pull", args.calls, rounds))
    median = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
    rows = [[k, median[k], " ".join(f"{x:.2f}" for x in v)] for k, v in runs.items()]
    print(
        table(
            f"Carrier inbound CPU per caller message (µs; {args.calls} calls x {rounds} rounds)",
            ["path", "median", "runs"],
            rows,
        )
    )
    data = {"calls": args.calls, "rounds": rounds, "us_per_message": runs, "median": median}
    path = write_json("carrier_inbound", data, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
