"""Barge-in reaction: how fast an interruption reaches every part that must stop.

A full cascading server (as in ``benchmarks voice``) answers a simulated Twilio caller with a
long reply, streamed by the fake LLM at ``--tokens-per-second`` so its stream is still open when
the caller interrupts after hearing ``--listen`` seconds. From the caller's speech onset (in the
caller's own audio) and from the VAD's speech-start decision (server's ``barge_in_decision``
mark), it measures when:

* the server sent ``clear`` (playout's ``clear_sent`` mark) and when it reached the caller;
* the TTS ``cancel`` reached the Cartesia fake;
* the LLM stream was closed (the chat fake saw the client leave).

Onset to decision includes the VAD's configured minimum speech (200 ms at "medium"): that is
policy, not reaction time. Target: ``clear`` sent within 20 ms of the VAD's decision.

    python -m benchmarks bargein [--quick] [--interruptions N]
"""

from __future__ import annotations

import argparse
import logging

import anyio

from . import _rig as rig
from .common import quiet_voicegraph, run as run_on_backend, table, verdict, write_json

TARGET_MS = 20.0
LONG_REPLY = (
    "Sure, I can book that table for two people tonight at our place. We have tables at seven, "
    "at half past seven and at eight, and the terrace is open as well. Which one would you like?"
)
EVENTS = ("barge_in_decision", "clear_sent", "clear_at_caller", "tts_cancel", "llm_closed")


def _first_after(times: list[float], t: float, until: float) -> float | None:
    return next((x for x in sorted(times) if t <= x < until), None)


async def run(
    n: int, lat: rig.Latencies, listen: float, speech: float, tps: float
) -> list[dict[str, float | None]]:
    from voicegraph.testing.server import serve_runtime

    chunks = rig.speech_chunks(speech)
    out: list[dict[str, float | None]] = []
    async with rig.run_fakes(
        "cascading", lat, turns=2 * n + 4, reply=LONG_REPLY, tokens_per_second=tps
    ) as fakes:
        log = rig.ServerLog()
        runtime = rig.runtime(rig.interface("cascading", fakes.urls, lat), log.on_call)
        async with serve_runtime(runtime) as url, rig.caller(url).dial() as call:
            line = rig.Line(call)
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.run)
                await anyio.sleep(0.3)
                line.say(chunks)
                for _ in range(n):
                    await line.wait_spoken()
                    await line.wait_reply(timeout=20)
                    await anyio.sleep(listen)
                    line.say(chunks)  # interrupt; this speech is also the next turn
                    await line.wait_spoken()
                    await anyio.sleep(0.5)  # let the cancels land before the next reply
                tg.cancel_scope.cancel()
            marks = log.marks.get(call.call_sid, [])
    cartesia_log = fakes.cartesia_log
    assert cartesia_log is not None  # the cascading fakes keep one
    cancels = [
        t for req, t in zip(cartesia_log, cartesia_log.times, strict=True) if req.kind == "cancel"
    ]
    closed = list(getattr(fakes.chat, "closed_at", []))
    server: dict[str, list[float]] = {}
    for stage, t in marks:
        server.setdefault(stage, []).append(t)
    onsets = line.onsets[1:]  # the first speech is a plain turn, not an interruption
    for i, onset in enumerate(onsets):
        until = onsets[i + 1] if i + 1 < len(onsets) else onset + 10.0
        at = {
            "barge_in_decision": _first_after(server.get("barge_in_decision", []), onset, until),
            "clear_sent": _first_after(server.get("clear_sent", []), onset, until),
            "clear_at_caller": _first_after(line.clears, onset, until),
            "tts_cancel": _first_after(cancels, onset, until),
            "llm_closed": _first_after(closed, onset, until),
        }
        rec: dict[str, float | None] = {}
        decision = at["barge_in_decision"]
        for name, when in at.items():
            rec[f"onset_to_{name}_ms"] = None if when is None else 1000 * (when - onset)
            if name != "barge_in_decision":
                rec[f"decision_to_{name}_ms"] = (
                    None if when is None or decision is None else 1000 * (when - decision)
                )
        out.append(rec)
    return out


@quiet_voicegraph(logging.WARNING)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks bargein", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="two interruptions (smoke)")
    ap.add_argument("--interruptions", type=int, default=12)
    ap.add_argument("--listen", type=float, default=1.0, help="seconds heard before interrupting")
    ap.add_argument("--speech", type=float, default=0.8)
    ap.add_argument("--tokens-per-second", type=float, default=12.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.interruptions, args.listen = 2, 0.6
    if not 1 <= args.interruptions <= 1000:
        raise SystemExit("--interruptions must be 1..1000")
    lat = rig.Latencies()
    recs = run_on_backend(
        run, args.interruptions, lat, args.listen, args.speech, args.tokens_per_second
    )
    keys = [k for k in recs[0]] if recs else []
    summary = {k: rig.summary([r[k] for r in recs if r[k] is not None]) for k in keys}
    missing = {k: sum(1 for r in recs if r[k] is None) for k in keys}
    rows = []
    for name in EVENTS:
        o = summary.get(f"onset_to_{name}_ms")
        d = summary.get(f"decision_to_{name}_ms")
        rows.append(
            [
                name,
                o["p50"] if o else float("nan"),
                o["p99"] if o else float("nan"),
                d["p50"] if d else float("nan"),
                d["p99"] if d else float("nan"),
                missing.get(f"onset_to_{name}_ms", 0),
            ]
        )
    print(
        table(
            f"Barge-in reaction, cascading ({len(recs)} interruptions), ms",
            ["event", "from onset p50", "p99", "from VAD decision p50", "p99", "not seen"],
            rows,
        )
    )
    sent = summary.get("decision_to_clear_sent_ms", {})
    ok = bool(sent) and sent["n"] == len(recs) and sent["p99"] <= TARGET_MS
    targets = {f"clear sent within {TARGET_MS:g} ms of the VAD's decision (p99)": ok}
    if args.quick:
        print("targets: not judged on a --quick run")
    else:
        for name, good in targets.items():
            print(f"target {name}: {verdict(good)}")
    path = write_json(
        "bargein",
        {
            "config": {k: v for k, v in vars(args).items() if k != "out"},
            "latencies_s": {n: getattr(lat, n) for n in rig.Latencies.__struct_fields__},
            "interruptions": len(recs),
            "summary_ms": summary,
            "not_seen": missing,
            "records": recs,
            "targets": {} if args.quick else targets,
        },
        args.out,
    )
    print(f"wrote {path}")
    return 0
