"""Voice-to-voice latency per pipeline mode, measured where the caller feels it.

A full :class:`~voicegraph.AgentRuntime` serves simulated Twilio callers over loopback, with the
provider fakes (Deepgram, an OpenAI-compatible chat endpoint, Cartesia; or OpenAI Realtime)
configured with vendor-typical latencies. Each caller streams a continuous line (20 ms of
µ-law every 20 ms), says a sentence, waits for the reply, lets it play, and speaks again.

* voice-to-voice: from the end of the caller's speech in the caller's own audio to the first
  agent audio the caller receives (both on the caller's side);
* framework-added = voice-to-voice - the providers' configured critical path
  (cascading: stt_endpointing + stt_latency + llm_ttft + tts_ttfb; realtime:
  realtime_silence + realtime_ttfb), split per hop from the server's timeline marks. It
  includes the fakes' own processing (Python HTTP/WebSocket servers); a bare client's view of
  the same fakes (``fake_floor_ms``) is reported beside it.

Cascading runs once per turn-taking variant, in one run: ``fixed`` (the STT endpoint or the
VAD's stop ends the turn: voicegraph before adaptive turn-taking), ``adaptive`` (adaptive
windows and the early pause, no preemptive reply) and ``preemptive`` (the default: adaptive
plus a reply prepared while the turn is judged). Each variant also plays scripted scenarios
(a hesitation, a trailing conjunction, a pause mid-clause) with one caller, and counts replies
to words the caller had not finished saying: agent audio reaching the caller before the end of
its turn, and user turns in the agent's history that are not a whole scenario.

    python -m benchmarks voice [--quick] [--calls N] [--turns N] [--modes cascading,realtime]
        [--variants fixed,adaptive,preemptive] [--rounds N]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import anyio

from . import _rig as rig
from .common import quiet_voicegraph, run as run_on_backend, table, verdict, write_json

TARGET_P50_MS = 10.0
TARGET_P99_MS = 25.0
TARGET_GAIN_MS = 200.0


VARIANTS: dict[str, Any] = {"fixed": "fixed", "adaptive": "adaptive", "preemptive": None}

SCENARIOS: tuple[tuple[str, tuple[tuple[str, float], ...], float], ...] = (
    # (name, parts as (transcript, seconds of speech), pause between parts)
    ("sentence", (("I would like to book a table for two tonight.", 1.0),), 0.0),
    ("hesitation", (("I would like to book, um", 0.8), ("a table for two tonight.", 0.8)), 0.6),
    ("conjunction", (("A table for two and", 0.7), ("a high chair, please.", 0.7)), 0.6),
    ("mid-clause", (("I would like to book", 0.7), ("a table for two tonight.", 0.8)), 0.4),
)


def _turns(variant: str) -> Any:
    from voicegraph.nodes.conversation.turn_policy import turn_policy

    v = VARIANTS[variant]
    return turn_policy("medium", preemptive=False) if v == "adaptive" else v


async def run_mode(
    mode: rig.Mode,
    lat: rig.Latencies,
    calls: int,
    turns: int,
    speech: float,
    variant: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``calls`` concurrent callers, ``turns`` turns each: one record per answered turn, and
    the fakes' own floor (:func:`~benchmarks._rig.fake_floor`)."""
    from voicegraph.testing.server import serve_runtime

    records: list[dict[str, Any]] = []
    chunks = rig.speech_chunks(speech)
    async with rig.run_fakes(
        mode, lat, turns=calls * turns * 3 + 20, reply=rig.AGENT_SAYS
    ) as fakes:
        floor = await rig.fake_floor(fakes, lat)
        log = rig.ServerLog()
        iface = rig.interface(mode, fakes.urls, lat, _turns(variant) if variant else None)
        runtime = rig.runtime(iface, log.on_call)
        async with serve_runtime(runtime) as url:

            async def one(k: int) -> None:
                await anyio.sleep(0.37 * k)  # stagger, so turns do not line up
                async with rig.caller(url).dial() as call:
                    line = rig.Line(call)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(line.run)
                        await anyio.sleep(0.3)
                        for _ in range(turns):
                            line.say(chunks)
                            await line.wait_spoken()
                            await line.wait_reply()
                            await line.wait_quiet()
                        tg.cancel_scope.cancel()
                    records.extend(
                        rig.turn_records(line, log.marks.get(call.call_sid, []), mode, lat)
                    )

            async with anyio.create_task_group() as tg:
                for k in range(calls):
                    tg.start_soon(one, k)
    return records, floor


