"""voicegraph.testing works under anyio's pytest plugin (asyncio and Trio) and under
pytest-asyncio: the same simulated call against a served runtime passes under each."""

from __future__ import annotations

import pytest
from enginekit import BOTH_BACKENDS

from voicegraph import AgentRuntime, CallInterface
from voicegraph.testing import TwilioCaller, echo_graph, serve_runtime

TOKEN = "twilio-test-token"


async def echo_call() -> float:
    """Serve an echo agent, call it, speak 0.2 s; returns how much came back."""
    iface = CallInterface(
        "twilio",
        "+15551234567",
        account_sid="AC" + "0" * 32,
        auth_token=TOKEN,
        graph=echo_graph,
    )
    runtime = AgentRuntime([iface], public_url="http://127.0.0.1", drain_timeout=5)
    async with serve_runtime(runtime) as url:
        caller = TwilioCaller(url, TOKEN, to="+15551234567", public_url="http://127.0.0.1")
        async with caller.dial() as call:
            await call.send_audio(b"\x10" * 1600)
            await call.wait_for_audio(0.2, timeout=10)
    return call.heard_seconds


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", BOTH_BACKENDS)
async def test_the_kit_runs_under_anyios_plugin_on_either_backend() -> None:
    assert await echo_call() >= 0.2


@pytest.mark.asyncio
async def test_the_kit_runs_under_pytest_asyncio() -> None:
    assert await echo_call() >= 0.2
