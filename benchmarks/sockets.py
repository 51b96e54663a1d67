"""Client WebSocket libraries for provider sockets, per message: ``websockets`` (voicegraph's
asyncio client) against picows, on uvloop.

    python -m benchmarks sockets [--messages N] [--quick]

A peer process (a ``websockets`` server, its CPU not counted) receives 800-byte binary
messages (100 ms of µ-law, as the STT is sent) and sends 400-byte text messages (a
transcript-sized JSON). This process's CPU time per message is measured for each client,
through the same :class:`~voicegraph.wsio.MessageSocket` shape (``await send``,
``await receive``), so the figure includes what an adapter would cost. picows is optional
(``pip install picows``); without it only ``websockets`` is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


class PicowsSocket:
    """A MessageSocket over a picows client connection (evaluation only; whole messages,
    no fragmentation)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.transport: Any = None

    @classmethod
    async def connect(cls, url: str) -> PicowsSocket:
        from picows import WSListener, WSMsgType, ws_connect

        sock = cls()
        put = sock.queue.put_nowait

        class Listener(WSListener):  # type: ignore[misc]
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == WSMsgType.TEXT:
                    put(frame.get_payload_as_utf8_text())
                elif frame.msg_type == WSMsgType.BINARY:
                    put(frame.get_payload_as_bytes())

        sock.transport, _ = await ws_connect(Listener, url)
        return sock

    async def send(self, message: str | bytes) -> None:
        from picows import WSMsgType

        if isinstance(message, str):
            self.transport.send(WSMsgType.TEXT, message.encode())
        else:
            self.transport.send(WSMsgType.BINARY, message)

    async def receive(self) -> str | bytes:
        return await self.queue.get()

    async def close(self) -> None:
        self.transport.send_close()
        self.transport.disconnect()


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


async def run(n: int) -> dict[str, Any]:
    from voicegraph.wsio import connect_websocket

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.sockets", "--peer", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        url = f"ws://127.0.0.1:{(await proc.stdout.readline()).decode().split()[1]}/"
        out: dict[str, Any] = {}
        async with connect_websocket(url) as sock:
            await measure(sock, n // 10)  # warm-up
            out["websockets"] = await measure(sock, n)
        try:
            pico = await PicowsSocket.connect(url)
        except ImportError:
            out["picows"] = None
        else:
            await measure(pico, n // 10)
            out["picows"] = await measure(pico, n)
            await pico.close()
        return out
    finally:
        proc.terminate()
        await proc.wait()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks sockets", description=__doc__)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import uvloop

    if args.peer:
        uvloop.run(peer())
        return 0
    n = 2000 if args.quick else args.messages
    res = uvloop.run(run(n))
    rows = [
        [name, r["send_us"], r["receive_us"]] if r else [name, "not installed", ""]
        for name, r in res.items()
    ]
    print(
        table(
            f"Client WebSocket CPU per message (µs, {n} messages)",
            ["library", "send", "receive"],
            rows,
        )
    )
    path = write_json("sockets", {"messages": n, "clients": res}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
