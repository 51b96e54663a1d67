"""Shared benchmark helpers: percentiles, a table printer, JSON output, machine description."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))
    return s[k]


BACKEND_ENV = "VOICEGRAPH_BENCH_BACKEND"


def backend() -> str:
    """The backend the benchmarks run voicegraph on: ``$VOICEGRAPH_BENCH_BACKEND`` (set by
    ``--backend``), else asyncio, voicegraph's default (on uvloop where installed)."""
    from voicegraph.backends import check_backend

    return check_backend(os.environ.get(BACKEND_ENV, "asyncio"))


def run(fn: Any, *args: Any) -> Any:
    """``anyio.run`` on :func:`backend` (uvloop on asyncio where installed)."""
    from voicegraph.backends import run as run_on

    return run_on(fn, *args, backend=backend())


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "backend": backend(),
    }


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render a plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"\n{title}", line(cells[0]), sep, *(line(r) for r in cells[1:])])


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        if c != c:
            return "n/a"
        return f"{c:,.1f}" if abs(c) >= 100 else f"{c:.2f}"
    if isinstance(c, int):
        return f"{c:,}"
    return str(c)


def write_json(name: str, data: dict[str, Any], out_dir: str | None = None) -> Path:
    """Write ``data`` (plus the machine description) to ``<out_dir>/<name>.json``."""
    path = Path(out_dir or os.environ.get("VOICEGRAPH_BENCH_DIR", "bench-results"))
    path.mkdir(parents=True, exist_ok=True)
    target = path / f"{name}.json"
    target.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2))
    return target


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def quiet_voicegraph(level: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a benchmark's ``main``: the ``voicegraph`` logger is at ``level`` while it
    runs and back at its previous level after (benchmarks also run inside the test suite)."""
    import functools
    import logging

    def wrap(main: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(main)
        def quiet(*args: P.args, **kw: P.kwargs) -> R:
            log = logging.getLogger("voicegraph")
            before = log.level
            log.setLevel(level)
            try:
                return main(*args, **kw)
            finally:
                log.setLevel(before)

        return quiet

    return wrap
