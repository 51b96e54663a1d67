"""``voicegraph bench NAME``: run the latency benchmarks of a source checkout."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from .command import CommandError

__all__ = ["BENCHMARKS", "configure", "run"]

BENCHMARKS = ("engine", "audio", "voice", "bargein", "concurrency", "memory")


def configure(p: argparse.ArgumentParser) -> None:
    """Add ``bench``'s arguments."""
    p.add_argument("name", choices=(*BENCHMARKS, "all"), help="which benchmark (all: each in turn)")
    p.add_argument("--quick", action="store_true", help="small smoke-sized runs")
    p.add_argument("--out", default=None, help="directory for the JSON and plots (bench-results)")
    p.add_argument(
        "--backend",
        choices=("asyncio", "trio", "both"),
        default="asyncio",
        help="event loop voicegraph runs on in the benchmark (default asyncio; both: asyncio "
        "then Trio)",
    )
    p.add_argument(
        "--source",
        default=None,
        help="voicegraph source checkout holding benchmarks/ (default: the current directory, "
        "then the checkout this package was installed from)",
    )


def _bench_module(source: str | None) -> Any:
    """Import the checkout's ``benchmarks`` package: it lives beside the package in the source
    tree and is not installed, so its directory is put on ``sys.path``."""
    from pathlib import Path

    import voicegraph

    roots = [Path(source)] if source else [Path.cwd(), Path(voicegraph.__file__).parent.parent]
    for root in roots:
        if (root / "benchmarks" / "__main__.py").is_file() and (root / "voicegraph").is_dir():
            sys.path.insert(0, str(root.resolve()))
            return importlib.import_module("benchmarks.__main__")
    where = " or ".join(str(r) for r in roots)
    raise CommandError(
        f"no voicegraph benchmarks/ directory in {where}; the benchmarks ship with the source, "
        "not the wheel: run from a clone of the voicegraph repository or pass --source DIR"
    )


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks in turn; a failing one ends the run."""
    import os

    runner = _bench_module(args.source)
    if args.out:
        os.environ["VOICEGRAPH_BENCH_DIR"] = args.out  # every benchmark's write_json honours it
    os.environ["VOICEGRAPH_BENCH_BACKEND"] = args.backend  # read by every benchmark
    names = BENCHMARKS if args.name == "all" else (args.name,)
    for name in names:
        # each benchmark's finer options: python -m benchmarks NAME --help
        opts = ["--quick"] if args.quick else []
        sys.stdout.write(f"== voicegraph bench {name}\n")
        sys.stdout.flush()
        code = runner.main([name, *opts])
        if code:
            raise CommandError(f"benchmark {name} failed (exit code {code})", 1)
    return 0
