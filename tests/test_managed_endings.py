"""Managed mode (ConversationRelay) never ends a call in silence: when the agent fails, and at
the drain deadline, the caller is sent the apology or goodbye as text (Twilio speaks it), the
runtime waits a bounded time for it to be said, then hangs up through the REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from voicegraph import AgentRuntime, CallInterface
from voicegraph.server.goodbye import MANAGED_APOLOGY, SHUTDOWN_GOODBYE
from voicegraph.testing import FakeCarrierREST, RelayCaller
from voicegraph.testing.server import serve_runtime

pytestmark = pytest.mark.anyio

SID = "AC" + "0" * 32
TOKEN = "relay-endings-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"


class BrokenAgent:
    """An agent whose model fails every turn."""

    async def respond(self, turn: Any) -> AsyncIterator[str]:
        raise RuntimeError("model unavailable")
        yield ""  # an async generator, like every agent


class SilentAgent:
    """An agent still thinking when the drain deadline comes."""

    async def respond(self, turn: Any) -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield ""


def line(agent: Any, rest: FakeCarrierREST) -> CallInterface:
    return CallInterface(
        "twilio",
        NUMBER,
        account_sid=SID,
        auth_token=TOKEN,
        pipeline="managed",
        agent=agent,
        greeting=None,
        api_base_url=rest.base_url,
    )


async def test_a_failing_agent_ends_a_managed_call_with_a_spoken_apology_then_a_hang_up() -> None:
    replies_at_hangup: list[list[str]] = []
    async with FakeCarrierREST("twilio", SID, TOKEN) as rest:
        runtime = AgentRuntime([line(BrokenAgent(), rest)], public_url=PUBLIC)
        async with serve_runtime(runtime) as url:
            caller = RelayCaller(url, TOKEN, to=NUMBER, public_url=PUBLIC)
            async with caller.dial() as call:
                rest.on_hangup = lambda _sid: replies_at_hangup.append(list(call.replies))
                await call.say("hello?")  # the first failed turn: the turn's own "sorry"
                await call.wait_for_reply()
                await call.say("are you there?")  # the second: the agent gives up
                assert await rest.wait_for_hangup(call.call_sid, timeout=20)
    assert replies_at_hangup and replies_at_hangup[0][-1] == MANAGED_APOLOGY


async def test_a_managed_call_left_at_the_drain_deadline_hears_the_goodbye_then_a_hang_up() -> None:
    replies_at_hangup: list[list[str]] = []
    async with FakeCarrierREST("twilio", SID, TOKEN) as rest:
        runtime = AgentRuntime([line(SilentAgent(), rest)], public_url=PUBLIC, drain_timeout=0.1)
        async with serve_runtime(runtime) as url:
            caller = RelayCaller(url, TOKEN, to=NUMBER, public_url=PUBLIC)
            async with caller.dial() as call:
                rest.on_hangup = lambda _sid: replies_at_hangup.append(list(call.replies))
                await call.say("can I book a table?")
                with anyio.fail_after(20):
                    while not runtime.calls:  # noqa: ASYNC110 - no event for it
                        await anyio.sleep(0.01)
                runtime.shutdown()
                assert await rest.wait_for_hangup(call.call_sid, timeout=20)
    assert replies_at_hangup and replies_at_hangup[0][-1] == SHUTDOWN_GOODBYE
