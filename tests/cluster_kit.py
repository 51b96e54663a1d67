"""Real ``voicegraph serve`` processes sharing one real Redis, for the multi-instance tests.

Each instance serves docs/deploy.md's ``app.py`` (taken from the page, so the documented module
is the tested one) with a ``lines.py`` holding one Twilio line on the echo graph (a placed call with machine
detection waits for its verdict, and a machine is hung up on: the carrier's report is visible
on the call).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from redis_kit import free_port

DOCS = Path(__file__).resolve().parent.parent / "docs"
TOKEN = "cluster-auth-token-0123456789abcdef"
SID = "AC" + "0" * 32
NUMBER = "+14155550199"
PUBLIC = "https://agent.example.com"
CONTROL = "control-token-0123456789abcdef"

LINES = f'''
import os

from voicegraph import CallInterface
from voicegraph.nodes.conversation.amd import AnsweringMachine
from voicegraph.testing.server import echo_graph


def graph(session):
    g = echo_graph(session)
    if session.params.get("dial") == "amd":  # placed with machine detection
        g.add("answering", AnsweringMachine(session.audio_format, voicemail=None))
        g.edges = [e for e in g.edges if (e.src, e.src_port) != ("carrier_in", "audio")]
        g.connect("carrier_in.audio", "answering.audio")
        g.connect("answering.audio", "echo.audio")
        g.connect("answering.hangup", "carrier_out.in")
    return g

LINES = [
    CallInterface(
        "twilio",
        "{NUMBER}",
        account_sid="{SID}",
        auth_token="{TOKEN}",
        graph=graph,
        api_base_url=os.environ["TEST_CARRIER_API"],  # loopback: never a real carrier
    )
]
'''


def documented_app() -> str:
    """The first Python block of docs/deploy.md: the deployment's app module."""
    text = (DOCS / "deploy.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]


class Instance:
    """One ``voicegraph serve app:runtime`` process on 127.0.0.1 (one machine of a cluster)."""

    def __init__(self, workdir: Path, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "voicegraph.cli", "-v", "serve", "app:runtime"]
                + ["--host", "127.0.0.1", "--port", str(self.port)],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"instance not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_instances(workdir: Path, redis_url: str, n: int, max_calls: int) -> list[Instance]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "app.py").write_text(documented_app())
    (workdir / "lines.py").write_text(LINES)
    env = {
        **os.environ,
        "PUBLIC_URL": PUBLIC,
        "VOICEGRAPH_STATE": redis_url,
        "VOICEGRAPH_MAX_CALLS": str(max_calls),
        "VOICEGRAPH_CONTROL_TOKEN": CONTROL,
        "VOICEGRAPH_DRAIN_TIMEOUT": "2",
        "TEST_CARRIER_API": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    env.pop("PYTHONPATH", None)
    instances = [Instance(workdir, f"instance-{chr(97 + i)}", env) for i in range(n)]
    try:
        for inst in instances:
            inst.wait_ready()
    except BaseException:
        for inst in instances:
            inst.stop()
        raise
    return instances
