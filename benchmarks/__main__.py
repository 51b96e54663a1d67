"""Dispatch ``python -m benchmarks NAME [args]`` to ``benchmarks/NAME.py:main(args)``."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if not m.name.startswith("_") and m.name not in ("common", "plots")
    )


# Benchmarks that run both backends themselves and compare them in one report.
COMPARES_BACKENDS = ("concurrency",)


def both(names: list[str], rest: list[str]) -> int:
    """``--backend both``: each benchmark on asyncio then on Trio, from one command (the
    concurrency benchmark does both itself and prints the comparison)."""
    for n in names:
        if n not in available():
            print(f"unknown benchmark {n!r}", file=sys.stderr)
            return 2
        module = importlib.import_module(f"benchmarks.{n}")
        for backend in ("both",) if n in COMPARES_BACKENDS else ("asyncio", "trio"):
            os.environ["VOICEGRAPH_BENCH_BACKEND"] = backend
            code = module.main(rest)
            if code:
                return int(code)
    os.environ["VOICEGRAPH_BENCH_BACKEND"] = "both"
    return 0


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m benchmarks NAME [options]   (NAME: " + ", ".join(names) + ", all)")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if "--backend" in rest:  # every benchmark: which event loop voicegraph runs on
        i = rest.index("--backend")
        if i + 1 >= len(rest) or rest[i + 1] not in ("asyncio", "trio", "both"):
            print("--backend takes asyncio, trio or both", file=sys.stderr)
            return 2
        os.environ["VOICEGRAPH_BENCH_BACKEND"] = rest[i + 1]
        rest = rest[:i] + rest[i + 2 :]
    if os.environ.get("VOICEGRAPH_BENCH_BACKEND") == "both":
        return both(names if name == "all" else [name], rest)
    if name == "all":
        for n in names:
            code = importlib.import_module(f"benchmarks.{n}").main(rest)
            if code:
                return int(code)
        return 0
    if name not in names:
        print(f"unknown benchmark {name!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"benchmarks.{name}").main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
