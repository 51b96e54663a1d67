"""The ``voicegraph`` command.

Subcommands live in :data:`COMMANDS`, one :class:`Command` each (a function that adds its
arguments, a function that runs it and returns the exit code), so another subcommand is one
more entry. Errors a user can cause are printed as one sentence that says what to change, with
exit code 2 for bad usage and 1 for a failed run; ``-v`` adds logging.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMMANDS",
    "Command",
    "CommandError",
    "describe_lines",
    "load_runtime",
    "main",
    "preset_graph",
]


class CommandError(Exception):
    """A user-fixable problem; the message is printed as is. ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure(parser)`` adds its arguments, ``run(args)`` returns the exit
    code (or raises :class:`CommandError`)."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------------------- demo


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-output", help="directory for call.wav and call.json")
    p.add_argument(
        "--softphone",
        action="store_true",
        help="talk to the demo agent yourself from a browser instead of the scripted caller",
    )
    p.add_argument("--host", default="127.0.0.1", help="with --softphone: address to serve on")
    p.add_argument("--port", type=int, default=8000, help="with --softphone: port to serve on")


def _demo(args: argparse.Namespace) -> int:
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


# ------------------------------------------------------------------------------ serve


def load_runtime(spec: str) -> Any:
    """Import ``module:attribute`` and return the :class:`~voicegraph.server.AgentRuntime` it
    names (the attribute may also be a zero-argument factory returning one)."""
    from voicegraph.server import AgentRuntime

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(f"APP {spec!r} must look like 'module:attribute', e.g. 'myapp:runtime'")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like uvicorn/hypercorn: the current directory is importable
    from voicegraph.interface import CallInterfaceError

    try:
        module = importlib.import_module(module_name)
    except CallInterfaceError as exc:  # raised while the app built its lines: say it plainly
        raise CommandError(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CommandError(
                f"no module named {module_name!r}; run from the directory that contains it "
                "or install it"
            ) from None
        raise
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}; check APP")
        obj = getattr(obj, part)
    if not isinstance(obj, AgentRuntime) and callable(obj) and _no_required_args(obj):
        try:
            obj = obj()
        except CallInterfaceError as exc:
            raise CommandError(str(exc)) from None
    if not isinstance(obj, AgentRuntime):
        raise CommandError(
            f"{spec} is a {type(obj).__name__}, not an AgentRuntime; point APP at an "
            "AgentRuntime or a function returning one"
        )
    return obj


def _no_required_args(fn: Any) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(
        p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params
    )


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", metavar="APP", help="module:attribute of an AgentRuntime (or factory)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port to bind")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes, each serving on the same port (Linux SO_REUSEPORT)",
    )
    p.add_argument("--softphone", action="store_true", help="also serve the browser softphone")
    p.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop: asyncio (default; uvloop where installed) or trio",
    )


def _serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a port; use 0..65535")
    if not 1 <= args.workers <= 64:
        raise CommandError(f"--workers {args.workers} must be 1..64")
    runtime = load_runtime(args.app)  # fail fast, once, before forking
    if args.workers == 1:
        try:
            _serve_one(args.app, args.host, args.port, args.softphone, runtime, False, args.backend)
        except (OSError, BaseExceptionGroup) as exc:
            raise CommandError(_bind_error(exc, args.host, args.port), 1) from None
        return 0
    if not hasattr(__import__("socket"), "SO_REUSEPORT"):
        raise CommandError("--workers > 1 needs SO_REUSEPORT (Linux or BSD); use --workers 1")
    from voicegraph.server.workers import serve_workers

    return serve_workers(
        args.app,
        args.host,
        args.port,
        args.workers,
        softphone=args.softphone,
        backend=args.backend,
        log_format=args.log_format,
    )


