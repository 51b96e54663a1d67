"""The ``voicegraph`` command.

Subcommands live in :data:`COMMANDS`, one :class:`Command` each (a function that adds its
arguments, a function that runs it and returns the exit code), so another subcommand is one
more entry. Errors a user can cause are printed as one sentence that says what to change, with
exit code 2 for bad usage and 1 for a failed run; ``-v`` adds logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["COMMANDS", "Command", "CommandError", "load_runtime", "main", "preset_graph"]


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
    import anyio

    from voicegraph.demo import DemoError, DemoOptions, run_demo

    if args.softphone:
        return _demo_softphone(args)
    try:
        anyio.run(run_demo, DemoOptions(out_dir=args.out), sys.stdout, backend="trio")
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
    try:
        module = importlib.import_module(module_name)
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
        obj = obj()
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


def _serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a port; use 0..65535")
    if not 1 <= args.workers <= 64:
        raise CommandError(f"--workers {args.workers} must be 1..64")
    runtime = load_runtime(args.app)  # fail fast, once, before forking
    if args.workers == 1:
        _serve_one(args.app, args.host, args.port, args.softphone, runtime)
        return 0
    import multiprocessing

    if not hasattr(__import__("socket"), "SO_REUSEPORT"):
        raise CommandError("--workers > 1 needs SO_REUSEPORT (Linux or BSD); use --workers 1")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=_serve_one, args=(args.app, args.host, args.port, args.softphone, None, True)
        )
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.join(60)
    return max((p.exitcode or 0 for p in procs), default=0)


def _serve_one(
    spec: str, host: str, port: int, softphone: bool, runtime: Any = None, reuse: bool = False
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
    if reuse:
        _serve_reuseport(runtime, host, port)
    else:
        runtime.run(host, port)


def _serve_reuseport(runtime: Any, host: str, port: int) -> None:
    """One worker: a socket bound with SO_REUSEPORT, so the kernel spreads connections over the
    workers; calls need no shared state (stream tokens are signed)."""
    import socket
    from functools import partial

    import anyio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("voicegraph.server")
    config.websocket_max_message_size = 64 * 1024
    shutdown = anyio.Event()

    async def main() -> None:
        async def trigger() -> None:
            await shutdown.wait()
            await runtime.drain()

        import signal

        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(serve, runtime.app, config, shutdown_trigger=trigger))
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    shutdown.set()
                    break

    anyio.run(main, backend="trio")


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
    "graph": Command("print a preset's graph as Mermaid", _graph_args, _graph),
    "dial": Command(
        "place a call from an AgentRuntime's line and follow it",
        lambda p: importlib.import_module("voicegraph.dial_cli").configure(p),
        lambda a: importlib.import_module("voicegraph.dial_cli").run(a),  # type: ignore[no-any-return]
    ),
    "bench": Command("run latency benchmarks (from a source checkout)", _bench_args, _bench),
}
"""Subcommand name -> :class:`Command`. Add an entry to add a subcommand."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicegraph", description="Phone voice agents as graphs of actor nodes."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        cmd.configure(sub.add_parser(name, help=cmd.help, description=cmd.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``voicegraph`` command line; returns the exit code."""
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
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
