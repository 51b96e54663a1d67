"""A load process of the concurrency benchmark: some of the N simulated Twilio callers.

    python -m benchmarks._load CONFIG_JSON

``CONFIG_JSON``: ``{"url", "ks", "n", "turns", "speech", "desync", "cpus"}`` (``ks``: the
indexes of this process's callers among all ``n``, which set their ramp-up slots; ``cpus``:
the cores to pin to, or none). The callers share one 20 ms metronome (no timer per caller).
Lines on stdout and stdin, one word each, keep the processes of one N in step:

* ``CONNECTED`` (out): every caller of this process is on the line (or failed);
* ``GO`` (in): every process is connected: start the turns;
* ``FIRST`` (out): the first caller here finished its turns; ``DONE`` (out): all of them;
* ``HANGUP`` (in): hang up; then ``RESULT <json>`` (out): per call, the caller-side times
  (``speech_ends``, ``first_audio``) and the failures.
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

import anyio

from . import _rig as rig
from .common import run as run_on_backend


class Metronome:
    """One 20 ms clock for every caller of the process: ``wait`` returns at the next tick."""

    def __init__(self) -> None:
        self._tick = anyio.Event()

    async def run(self) -> None:
        due = anyio.current_time()
        while True:
            due += rig.CHUNK
            await anyio.sleep_until(due)
            tick, self._tick = self._tick, anyio.Event()
            tick.set()

    async def wait(self) -> None:
        await self._tick.wait()


def say(word: str) -> None:
    print(word, flush=True)


async def main(cfg: dict[str, Any]) -> None:
    from voicegraph.wsio import SocketClosed

    url, ks, n, turns = cfg["url"], cfg["ks"], cfg["n"], cfg["turns"]
    chunks = rig.speech_chunks(cfg["speech"])
    ramp = min(4.0, 0.03 * n)
    counts = {"connected": 0, "finished": 0}
    all_connected, go, hang_up, all_done = (
        anyio.Event(),
        anyio.Event(),
        anyio.Event(),
        anyio.Event(),
    )
    lines: dict[str, rig.Line] = {}
    failures: list[str] = []
    first = [False]
    metronome = Metronome()

    def arrived(key: str, event: anyio.Event) -> None:
        counts[key] += 1
        if counts[key] == len(ks):
            event.set()

    def finished() -> None:
        if not first[0]:
            first[0] = True
            say("FIRST")
        arrived("finished", all_done)

    async def one(k: int) -> None:
        await anyio.sleep(ramp * k / n)
        done = counted = False
        try:
            async with rig.caller(url).dial() as call:
                line = lines[call.call_sid] = rig.Line(call)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(line.run, metronome)
                    arrived("connected", all_connected)
                    counted = True
                    await go.wait()
                    await anyio.sleep(random.uniform(0, cfg["desync"]))  # spread the turns
                    for _ in range(turns):
                        line.say(chunks)
                        await line.wait_spoken()
                        await line.wait_reply(timeout=20)
                        await line.wait_quiet(timeout=30)
                    done = True
                    finished()
                    await hang_up.wait()
                    tg.cancel_scope.cancel()
        except* SocketClosed as group:
            if not done:  # a hang-up race after the turns is the kit's, not a failed call
                failures.append(rig.describe(group))
        except* Exception as group:
            failures.append(rig.describe(group))
        if not done:
            if not counted:
                arrived("connected", all_connected)
            finished()

    async def commands() -> None:
        while True:
            word = (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()
            if word == "GO":
                go.set()
            elif word in ("HANGUP", ""):  # "": the parent is gone
                hang_up.set()
                go.set()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(metronome.run)
        tg.start_soon(commands)
        async with anyio.create_task_group() as calls:
            for k in ks:
                calls.start_soon(one, k)
            await all_connected.wait()
            say("CONNECTED")
            await all_done.wait()
            say("DONE")
        tg.cancel_scope.cancel()
    result = {
        "lines": {
            sid: {"speech_ends": line.speech_ends, "first_audio": line.first_audio}
            for sid, line in lines.items()
        },
        "failures": failures,
    }
    say("RESULT " + json.dumps(result))


def entry(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    logging.getLogger("voicegraph").setLevel(logging.ERROR)
    cfg = json.loads(argv[0])
    if cfg.get("cpus"):
        os.sched_setaffinity(0, cfg["cpus"])
    run_on_backend(main, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
