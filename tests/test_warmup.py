"""A serving runtime has already imported what its calls use: the first call imports nothing
of the server's inside the event loop (where each import stalls every live call)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import anyio
import pytest

from benchmarks import _rig as rig
from voicegraph.testing import serve_runtime

pytestmark = pytest.mark.anyio

# the caller's side of the test (the simulated carrier) imports these itself
CALLER_SIDE = ("voicegraph.testing", "xml", "_elementtree", "pyexpat", "wave", "stringprep")


async def test_the_first_call_imports_nothing_the_server_needs() -> None:
    lat = rig.Latencies.zero()
    speech = b"".join(rig.speech_chunks(1.0))
    async with rig.run_fakes("cascading", lat) as fakes:
        runtime = rig.runtime(rig.interface("cascading", fakes.urls, lat, "fixed"))
        async with serve_runtime(runtime) as url:
            import voicegraph.testing.twilio_caller  # noqa: F401  (the caller's own)

            before = set(sys.modules)
            with anyio.fail_after(30):
                await rig.dial_through(url, rig.SILENCE * 5 + speech + rig.SILENCE * 40)
            late = sorted(m for m in set(sys.modules) - before if not m.startswith(CALLER_SIDE))
    assert late == []


def test_warm_imports_what_calls_import_lazily() -> None:
    # a fresh interpreter: the test process has imported everything long ago
    script = textwrap.dedent(
        """
        import json, sys, anyio
        from benchmarks import _rig as rig
        from voicegraph.server.warmup import warm, warm_modules

        urls = {"deepgram": "ws://127.0.0.1:9", "chat": "http://127.0.0.1:9/v1",
                "cartesia": "ws://127.0.0.1:9"}
        runtime = rig.runtime(rig.interface("cascading", urls, rig.Latencies()))

        async def main():
            names = warm_modules(runtime)
            cold = [n for n in names if n in sys.modules]
            warm(runtime)
            from voicegraph import wsio
            from voicegraph.nodes.llm import openai_chat
            print(json.dumps({"names": names, "cold": cold,
                              "missing": [n for n in names if n not in sys.modules],
                              "tls": [len(wsio._tls), len(openai_chat._tls)]}))

        anyio.run(main)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["missing"] == []
    assert got["tls"] == [1, 1]  # both CA bundles loaded before any call needs them
    # before warm() none of the heavy ones was loaded: building the runtime keeps them lazy
    assert {"quart", "httpcore", "voicegraph._picows"} <= set(got["names"]) - set(got["cold"])
