"""Text mode speed: a five-turn conversation with two tool calls, against the fake chat model.

The agent is a real :class:`~voicegraph.Agent` with the real OpenAI chat client, talking HTTP
to :class:`~voicegraph.testing.FakeChatCompletions` on loopback (seven model requests: five
turns, two of them with a tool round). Target: a whole conversation in under 0.5 s.

    python -m benchmarks textmode [--runs N] [--backend asyncio|trio] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .common import backend, percentile, table, verdict, write_json

TARGET_SECONDS = 0.5


def _script() -> tuple[Any, list[Any]]:
    from voicegraph.testing import ChatReply, Scenario, ScriptedToolCall

    def call(name: str, args: str) -> ChatReply:
        return ChatReply(tool_calls=(ScriptedToolCall(name, args),))

    replies = [
        "Hello! Luigi's, how can I help?",
        call("check_table", '{"party": 2, "time": "19:00"}'),
        "We have a table for two at seven.",
        "It's by the window.",
        call("book_table", '{"party": 2, "time": "19:00"}'),
        "Booked. See you at seven!",
        "Goodbye!",
    ]
    script = (
        Scenario("five turns, two tools")
        .say("hi there")
        .say(
            "is there a table for two at seven?",
            expect=lambda r: r.assert_tool_called("check_table"),
        )
        .say("where is it?")
        .say("book it please", expect=lambda r: r.assert_tool_called("book_table", party=2))
        .say("thanks, bye")
    )
    return script, replies


def _agent(llm: Any) -> Any:
    from voicegraph import Agent, tool

    @tool
    def check_table(party: int, time: str) -> dict[str, Any]:
        """Whether a table is free.

        Args:
            party: Number of people.
            time: Time, HH:MM.
        """
        return {"free": True, "where": "window"}

    @tool
    def book_table(party: int, time: str) -> dict[str, Any]:
        """Book a table.

        Args:
            party: Number of people.
            time: Time, HH:MM.
        """
        return {"booked": True}

    return Agent("You take bookings for Luigi's.", llm, tools=[check_table, book_table])


async def run(runs: int) -> list[dict[str, Any]]:
    """``runs`` conversations (plus one warm-up); seconds and turns of each."""
    from voicegraph.testing import FakeChatCompletions

    script, replies = _script()
    out = []
    for i in range(runs + 1):
        async with FakeChatCompletions(replies) as fake:
            llm = fake.llm()
            agent = _agent(llm)
            start = time.perf_counter()
            result = await script.run_text(agent)
            seconds = time.perf_counter() - start
            await llm.aclose()
        if not result.passed:
            raise RuntimeError("the benchmark conversation failed:\n" + result.report())
        if i:  # the first run warms imports and the HTTP stack
            tools = sum(len(t.reply.tool_calls) for t in result.turns if t.reply)
            out.append({"seconds": seconds, "turns": len(result.turns), "tool_calls": tools})
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks textmode", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default=None,
        help="default: voicegraph's default, asyncio (or $VOICEGRAPH_BENCH_BACKEND)",
    )
    ap.add_argument("--quick", action="store_true", help="3 runs (smoke run)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.runs = 3
    if not 1 <= args.runs <= 1000:
        ap.error("--runs must be between 1 and 1000")
    from voicegraph.backends import run as run_on

    args.backend = args.backend or backend()
    runs = run_on(run, args.runs, backend=args.backend)
    secs = sorted(r["seconds"] for r in runs)
    median, p95 = percentile(secs, 50), percentile(secs, 95)
    ok = median < TARGET_SECONDS
    print(
        table(
            f"Text mode: {runs[0]['turns']} turns, {runs[0]['tool_calls']} tool calls, fake chat "
            f"model over loopback HTTP ({args.backend}, {len(runs)} runs)",
            ["median s", "p95 s", "fastest s", f"target < {TARGET_SECONDS} s"],
            [[round(median, 4), round(p95, 4), round(secs[0], 4), verdict(ok)]],
        )
    )
    path = write_json(
        "textmode",
        {"config": vars(args), "runs": runs, "median_s": median, "p95_s": p95, "met": ok},
        args.out,
    )
    print(f"wrote {path}")
    return 0
