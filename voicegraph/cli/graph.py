"""``voicegraph graph``: print a preset's graph as Mermaid."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .command import CommandError

__all__ = ["configure", "preset_graph", "run"]


def preset_graph(preset: str, carrier: str = "twilio", providers: str = "offline") -> Any:
    """``presets.sketch``: the preset around placeholder carrier nodes, with real provider nodes
    that touch no network until started."""
    from voicegraph import presets
    from voicegraph.graph import GraphError

    try:
        return presets.sketch(preset, carrier, providers)
    except GraphError as exc:
        raise CommandError(str(exc)) from None


def configure(p: argparse.ArgumentParser) -> None:
    """Add ``graph``'s arguments."""
    p.add_argument("--preset", choices=("cascading", "realtime", "managed"), default="cascading")
    p.add_argument("--carrier", choices=("twilio", "plivo"), default="twilio")
    p.add_argument(
        "--providers",
        choices=("offline", "cloud"),
        default="offline",
        help="cascading providers: offline (pocketsphinx, espeak-ng; what make demo runs) or "
        "cloud (Deepgram, Cartesia)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the preset's graph as Mermaid."""
    graph = preset_graph(args.preset, args.carrier, args.providers)
    sys.stdout.write(graph.to_mermaid().rstrip() + "\n")
    return 0
