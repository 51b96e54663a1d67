"""Outbound calls end to end, per carrier: dial through the fake REST API, which rings a
simulated callee and dials the runtime's webhook; status callbacks come back signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from e2ekit import PUBLIC, TOKEN, interface, speech

from voicegraph import AgentRuntime, CallStatus
from voicegraph.testing.fake_dial import Callee
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.server import serve_runtime

CALLEE = "+15557654321"
ACCOUNTS = {"twilio": "AC" + "0" * 32, "plivo": "MA" + "X" * 18}


class Closer:
    """Answers the first turn with a goodbye and ends the call."""

    def __init__(self) -> None:
        self.turns: list[Any] = []

    async def respond(self, turn: Any) -> AsyncIterator[str]:
        self.turns.append(turn)
        turn.call.end_call()
        yield "Thanks, we will see you on Monday. Goodbye."


@asynccontextmanager
async def outbound_line(
    carrier: str, callee: Callee, **iface_kw: Any
) -> AsyncIterator[tuple[AgentRuntime, FakeCarrierREST, list[Any], list[CallStatus]]]:
    """A cascading line on fake Deepgram and Cartesia, served, with the fake carrier REST API
    ringing ``callee``. Yields the runtime, the fake, the accepted calls and the statuses."""
    from voicegraph.nodes import CartesiaTTS, DeepgramSTT

    from voicegraph.testing.fake_cartesia import FakeCartesia
    from voicegraph.testing.fake_deepgram import FakeDeepgram

    enc, rate = ("mulaw", 8000) if carrier == "twilio" else ("pcm16", 16000)
    dg, tts = FakeDeepgram(["yes I will be there"]), FakeCartesia(realtime=4.0)
    async with dg, tts, FakeCarrierREST(carrier, ACCOUNTS[carrier], TOKEN, callee=callee) as rest:
        kw: dict[str, Any] = {
            "pipeline": "cascading",
            "agent": Closer,
            "greeting": "Hello, this is Acme calling about your appointment.",
            "stt": lambda: DeepgramSTT(
                api_key=dg.api_key, base_url=dg.url, encoding=enc, sample_rate=rate
            ),
            "tts": lambda: CartesiaTTS(
                api_key=tts.api_key, base_url=tts.url, encoding=enc, sample_rate=rate
            ),
            "api_base_url": rest.base_url,
            **iface_kw,
        }
        iface = interface(carrier, **kw)
        seen: list[Any] = []
        statuses: list[CallStatus] = []
        runtime = AgentRuntime(
            [iface], public_url=PUBLIC, on_call=lambda *a: seen.append(a), on_status=statuses.append
        )
        async with serve_runtime(runtime) as url:
            rest.reach = url
            yield runtime, rest, seen, statuses


def _rate(carrier: str) -> int:
    return 8000 if carrier == "twilio" else 16000


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_a_person_hears_the_greeting_answers_and_the_call_completes(carrier: str) -> None:
    rate = _rate(carrier)

    async def person(call: Any) -> None:
        await call.wait_for_audio(1.0, timeout=10)  # the greeting
        await call.send_silence(0.5)
        await call.send_audio(speech("yes I will be there", rate), sample_rate=rate)
        while not call.closed:
            await call.send_silence(0.2)

    async with outbound_line(carrier, Callee.person(person)) as (runtime, rest, seen, statuses):
        handle = await runtime.dial(CALLEE)
        final = await handle.outcome(timeout=30)
        placed = rest.placed[0]
    assert not rest.errors
    assert final.status == "completed" and final.duration is not None and final.duration >= 1
    assert [s.status for s in handle.statuses][-2:] == ["answered", "completed"]
    assert statuses[-1] == final  # the on_status hook saw it too
    assert handle.call_id == placed.call_id
    agent = seen[0][0].graph["agent"].agent
    assert [t.text for t in agent.turns] == ["yes I will be there"]
    assert placed.call.heard_seconds > 2.0  # greeting and goodbye
    assert rest.hangups == [placed.call_id]  # the agent hung up after its goodbye
    assert all(code == 204 for _, _, code in placed.posted)  # every report was accepted


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
@pytest.mark.parametrize("kind", ["busy", "no-answer"])
async def test_a_call_that_never_connects_is_reported_on_the_handle(
    carrier: str, kind: str
) -> None:
    async with outbound_line(carrier, Callee(kind)) as (runtime, rest, seen, statuses):  # type: ignore[arg-type]
        handle = await runtime.dial(CALLEE)
        final = await handle.outcome(timeout=10)
    assert final.status == kind and final.duration == 0
    assert handle.final is final and statuses[-1] == final
    assert not seen  # no graph ran
    assert runtime.registry.in_flight() == 0
