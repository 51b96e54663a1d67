"""Client WebSocket libraries for provider sockets, CPU per message: picows (voicegraph's
default client on asyncio) against ``websockets`` (``engine="websockets"``), on uvloop.

    python -m benchmarks sockets [--messages N] [--rounds R] [--quick]

A peer process (a ``websockets`` server, its CPU not counted) receives 800-byte binary
messages (100 ms of µ-law, as the STT is sent) and sends 400-byte text messages (a
transcript-sized JSON). This process's CPU time per message is measured for each client
through :func:`voicegraph.wsio.connect_websocket` and the :class:`~voicegraph.wsio.MessageSocket`
it returns (``await send``, ``await receive``), so the figure is what a provider node pays.
The clients take turns, ``R`` rounds each against the same peer; the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from .common import table, write_json

AUDIO = b"\xff" * 800
TEXT = json.dumps({"type": "Results", "channel": {"alternatives": [{"transcript": "x" * 300}]}})


async def peer() -> None:
    """The server: ``send N`` -> N text messages then ``done``; binary messages are counted
    and ``count`` answers with how many arrived."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        got = 0
        async for msg in ws:
            if isinstance(msg, bytes):
                got += 1
            elif msg.startswith("send "):
                for _ in range(int(msg[5:])):
                    await ws.send(TEXT)
                await ws.send("done")
            elif msg == "count":
                await ws.send(f"count {got}")

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=1 << 20) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.Future()


async def measure(sock: Any, n: int) -> dict[str, float]:
    """CPU µs per message sent and per message received through ``sock``."""
    t0 = time.process_time()
    for _ in range(n):
        await sock.send(AUDIO)
    await sock.send("count")
    while not str(await sock.receive()).startswith("count"):
        pass
    send_us = 1e6 * (time.process_time() - t0) / n
    t0 = time.process_time()
    await sock.send(f"send {n}")
    while await sock.receive() != "done":
        pass
    recv_us = 1e6 * (time.process_time() - t0) / n
    return {"send_us": send_us, "receive_us": recv_us}


ENGINES = ("picows", "websockets")


async def run(n: int, rounds: int) -> dict[str, Any]:
    """Median send and receive µs per message for each client, over ``rounds`` turns each."""
    from voicegraph.wsio import connect_websocket

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.sockets", "--peer", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        url = f"ws://127.0.0.1:{(await proc.stdout.readline()).decode().split()[1]}/"
        got: dict[str, list[dict[str, float]]] = {engine: [] for engine in ENGINES}
        for _ in range(rounds):
            for engine in ENGINES:  # alternating, so both see the same machine state
                async with connect_websocket(url, engine=engine) as sock:
                    await measure(sock, n // 10)  # warm-up
                    got[engine].append(await measure(sock, n))
        return {
            engine: {
                key: statistics.median(r[key] for r in results) for key in ("send_us", "receive_us")
            }
            for engine, results in got.items()
        }
    finally:
        proc.terminate()
        await proc.wait()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks sockets", description=__doc__)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import uvloop

    if args.peer:
        uvloop.run(peer())
        return 0
    n = 2000 if args.quick else args.messages
    rounds = 1 if args.quick else args.rounds
    res = uvloop.run(run(n, rounds))
    base = res["websockets"]
    rows = [
        [
            name,
            r["send_us"],
            r["receive_us"],
            f"{(r['send_us'] + r['receive_us']) / (base['send_us'] + base['receive_us']):.2f}",
        ]
        for name, r in res.items()
    ]
    print(
        table(
            f"Client WebSocket CPU per message (µs, {n} messages, median of {rounds} rounds)",
            ["client", "send", "receive", "vs websockets"],
            rows,
        )
    )
    path = write_json("sockets", {"messages": n, "rounds": rounds, "clients": res}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
