"""The ``voicegraph`` command.

Subcommands live in :data:`COMMANDS`, one :class:`Command` each (a function that adds its
arguments, a function that runs it and returns the exit code), so another subcommand is one
more entry. Each lives in a module named for it: :mod:`.serve` (``serve``, ``check``),
:mod:`.demo`, :mod:`.graph`, :mod:`.bench`, and :mod:`.dial`. Errors a
user can cause are printed as one sentence that says what to change, with exit code 2 for bad
usage and 1 for a failed run; ``-v`` adds logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import bench, demo, graph, serve
from .command import Command, CommandError
from .graph import preset_graph
from .serve import describe_lines, load_runtime

__all__ = [
    "COMMANDS",
    "Command",
    "CommandError",
    "describe_lines",
    "load_runtime",
    "main",
    "preset_graph",
]

COMMANDS: dict[str, Command] = {
    "demo": Command("run a whole phone call offline and record it", demo.configure, demo.run),
    "serve": Command(
        "serve an AgentRuntime (module:attribute)", serve.configure_serve, serve.serve
    ),
    "check": Command(
        "check an app's configuration without serving", serve.configure_check, serve.check
    ),
    "graph": Command("print a preset's graph as Mermaid", graph.configure, graph.run),
    "dial": Command(
        "place a call from an AgentRuntime's line and follow it",
        lambda p: importlib.import_module("voicegraph.cli.dial").configure(p),
        lambda a: importlib.import_module("voicegraph.cli.dial").run(a),
    ),
    "bench": Command("run latency benchmarks (from a source checkout)", bench.configure, bench.run),
}
"""Subcommand name -> :class:`Command`. Add an entry to add a subcommand."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicegraph", description="Phone voice agents as graphs of actor nodes."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per log line, with call id, line and node",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        # -v works after the subcommand too; SUPPRESS keeps a -v given before it
        p.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more"
        )
        cmd.configure(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``voicegraph`` command line; returns the exit code."""
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    if args.log_format == "json":
        from ..observability.logjson import configure_json_logging

        configure_json_logging(level)
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose == 0:
        # the server's own start-up chatter is not news on a terminal
        logging.getLogger("voicegraph.server").setLevel(logging.ERROR)
    try:
        return COMMANDS[args.command].run(args)
    except CommandError as exc:
        sys.stderr.write(f"voicegraph {args.command}: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
