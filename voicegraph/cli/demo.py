"""``voicegraph demo [--softphone]``: the offline demo call, or the demo agent on the browser
softphone."""

from __future__ import annotations

import argparse
import sys

from .command import CommandError

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    """Add ``demo``'s arguments."""
    p.add_argument("--out", default="demo-output", help="directory for call.wav and call.json")
    p.add_argument(
        "--softphone",
        action="store_true",
        help="talk to the demo agent yourself from a browser instead of the scripted caller",
    )
    p.add_argument("--host", default="127.0.0.1", help="with --softphone: address to serve on")
    p.add_argument("--port", type=int, default=8000, help="with --softphone: port to serve on")


def run(args: argparse.Namespace) -> int:
    """Run the demo call (or serve the softphone); returns the exit code."""
    from voicegraph.backends import run
    from voicegraph.demo import DemoError, DemoOptions, run_demo

    if args.softphone:
        return _demo_softphone(args)
    try:
        run(run_demo, DemoOptions(out_dir=args.out), sys.stdout)
    except DemoError as exc:
        raise CommandError(f"demo failed: {exc}", 1) from None
    return 0


def _demo_softphone(args: argparse.Namespace) -> int:
    from voicegraph.demo.run import demo_interface

    try:
        from voicegraph.transports.softphone import enable_softphone
    except ImportError:
        raise CommandError("the browser softphone is not available in this install", 2) from None
    from voicegraph.server import AgentRuntime

    iface = demo_interface()
    runtime = AgentRuntime([iface], public_url=f"http://{args.host}:{args.port}")
    phone = enable_softphone(runtime, iface)
    sys.stdout.write(f"open {phone.page_url(f'http://{args.host}:{args.port}')}\n")
    sys.stdout.write("say: 'I would like to book a table for two'; Ctrl-C to stop\n")
    sys.stdout.flush()
    runtime.run(args.host, args.port)
    return 0