async def run_scenarios(lat: rig.Latencies, variant: str, rounds: int) -> dict[str, Any]:
    """One caller plays every scenario ``rounds`` times (cascading, ``variant``): per scenario
    voice-to-voice after the caller's last word, and the replies to unfinished words."""
    from voicegraph.testing.server import serve_runtime

    script = [text for _ in range(rounds) for _, parts, _ in SCENARIOS for text, _ in parts]
    whole = {" ".join(t for t, _ in parts) for _, parts, _ in SCENARIOS}
    out: dict[str, Any] = {name: {"v2v_ms": [], "premature": 0} for name, _, _ in SCENARIOS}
    async with rig.run_fakes(
        "cascading", lat, turns=4 * len(script) + 20, transcripts=script
    ) as fakes:
        log = rig.ServerLog()
        iface = rig.interface("cascading", fakes.urls, lat, _turns(variant))
        async with serve_runtime(rig.runtime(iface, log.on_call)) as url:
            async with rig.caller(url).dial() as call:
                line = rig.Line(call)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(line.run)
                    await anyio.sleep(0.3)
                    for _ in range(rounds):
                        for name, parts, pause in SCENARIOS:
                            first = len(line.speech_ends)
                            for k, (_, seconds) in enumerate(parts):
                                if k:
                                    await anyio.sleep(pause)
                                line.say(rig.speech_chunks(seconds))
                                await line.wait_spoken()
                            await line.wait_reply()
                            await line.wait_quiet()
                            early = [a for a in line.first_audio[first:-1] if a is not None]
                            if early:
                                out[name]["premature"] += 1
                            else:
                                heard = line.first_audio[-1]
                                assert heard is not None  # wait_reply returned: audio came
                                out[name]["v2v_ms"].append(1000 * (heard - line.speech_ends[-1]))
                    tg.cancel_scope.cancel()
                agent = log.calls[call.call_sid].graph["agent"]
                said = [m["content"] for m in agent.history if m.get("role") == "user"]
    result: dict[str, Any] = {
        name: {
            "voice_to_voice_ms": rig.summary(v["v2v_ms"]),
            "premature_replies": v["premature"],
        }
        for name, v in out.items()
    }
    result["unfinished_turns_in_history"] = sum(1 for t in said if t not in whole)
    result["replies_to_unfinished_words"] = (
        sum(v["premature"] for v in out.values()) + result["unfinished_turns_in_history"]
    )
    result["preempted"], result["preempt_used"] = agent.preempted, agent.preempt_used
    return result


def analyse(mode: rig.Mode, recs: list[dict[str, Any]], lat: rig.Latencies) -> dict[str, Any]:
    stages = sorted({s for r in recs for s in r["stages_ms"]}, key=_stage_order)
    hops = [h for h, *_ in (rig.CASCADING_HOPS if mode == "cascading" else rig.REALTIME_HOPS)]
    return {
        "turns": len(recs),
        "critical_path_ms": 1000 * lat.critical_path(mode),
        "critical_path_formula": lat.formula(mode),
        "voice_to_voice_ms": rig.summary([r["voice_to_voice_ms"] for r in recs]),
        "framework_added_ms": rig.summary([r["framework_added_ms"] for r in recs]),
        "framework_added_ms_first_turn": rig.summary(
            [r["framework_added_ms"] for r in recs if r["turn"] == 0]
        ),
        "framework_added_ms_later_turns": rig.summary(
            [r["framework_added_ms"] for r in recs if r["turn"] > 0]
        ),
        "stages_ms": {
            s: rig.summary([r["stages_ms"][s] for r in recs if s in r["stages_ms"]]) for s in stages
        },
        "framework_share_ms": {
            h: rig.summary(
                [r["framework_share_ms"][h] for r in recs if h in r["framework_share_ms"]]
            )
            for h in hops
        },
        "samples": {
            "voice_to_voice_ms": [r["voice_to_voice_ms"] for r in recs],
            "framework_added_ms": [r["framework_added_ms"] for r in recs],
        },
    }


_ORDER = (*rig.SERVER_STAGES, "caller_first_audio")


def _stage_order(s: str) -> int:
    return _ORDER.index(s) if s in _ORDER else len(_ORDER)


