"""Processes of the concurrency benchmark: the server process (``benchmarks._server``), its
``/bench/stats``, the load processes' line protocol, and CPU accounting by pid."""

from __future__ import annotations

import json
import os
import signal
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

__all__ = [
    "ROOT",
    "LoadProc",
    "cpu_by_pid",
    "get_stats",
    "server_process",
    "wait_idle",
]

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def server_process(config: dict[str, Any], py_spy: str | None = None) -> Any:
    """Start ``benchmarks._server`` in a child process; yields its base URL. With ``py_spy``
    (a file), py-spy samples the server from outside until the process ends (raw output:
    one folded stack and its count per line)."""
    cmd = [sys.executable, "-m", "benchmarks._server", json.dumps(config)]
    async with await anyio.open_process(cmd, cwd=ROOT, stderr=None) as proc:
        spy = None
        try:
            buf = b""
            with anyio.fail_after(30):
                while b"\n" not in buf:
                    chunk = await proc.stdout.receive()  # type: ignore[union-attr]
                    buf += chunk
            line = buf.split(b"\n", 1)[0].decode()
            if not line.startswith("URL "):
                raise RuntimeError(f"server process said {line!r}, not its URL")
            if py_spy:
                spy = await anyio.open_process(
                    [
                        *_py_spy(),
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--output",
                        py_spy,
                        "--nonblocking",
                    ],
                    stdout=None,
                    stderr=None,
                )
            yield line[4:]
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                with anyio.move_on_after(30):
                    await spy.wait()
            proc.terminate()
            with anyio.move_on_after(20):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _py_spy() -> list[str]:
    exe = Path(sys.executable).with_name("py-spy")
    return [str(exe)] if exe.exists() else ["py-spy"]  # pip install py-spy (bench extra)


async def get_stats(client: Any, url: str, gc: bool = False, query: str = "") -> dict[str, Any]:
    """The server process's ``/bench/stats`` (see ``benchmarks._server``)."""
    query = "&".join(q for q in ("gc=1" if gc else "", query) if q)
    resp = await client.get(f"{url}/bench/stats" + (f"?{query}" if query else ""))
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


class LoadProc:
    """A load process: its pid and a line reader over its stdout."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._buf = b""

    async def line(self) -> str:
        while b"\n" not in self._buf:
            try:
                self._buf += await self.proc.stdout.receive()
            except anyio.EndOfStream:
                raise RuntimeError(f"load process {self.pid} ended early") from None
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    async def expect(self, word: str) -> str:
        line = await self.line()
        if not line.startswith(word):
            raise RuntimeError(f"load process {self.pid} said {line[:200]!r}, not {word}")
        return line[len(word) :].strip()

    async def tell(self, word: str) -> None:
        await self.proc.stdin.send(word.encode() + b"\n")


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of the processes ``pids`` so far (a process that is
    gone counts 0)."""
    import psutil  # the bench extra

    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            out[pid] = 0.0
            continue
        out[pid] = t.user + t.system
    return out


def steal_by_cpu(stat: str | None = None) -> dict[int, float]:
    """Seconds each CPU of this virtual machine has been kept waiting by the hypervisor so far
    (``steal`` in ``/proc/stat``; ``stat``: that file's text); empty where the system does not
    say (not Linux)."""
    if stat is None:
        try:
            with open("/proc/stat") as f:
                stat = f.read()
        except OSError:
            return {}
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for line in stat.splitlines():
        parts = line.split()
        if len(parts) > 8 and parts[0].startswith("cpu") and parts[0][3:].isdigit():
            out[int(parts[0][3:])] = int(parts[8]) / hz
    return out


async def wait_idle(client: Any, url: str) -> None:
    """Wait until the server has no call left (the previous N's must be gone first)."""
    with anyio.fail_after(60):
        for _ in range(300):
            if not (await get_stats(client, url))["active_calls"]:
                return
            await anyio.sleep(0.2)
