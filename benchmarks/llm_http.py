"""The chat LLM's HTTP clients, per streamed reply: aiohttp (voicegraph's default on asyncio)
against httpx (``engine="httpx"``, and always on Trio), through ``OpenAIChatLLM`` on uvloop.

    python -m benchmarks llm_http [--requests N] [--rounds R] [--quick]

A loopback server in this process answers each ``POST /chat/completions`` with a chunked
server-sent-events reply (the chat fake's events: role, a chunk per token, finish, usage,
``[DONE]``) as the real service sends it; it
parses nothing but the request's end, so nearly all the CPU measured is the client's. For each
client, ``R`` rounds of ``N`` sequential replies (clients alternate between rounds; the median
round is reported):

* ``cpu_us``: this process's CPU per reply, from ``stream()`` to its last event;
* ``first_event_us``: wall time from ``stream()`` to the first text delta (an idle loop);
* ``loop_turns``: how many times the event loop ran its ready callbacks between ``stream()``
  and the request's arrival at the server. Under load each turn waits for every call's ready
  work, so this is the figure that multiplies with load;
* ``connections``: connections opened during a round, after the warm-up had opened one (0: every
  reply reused the pooled connection).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from typing import Any

from .common import table, write_json

ENGINES = ("aiohttp", "httpx")


def _sse() -> bytes:
    """The chat fake's events for one reply (usage included, as ``OpenAIChatLLM`` asks), one
    HTTP chunk per event, as a streaming server writes them."""
    from voicegraph.testing._chat_protocol import (
        ChatReply,
        ChatRequest,
        _sse_chunks,
        _StreamOptions,
    )

    req = ChatRequest(model="gpt-4o-mini", stream=True, stream_options=_StreamOptions(True))
    events = _sse_chunks(req, ChatReply(text="Sure, for what time?"), itertools.count(1))
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + _sse()
)


class _Server(asyncio.Protocol):
    """Answers every request whose body (``content-length``) is complete with :data:`REPLY`."""

    arrivals: list[int] = []
    connections = 0

    def connection_made(self, transport: Any) -> None:
        type(self).connections += 1
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, rest = self.buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buf = rest[length:]
            _Server.arrivals.append(_turns[0])
            self.transport.write(REPLY)


_turns = [0]
_counting = [False]


def _count_turns() -> None:
    """Count event-loop turns: a callback that schedules itself runs once per turn."""
    if _counting[0]:
        _turns[0] += 1
        asyncio.get_running_loop().call_soon(_count_turns)


async def _round(llm: Any, n: int) -> dict[str, float]:
    from voicegraph.llm import TextDelta

    messages = [{"role": "user", "content": "Can I book a table?"}]
    cpu0 = time.process_time()
    firsts = []
    for _ in range(n):
        t0 = time.perf_counter()
        first = None
        async for ev in llm.stream(messages):
            if first is None and isinstance(ev, TextDelta) and ev.text:
                first = time.perf_counter() - t0
        firsts.append(first or 0.0)
    cpu = time.process_time() - cpu0
    return {"cpu_us": 1e6 * cpu / n, "first_event_us": 1e6 * statistics.median(firsts)}


async def _turns_to_server(llm: Any, samples: int = 5) -> float:
    """Median loop turns from ``stream()`` to the request's arrival (turns counted only here:
    the counting callback keeps the loop busy, so it is off while CPU is measured)."""
    messages = [{"role": "user", "content": "Can I book a table?"}]
    _counting[0] = True
    _count_turns()
    out = []
    try:
        for _ in range(samples):
            _Server.arrivals.clear()
            start = _turns[0]
            async for _ev in llm.stream(messages):
                pass
            out.append(_Server.arrivals[0] - start)
    finally:
        _counting[0] = False
    return float(statistics.median(out))


async def run(n: int, rounds: int) -> dict[str, Any]:
    from voicegraph.nodes.llm import OpenAIChatLLM

    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    res: dict[str, dict[str, list[float]]] = {e: {} for e in ENGINES}
    conns: dict[str, int] = {}
    turns: dict[str, float] = {}
    try:
        llms = {e: OpenAIChatLLM(api_key="bench-key", base_url=base, engine=e) for e in ENGINES}
        for e, llm in llms.items():  # warm-up: imports, the first connection
            _Server.connections = 0
            await _round(llm, 5)
            turns[e] = await _turns_to_server(llm)
        for _ in range(rounds):
            for e, llm in llms.items():
                before = _Server.connections
                r = await _round(llm, n)
                conns[e] = max(conns.get(e, 0), _Server.connections - before)
                for k, v in r.items():
                    res[e].setdefault(k, []).append(v)
        for llm in llms.values():
            await llm.aclose()
    finally:
        server.close()
    return {
        e: {
            **{k: statistics.median(v) for k, v in res[e].items()},
            "loop_turns": turns[e],
            "connections": conns[e],
        }
        for e in ENGINES
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks llm_http", description=__doc__)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="40 requests, 1 round (smoke)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    n, rounds = (40, 1) if args.quick else (args.requests, args.rounds)
    try:
        import uvloop
    except ImportError:
        res = asyncio.run(run(n, rounds))
    else:
        res = uvloop.run(run(n, rounds))
    rows = [
        [
            e,
            f"{r['cpu_us']:.0f}",
            f"{r['first_event_us']:.0f}",
            f"{r['loop_turns']:g}",
            f"{r['connections']}",
        ]
        for e, r in res.items()
    ]
    print(
        table(
            f"chat LLM HTTP clients, {n} streamed replies per round, median of {rounds} round(s)",
            [
                "client",
                "CPU µs / reply",
                "first event µs",
                "loop turns to server",
                "new connections",
            ],
            rows,
        )
    )
    path = write_json("llm_http", {"requests": n, "rounds": rounds, "clients": res}, args.out)
    print(f"wrote {path}")
    return 0
