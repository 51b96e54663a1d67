"""Plots written next to a benchmark's JSON (needs matplotlib: the ``bench`` extra).

Each plot is written as SVG and PNG.

* ``voice-waterfall.svg``: per mode, the median turn as a waterfall -- one bar per stage from the
  caller's speech end, split into the providers' configured time and the framework's share;
* ``voice-cdf.svg``: the distribution of voice-to-voice latency per mode;
* ``concurrency.svg``: p99 framework-added latency and CPU per call against concurrent calls.

    python -m benchmarks.plots [--dir bench-results]   (re-draws from the JSON files)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import _rig as rig


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "plots need matplotlib: pip install 'voicegraph[bench]' (or pass --no-plot)"
        ) from None
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.svg`` (for docs) and ``stem.png`` (for quick viewing)."""
    paths = [out_dir / f"{stem}.svg", out_dir / f"{stem}.png"]
    for p in paths:
        fig.savefig(p, dpi=110)
    return paths


def voice_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Waterfall and CDF from ``benchmarks voice`` results; returns the files written."""
    plt = _pyplot()
    modes = results["modes"]
    written = []
    fig, axes = plt.subplots(len(modes), 1, figsize=(9, 1.6 + 1.4 * len(modes) * 2), squeeze=False)
    for ax, (mode, r) in zip(axes[:, 0], modes.items(), strict=True):
        hops = rig.CASCADING_HOPS if mode == "cascading" else rig.REALTIME_HOPS
        lat = results["latencies_s"]
        labels, starts, provider, framework = [], [], [], []
        t = 0.0
        for hop, _stop, _begin, parts in hops:
            share = r["framework_share_ms"].get(hop, {}).get("p50")
            if share is None or share != share:
                continue
            prov = 1000 * sum(lat[p] for p in parts)
            labels.append(hop)
            starts.append(t)
            provider.append(prov)
            framework.append(share)
            t += prov + share
        y = list(range(len(labels)))[::-1]
        ax.barh(y, provider, left=starts, color="#9db4d6", label="provider (configured)")
        ax.barh(
            y,
            framework,
            left=[s + p for s, p in zip(starts, provider, strict=True)],
            color="#d9534f",
            label="framework",
        )
        ax.set_yticks(y, labels)
        ax.set_xlabel("ms after the caller's speech end (median turn)")
        v2v = r["voice_to_voice_ms"]["p50"]
        ax.set_title(f"{mode}: voice-to-voice p50 {v2v:.0f} ms")
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    written += _save(fig, out_dir, "voice-waterfall")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, r in modes.items():
        xs = sorted(r["samples"]["voice_to_voice_ms"])
        if xs:
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=f"{mode} ({len(xs)} turns)")
    ax.set_xlabel("voice-to-voice (ms)")
    ax.set_ylabel("fraction of turns")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written += _save(fig, out_dir, "voice-cdf")
    plt.close(fig)
    return written


def concurrency_plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """p99 framework-added and CPU per call against N, from ``benchmarks concurrency``."""
    plt = _pyplot()
    runs = results["runs"]
    ns = [r["calls"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ns, [r["framework_added_ms"]["p99"] for r in runs], "o-", label="p99 framework-added")
    ax.plot(ns, [r["framework_added_ms"]["p50"] for r in runs], "o--", label="p50 framework-added")
    ax.axhline(results["budget_ms"], color="grey", lw=0.8, ls=":", label="budget")
    ax.set_xlabel("concurrent cascading calls (one server process)")
    ax.set_ylabel("ms")
    ax2 = ax.twinx()
    ax2.plot(
        ns, [r["server_cpu_percent"] for r in runs], "s-", color="#5cb85c", label="server CPU %"
    )
    ax2.set_ylabel("server CPU (% of one core)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize="small", loc="upper left")
    fig.tight_layout()
    written = _save(fig, out_dir, "concurrency")
    plt.close(fig)
    return written


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.plots", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--dir", default="bench-results")
    ap.add_argument("--quick", action="store_true", help="accepted for 'all'; no effect")
    ap.add_argument("--out", default=None, help="accepted for 'all'; same as --dir")
    args, _ = ap.parse_known_args(argv)
    out = Path(args.out or args.dir)
    done = False
    for name, fn in (("voice", voice_plots), ("concurrency", concurrency_plot)):
        src = out / f"{name}.json"
        if src.exists():
            for p in fn(json.loads(src.read_text()), out):
                print(f"wrote {p}")
            done = True
    if not done:
        print(f"no voice.json or concurrency.json in {out}; run those benchmarks first")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