def _bind_error(exc: BaseException, host: str, port: int) -> str:
    """One sentence for a listener that could not start (the server wraps it in groups)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve --host {host!r} ({exc.strerror}); use an address such as 127.0.0.1"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use; stop what uses it or pass another --port"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host!r} is not an address of this machine; use 127.0.0.1 or 0.0.0.0"
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}; use a port above 1023"
    if isinstance(exc, OSError):
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    raise exc  # not a listener problem: a real bug, keep its traceback


def _banner(binds: Sequence[str], runtime: Any) -> None:
    sys.stdout.write(f"voicegraph: serving on {', '.join(binds)} (Ctrl-C to stop)\n")
    sys.stdout.write("\n".join(describe_lines(runtime)) + "\n")
    sys.stdout.flush()


def _serve_one(
    spec: str,
    host: str,
    port: int,
    softphone: bool,
    runtime: Any = None,
    reuse: bool = False,
    backend: str = "asyncio",
) -> None:
    runtime = runtime if runtime is not None else load_runtime(spec)
    if softphone:
        from voicegraph.transports.softphone import enable_softphone

        iface = next((i for i in runtime.interfaces if i.pipeline != "managed"), None)
        if iface is None:
            raise CommandError("--softphone needs an interface with pipeline cascading or realtime")
        phone = enable_softphone(runtime, iface)
        sys.stdout.write(f"softphone: {phone.page_url(f'http://{host}:{port}')}\n")
        sys.stdout.flush()
    # With reuse (several workers), each binds the port with SO_REUSEPORT, so the kernel spreads
    # connections over the workers; calls need no shared state (stream tokens are signed).
    runtime.run(
        host,
        port,
        backend=backend,
        reuse_port=reuse,
        on_ready=lambda binds: _banner(binds, runtime),
    )


def describe_lines(runtime: Any) -> list[str]:
    """One line of text per served phone line: number, carrier, mode and webhook path."""
    return [
        f"  {i.phone_number}  {i.telephony}  {i.pipeline}  webhook {i.webhook_path}"
        for i in runtime.interfaces
    ]


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", metavar="APP", help="module:attribute of an AgentRuntime (or factory)")


def _check(args: argparse.Namespace) -> int:
    runtime = load_runtime(args.app)  # building the runtime runs the preflight (no network)
    sys.stdout.write(f"{args.app}: configuration ok, {len(runtime.interfaces)} line(s)\n")
    sys.stdout.write("\n".join(describe_lines(runtime)) + "\n")
    return 0


# ------------------------------------------------------------------------------ graph


def preset_graph(preset: str, carrier: str = "twilio", providers: str = "offline") -> Any:
    """``presets.sketch``: the preset around placeholder carrier nodes, with real provider nodes
    that touch no network until started."""
    from voicegraph import presets
    from voicegraph.graph import GraphError

    try:
        return presets.sketch(preset, carrier, providers)
    except GraphError as exc:
        raise CommandError(str(exc)) from None


def _graph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=("cascading", "realtime", "managed"), default="cascading")
    p.add_argument("--carrier", choices=("twilio", "plivo"), default="twilio")
    p.add_argument(
        "--providers",
        choices=("offline", "cloud"),
        default="offline",
        help="cascading providers: offline (pocketsphinx, espeak-ng; what make demo runs) or "
        "cloud (Deepgram, Cartesia)",
    )


def _graph(args: argparse.Namespace) -> int:
    graph = preset_graph(args.preset, args.carrier, args.providers)
    sys.stdout.write(graph.to_mermaid().rstrip() + "\n")
    return 0


# ------------------------------------------------------------------------------ bench

BENCHMARKS = ("engine", "audio", "voice", "bargein", "concurrency", "memory")


def _bench_args(p: argparse.ArgumentParser) -> None:
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


def _bench(args: argparse.Namespace) -> int:
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


COMMANDS: dict[str, Command] = {
    "demo": Command("run a whole phone call offline and record it", _demo_args, _demo),
    "serve": Command("serve an AgentRuntime (module:attribute)", _serve_args, _serve),
    "check": Command("check an app's configuration without serving", _check_args, _check),
    "graph": Command("print a preset's graph as Mermaid", _graph_args, _graph),
    "dial": Command(
        "place a call from an AgentRuntime's line and follow it",
        lambda p: importlib.import_module("voicegraph.dial_cli").configure(p),
        lambda a: importlib.import_module("voicegraph.dial_cli").run(a),
    ),
    "bench": Command("run latency benchmarks (from a source checkout)", _bench_args, _bench),
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
        from .observability.logjson import configure_json_logging

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


if __name__ == "__main__":
    sys.exit(main())
