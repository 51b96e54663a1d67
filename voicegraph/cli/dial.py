"""``voicegraph dial APP TO [--line NUMBER] [--amd]``: serve the app's runtime, place one call,
print the carrier's reports as they arrive, and exit when the call is over (0 if it completed,
1 if it was busy, unanswered, failed or canceled).

The runtime serves here while the call lasts, since the carrier fetches its webhook when the
callee answers: run it where the runtime's ``public_url`` reaches (``--host``/``--port``)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Any

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", metavar="APP", help="module:attribute of an AgentRuntime (or factory)")
    p.add_argument("to", metavar="TO", help="the number to call, E.164 (e.g. +15551234567)")
    p.add_argument("--line", metavar="NUMBER", help="the line to call from (if several)")
    p.add_argument("--amd", action="store_true", help="detect answering machines")
    p.add_argument("--ring-timeout", type=int, default=30, help="seconds to ring (5..600)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve the runtime on")
    p.add_argument("--port", type=int, default=8000, help="port to serve the runtime on")


def run(args: argparse.Namespace) -> int:
    import anyio

    from ..interface import CallInterfaceError
    from ..server.outbound import DialError, OutboundLimitError
    from . import CommandError, load_runtime

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a port; use 0..65535")
    runtime = load_runtime(args.app)
    try:
        try:
            return anyio.run(partial(_dial, runtime, args), backend=_backend(runtime))
        except BaseExceptionGroup as group:  # the server's task group wraps the dial's error
            while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
                group = group.exceptions[0]
            raise group from None
    except (CallInterfaceError, OutboundLimitError) as exc:
        raise CommandError(str(exc)) from None
    except DialError as exc:
        raise CommandError(str(exc), 1) from None


def _backend(runtime: Any) -> str:
    # the event loop the runtime's server runs on
    return str(getattr(runtime, "backend", "trio"))


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _dial(runtime: Any, args: argparse.Namespace) -> int:
    import threading

    import anyio

    signals = threading.current_thread() is threading.main_thread()
    async with anyio.create_task_group() as tg:
        await tg.start(partial(runtime.serve, args.host, args.port, handle_signals=signals))
        try:
            handle = await runtime.dial(
                args.to, line=args.line, machine_detection=args.amd, ring_timeout=args.ring_timeout
            )
            _say(f"calling {args.to} from {handle.interface.phone_number}: {handle.call_id}")
            shown = 0
            while handle.final is None:
                with anyio.move_on_after(0.25):
                    await handle.outcome()
                for status in handle.statuses[shown:]:
                    extra = f" after {status.duration:g}s" if status.duration else ""
                    _say(
                        f"  {status.status}{extra}"
                        + (f" ({status.reason})" if status.reason else "")
                    )
                shown = len(handle.statuses)
            if handle.answered_by is not None:
                _say(f"  answered by: {handle.answered_by.result}")
        finally:
            runtime.shutdown()
    assert handle.final is not None
    return 0 if handle.final.status == "completed" else 1
