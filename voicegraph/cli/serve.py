"""``voicegraph serve APP`` and ``voicegraph check APP``: load an app's
:class:`~voicegraph.server.AgentRuntime` (:func:`load_runtime`), then serve it on one or more
workers, or only build it (which runs the start-up preflight) and describe its lines."""

from __future__ import annotations

import argparse
import errno
import importlib
import socket
import sys
from collections.abc import Sequence
from typing import Any

from .command import CommandError

__all__ = [
    "check",
    "configure_check",
    "configure_serve",
    "describe_lines",
    "load_runtime",
    "serve",
    "serve_one",
]


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


def configure_serve(p: argparse.ArgumentParser) -> None:
    """Add ``serve``'s arguments."""
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


def serve(args: argparse.Namespace) -> int:
    """Serve the app until stopped: in this process, or in ``--workers`` processes."""
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a port; use 0..65535")
    if not 1 <= args.workers <= 64:
        raise CommandError(f"--workers {args.workers} must be 1..64")
    runtime = load_runtime(args.app)  # fail fast, once, before forking
    if args.workers == 1:
        try:
            serve_one(args.app, args.host, args.port, args.softphone, runtime, False, args.backend)
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


def serve_one(
    spec: str,
    host: str,
    port: int,
    softphone: bool,
    runtime: Any = None,
    reuse: bool = False,
    backend: str = "asyncio",
) -> None:
    """Serve the app ``spec`` (or the ``runtime`` already loaded from it) in this process until
    stopped, with the softphone if asked; ``reuse``: bind with SO_REUSEPORT, as each of
    several workers does."""
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


def configure_check(p: argparse.ArgumentParser) -> None:
    """Add ``check``'s arguments."""
    p.add_argument("app", metavar="APP", help="module:attribute of an AgentRuntime (or factory)")


def check(args: argparse.Namespace) -> int:
    """Build the app's runtime (the preflight runs, nothing is served) and list its lines."""
    runtime = load_runtime(args.app)  # building the runtime runs the preflight (no network)
    sys.stdout.write(f"{args.app}: configuration ok, {len(runtime.interfaces)} line(s)\n")
    sys.stdout.write("\n".join(describe_lines(runtime)) + "\n")
    return 0
