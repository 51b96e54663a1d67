"""A load process of the concurrency benchmark: some of the N simulated Twilio callers.

    python -m benchmarks._load CONFIG_JSON

``CONFIG_JSON``: ``{"url", "ks", "n", "turns", "speech", "desync", "cpus", "phases"}``
(``ks``: the indexes of this process's callers among all ``n``, which set their ramp-up slots;
``cpus``: the cores to pin to, or none; ``phases``: slots of the callers' 20 ms clock, see
:mod:`benchmarks._lean_clock`). The callers are :mod:`benchmarks._lean_caller`'s: they share
one 20 ms clock and read the server's messages in callbacks. This process runs on asyncio (on
uvloop where installed) whatever backend the server is measured on: picows, which keeps the
callers lean, is asyncio only.

Lines on stdout and stdin, one word each, keep the processes of one N in step:

* ``CONNECTED`` (out): every caller of this process is on the line (or failed);
* ``GO`` (in): every process is connected: start the turns;
* ``FIRST`` (out): the first caller here finished its turns; ``DONE`` (out): all of them;
* ``HANGUP`` (in): hang up; then ``RESULT <json>`` (out): per call, the caller-side times
  (``speech_ends``, ``first_audio``), the failures, and how late the callers' clock ran
  between ``GO`` and ``DONE`` (``clock_late_ms``: p50, p99, max).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from typing import Any

from . import _rig as rig
from ._lean_caller import CallEnded, LeanCall, payloads
from ._lean_clock import PHASES, Clock
from ._lean_dialer import LeanDialer


def say(word: str) -> None:
    print(word, flush=True)


class _Count:
    """Callers that reached a point; ``event`` is set once all ``total`` did."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.event = total, 0, asyncio.Event()

    def add(self) -> None:
        self.n += 1
        if self.n >= self.total:
            self.event.set()


async def main(cfg: dict[str, Any]) -> None:
    from voicegraph.server import GcPolicy

    # no full garbage collection mid-run (a process lives for one N): its pause would be
    # counted as the server's latency
    GcPolicy().start()
    ks, n, turns = cfg["ks"], cfg["n"], cfg["turns"]
    speech = payloads(rig.speech_chunks(cfg["speech"]))
    ramp = min(4.0, 0.03 * n)
    connected, finished = _Count(len(ks)), _Count(len(ks))
    go, hang_up = asyncio.Event(), asyncio.Event()
    calls: dict[str, LeanCall] = {}
    failures: list[str] = []
    clock = Clock(cfg.get("phases", PHASES))

    def finish() -> None:
        if finished.n == 0:
            say("FIRST")
        finished.add()

    async def one(dialer: LeanDialer, k: int) -> None:
        await asyncio.sleep(ramp * k / n)
        call: LeanCall | None = None
        done = False
        try:
            call = await dialer.dial()
            calls[call.call_sid] = call
            connected.add()
            await go.wait()
            await asyncio.sleep(random.uniform(0, cfg["desync"]))  # spread the turns
            for _ in range(turns):
                call.say(speech)
                await call.wait_spoken()
                await call.wait_reply(timeout=20)
                await call.wait_quiet(timeout=30)
            done = True
            finish()
            await hang_up.wait()
        except CallEnded as exc:
            if not done:  # the line stays up until HANGUP; a close after the turns is a race
                failures.append(rig.describe(exc))
        except Exception as exc:
            failures.append(rig.describe(exc))
        finally:
            if call is not None:
                await call.hangup()
        if not done:
            if call is None:  # never on the line
                connected.add()
            finish()

    async def commands() -> None:
        while True:
            word = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if word == "GO":
                clock.recording = True
                go.set()
            elif word in ("HANGUP", ""):  # "": the parent is gone
                hang_up.set()
                go.set()
                return

    clock.start()
    reader = asyncio.create_task(commands())
    try:
        async with LeanDialer(
            cfg["url"],
            rig.AUTH_TOKEN,
            clock,
            account_sid=rig.ACCOUNT_SID,
            to=rig.PHONE,
            public_url="http://127.0.0.1",
        ) as dialer:
            async with asyncio.TaskGroup() as tg:
                for k in ks:
                    tg.create_task(one(dialer, k))
                await connected.event.wait()
                say("CONNECTED")
                await finished.event.wait()
                clock.recording = False
                say("DONE")
        await reader
    finally:
        clock.stop()
        reader.cancel()
    result = {
        "lines": {
            sid: {"speech_ends": c.speech_ends, "first_audio": c.first_audio}
            for sid, c in calls.items()
        },
        "failures": failures,
        "clock_late_ms": clock.lateness(),
    }
    say("RESULT " + json.dumps(result))


def entry(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    logging.getLogger("voicegraph").setLevel(logging.ERROR)
    cfg = json.loads(argv[0])
    if cfg.get("cpus"):
        os.sched_setaffinity(0, cfg["cpus"])
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(cfg))
    else:
        uvloop.run(main(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