@quiet_voicegraph(logging.WARNING)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks voice", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="one call, one turn per mode (smoke)")
    ap.add_argument("--calls", type=int, default=4, help="concurrent callers per mode")
    ap.add_argument("--turns", type=int, default=8, help="turns per caller")
    ap.add_argument("--speech", type=float, default=1.0, help="seconds the caller speaks")
    ap.add_argument("--modes", default="cascading,realtime")
    ap.add_argument(
        "--variants", default="fixed,adaptive,preemptive", help="cascading turn-taking variants"
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the scripted scenarios")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-plot", action="store_true")
    for name, field in _latency_fields():
        ap.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=field, help="seconds (fake)"
        )
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.turns, args.speech, args.rounds = 1, 1, 0.4, 1
    lat = rig.Latencies(**{n: getattr(args, n) for n, _ in _latency_fields()})
    modes: list[rig.Mode] = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("cascading", "realtime"):
            raise SystemExit(f"--modes: {m!r} is not cascading or realtime")
    results: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "latencies_s": {n: getattr(lat, n) for n, _ in _latency_fields()},
        "framework_added_formula": (
            "voice_to_voice (caller's speech end -> first agent audio received, caller side) "
            "- critical path of the fakes' configured latencies"
        ),
        "modes": {},
    }
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"--variants: {v!r} is not one of {', '.join(VARIANTS)}")
    results["turn_taking"] = {}
    for mode in modes:
        if mode == "cascading":
            for v in variants:
                recs, floor = run_on_backend(
                    run_mode, mode, lat, args.calls, args.turns, args.speech, v
                )
                r = analyse(mode, recs, lat)
                r["fake_floor_ms"] = floor
                r["scenarios"] = run_on_backend(run_scenarios, lat, v, args.rounds)
                results["turn_taking"][v] = r
            # Framework-added is voice-to-voice minus the providers' critical path, which holds
            # only for the fixed policy: adaptive and preemptive replies start before the STT's
            # endpoint, so there it would read negative. The variants' gains are in their table.
            base = "fixed" if "fixed" in variants else variants[0]
            results["modes"][mode] = {**results["turn_taking"][base], "turn_taking": base}
            continue
        recs, floor = run_on_backend(run_mode, mode, lat, args.calls, args.turns, args.speech)
        results["modes"][mode] = analyse(mode, recs, lat)
        results["modes"][mode]["fake_floor_ms"] = floor
    _print(results)
    _print_turn_taking(results["turn_taking"])
    fa = {m: r["framework_added_ms"] for m, r in results["modes"].items()}
    targets = {
        f"{m}: framework-added p50 <= {TARGET_P50_MS:g} ms (unloaded)": v["p50"] <= TARGET_P50_MS
        for m, v in fa.items()
    } | {
        f"{m}: framework-added p99 <= {TARGET_P99_MS:g} ms (unloaded)": v["p99"] <= TARGET_P99_MS
        for m, v in fa.items()
    }
    tt = results["turn_taking"]
    if "fixed" in tt and "preemptive" in tt:
        gain = (
            tt["fixed"]["voice_to_voice_ms"]["p50"] - tt["preemptive"]["voice_to_voice_ms"]["p50"]
        )
        targets[f"cascading: median voice-to-voice >= {TARGET_GAIN_MS:g} ms below fixed"] = (
            gain >= TARGET_GAIN_MS
        )
        targets["cascading: no reply to unfinished words (preemptive, scenarios)"] = (
            tt["preemptive"]["scenarios"]["replies_to_unfinished_words"] == 0
        )
    if args.quick:
        print("targets: not judged on a --quick run")
    else:
        for name, ok in targets.items():
            print(f"target {name}: {verdict(ok)}")
    results["targets"] = {} if args.quick else targets
    path = write_json("voice", results, args.out)
    print(f"wrote {path}")
    if not args.no_plot:
        from .plots import voice_plots

        for p in voice_plots(results, path.parent):
            print(f"wrote {p}")
    return 0


def _latency_fields() -> list[tuple[str, float]]:
    d = rig.Latencies()
    return [(n, getattr(d, n)) for n in rig.Latencies.__struct_fields__]


def _print(results: dict[str, Any]) -> None:
    for mode, r in results["modes"].items():
        rows = []
        for s, v in r["stages_ms"].items():
            rows.append([s, v["p50"], v["p95"], v["p99"]])
        for label, key in (
            ("framework-added", "framework_added_ms"),
            ("  first turn of a call", "framework_added_ms_first_turn"),
            ("  later turns", "framework_added_ms_later_turns"),
        ):
            rows.append([label, *(r[key][q] for q in ("p50", "p95", "p99"))])
        print(
            table(
                f"Voice-to-voice, {mode}"
                + (f" ({r['turn_taking']} turn-taking)" if "turn_taking" in r else "")
                + f": ms after the caller's speech end ({r['turns']} turns; "
                f"providers' critical path {r['critical_path_ms']:.0f} ms)",
                ["stage", "p50", "p95", "p99"],
                rows,
            )
        )
        share = [[h, v["p50"], v["p95"], v["p99"]] for h, v in r["framework_share_ms"].items()]
        print(table(f"Framework-added per hop, {mode} (ms)", ["hop", "p50", "p95", "p99"], share))
        floor = r.get("fake_floor_ms") or {}
        if floor:
            parts = ", ".join(f"{k[:-3].upper()} {v:.1f} ms" for k, v in floor.items())
            print(
                f"the fakes' own floor (a bare client, same fakes; included above): {parts}; "
                f"framework-added p50 net of it: "
                f"{r['framework_added_ms']['p50'] - sum(floor.values()):.1f} ms"
            )


def _print_turn_taking(tt: dict[str, Any]) -> None:
    if not tt:
        return
    rows = []
    for v, r in tt.items():
        sc = r["scenarios"]
        rows.append(
            [
                v,
                r["voice_to_voice_ms"]["p50"],
                r["voice_to_voice_ms"]["p95"],
                *(sc[name]["voice_to_voice_ms"]["p50"] for name, _, _ in SCENARIOS),
                sc["replies_to_unfinished_words"],
                f"{sc['preempt_used']}/{sc['preempted']}",
            ]
        )
    print(
        table(
            "Turn-taking variants, cascading (voice-to-voice ms at the caller; scenarios p50)",
            [
                "variant",
                "p50",
                "p95",
                *(name for name, _, _ in SCENARIOS),
                "unfinished replies",
                "preempt used",
            ],
            rows,
        )
    )
