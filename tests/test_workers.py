"""``voicegraph serve --workers N`` with real processes on loopback: a SIGTERM or SIGINT to the
parent reaches every worker, each drains (a live call keeps going), and the parent exits once
they are all done."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import httpx
import msgspec
import psutil
import pytest

from voicegraph.testing import TwilioCaller

TOKEN = "t" * 32
APP = """
from voicegraph import AgentRuntime, CallInterface
from voicegraph.testing import echo_graph

line = CallInterface(
    "twilio", "+14155550199", account_sid="AC" + "0" * 32, auth_token="t" * 32, graph=echo_graph
)
runtime = AgentRuntime([line], public_url="http://127.0.0.1", drain_timeout=20)
"""


async def wait_serving(base: str) -> None:
    """Until a worker answers (an unsigned webhook: 403)."""
    with anyio.fail_after(60):
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.post(base + "/call/incoming")).status_code == 403:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.2)


@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_to_the_parent_drains_every_worker_then_the_parent_exits(
    tmp_path: Path, signum: signal.Signals
) -> None:
    (tmp_path / "workers_app.py").write_text(APP)
    cmd = [sys.executable, "-m", "voicegraph.cli", "-v", "serve", "workers_app:runtime"]
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        parent = await anyio.open_process(
            [*cmd, "--host", "127.0.0.1", "--port", "0", "--workers", "2"],
            cwd=tmp_path,
            stderr=err,
        )
    try:
        assert parent.stdout is not None
        line = b""
        with anyio.fail_after(60):
            while not line.endswith(b"\n"):
                line += await parent.stdout.receive(1)
        base = line.split()[2].decode()  # "serving on http://127.0.0.1:PORT with 2 workers"
        children = psutil.Process(parent.pid).children()  # workers + multiprocessing's tracker
        workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        assert len(workers) == 2
        await wait_serving(base)
        caller = TwilioCaller(base, TOKEN, public_url="http://127.0.0.1")
        async with caller.dial() as call:
            await call.send_audio(b"\x10" * 800)
            await call.wait_for_audio(0.1, timeout=10)
            parent.send_signal(signum)
            # the call's worker drains: the live call still echoes
            await call.send_audio(b"\x10" * 800)
            await call.wait_for_audio(0.2, timeout=10)
        with anyio.fail_after(60):
            code = await parent.wait()
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        await parent.aclose()
    stderr = log.read_text()
    assert code == 0, stderr
    assert stderr.count("draining:") == 2, stderr  # each worker drained once
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.anyio
async def test_workers_log_in_the_format_and_at_the_level_the_command_line_asked(
    tmp_path: Path,
) -> None:
    (tmp_path / "workers_app.py").write_text(APP)
    cmd = [sys.executable, "-m", "voicegraph.cli", "--log-format", "json", "serve"]
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        parent = await anyio.open_process(
            [*cmd, "workers_app:runtime", "-v", "--port", "0", "--workers", "2"],
            cwd=tmp_path,
            stderr=err,
        )
    try:
        assert parent.stdout is not None
        line = b""
        with anyio.fail_after(60):
            while not line.endswith(b"\n"):
                line += await parent.stdout.receive(1)
        await wait_serving(line.split()[2].decode())
        parent.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            code = await parent.wait()
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        await parent.aclose()
    stderr = log.read_text()
    assert code == 0, stderr
    records = [msgspec.json.decode(x) for x in stderr.splitlines() if x.strip()]  # all JSON
    messages = [r["message"] for r in records if r["logger"] == "voicegraph.server"]
    # INFO records (-v) from each worker: its address at start, its drain at the end
    assert sum(m.startswith("serving on") for m in messages) == 2, stderr
    assert sum(m.startswith("draining:") for m in messages) == 2, stderr
