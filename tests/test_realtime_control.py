"""Realtime mode keeps cascading's promises, end to end on Twilio and Plivo through the fakes:
end_call and transfer_call, the max-duration goodbye, interruptible="none", false
interruptions (a cough) and reconnects that keep the conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
import pytest
from e2ekit import TOKEN, interface, served, speech

from voicegraph import Agent, PlayedPosition
from voicegraph.nodes.realtime import OpenAIRealtime
from voicegraph.testing.fake_openai_realtime import FakeOpenAIRealtime, RealtimeReply
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.plivo_caller import PlivoCaller
from voicegraph.testing.twilio_caller import TwilioCaller

CARRIERS = ["twilio", "plivo"]
ACCOUNT = {"twilio": "AC" + "0" * 32, "plivo": "MA" + "X" * 18}
LONG = (
    "We have a lovely terrace, a quiet room at the back, and a long table by the window that "
    "seats up to twelve people, and tonight the chef is cooking a seven course tasting menu."
)
SAY = "Say exactly this, nothing else: "


def echo_say(heard: str) -> str:
    """A scripted reply that says what a ``Say`` asked for (and nothing to noise)."""
    return heard.removeprefix(SAY) if heard.startswith(SAY) else ""


def call_id(carrier: str, call: Any) -> str:
    return call.call_sid if carrier == "twilio" else call.call_uuid


@asynccontextmanager
async def realtime_call(
    carrier: str, fake: FakeOpenAIRealtime, rest: FakeCarrierREST | None = None, **kw: Any
) -> AsyncIterator[tuple[Any, list[Any]]]:
    """One realtime call on ``carrier`` against ``fake``; yields the simulated call and the
    runtime's ``(call, session, timeline)`` list."""
    template = OpenAIRealtime(api_key="test-key", base_url=fake.url)
    extra = {"api_base_url": rest.base_url} if rest is not None else {}
    iface = interface(
        carrier, pipeline="realtime", realtime=template, agent=Agent("x"), **extra, **kw
    )
    async with served(iface) as (url, seen):
        if rest is not None:
            rest.runtime_url = url
        if carrier == "twilio":
            caller: Any = TwilioCaller(url, TOKEN, public_url="http://127.0.0.1")
        else:
            caller = PlivoCaller(url, TOKEN, public_url="http://127.0.0.1", to="14155550199")
        async with caller.dial() as call:
            yield call, seen


def rate(carrier: str) -> int:
    return 8000 if carrier == "twilio" else 16000


async def talk_until(call: Any, done: Any, timeout: float = 20) -> None:
    """Send silence until ``done()`` (or the server ends the call)."""
    with anyio.fail_after(timeout):
        while not done() and not call.closed:
            await call.send_silence(0.2)  # ends early and quietly if the server hangs up


def played(events: list[Any], utterance: int) -> list[PlayedPosition]:
    return [e for e in events if isinstance(e, PlayedPosition) and e.utterance_id == utterance]


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_realtime_end_call_says_goodbye_then_hangs_up(carrier: str) -> None:
    fake = FakeOpenAIRealtime(
        transcripts=["that is all, bye"],
        replies=[
            RealtimeReply(tool="end_call", arguments='{"last_sentence": "Goodbye!"}'),
            "Goodbye, and thanks for calling.",
        ],
        speed=4.0,
    )
    async with fake, FakeCarrierREST(carrier, ACCOUNT[carrier], TOKEN) as rest:
        async with realtime_call(carrier, fake, rest) as (call, seen):
            await call.send_silence(0.3)
            await call.send_audio(
                speech("that is all, bye", rate(carrier)), sample_rate=rate(carrier)
            )
            await talk_until(call, lambda: bool(rest.hangups))
            events = list(seen[0][0].recent_events)
            supervisor = seen[0][0].graph["supervisor"]
    assert rest.hangups == [call_id(carrier, call)]
    goodbye = next(e for e in supervisor.transcript if e["role"] == "assistant")
    assert goodbye["content"] == "Goodbye, and thanks for calling."
    uid = max(supervisor._agent)
    acks = played(events, uid)
    assert acks and acks[-1].complete, "the goodbye was acknowledged as played"
    assert call.heard_seconds + 1e-6 >= acks[-1].played > 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_realtime_transfer_call_transfers_through_rest_after_the_reply(carrier: str) -> None:
    fake = FakeOpenAIRealtime(
        transcripts=["a human please"],
        replies=[
            RealtimeReply(tool="transfer_call", arguments='{"number": "+15557654321"}'),
            "Transferring you now.",
        ],
        speed=4.0,
    )
    async with fake, FakeCarrierREST(carrier, ACCOUNT[carrier], TOKEN) as rest:
        async with realtime_call(carrier, fake, rest) as (call, _):
            await call.send_silence(0.3)
            await call.send_audio(
                speech("a human please", rate(carrier)), sample_rate=rate(carrier)
            )
            await talk_until(call, lambda: bool(rest.transfers))
    assert rest.transfers == [(call_id(carrier, call), "+15557654321")]
    assert call.heard_seconds > 1.0  # "Transferring you now." was played first
    tools = [t["name"] for t in fake.connections[0].sessions[0]["tools"]]
    assert tools == ["end_call", "transfer_call"]


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_realtime_max_duration_goodbye_is_heard_before_the_hang_up(carrier: str) -> None:
    from voicegraph.server.goodbye import GOODBYE_UTTERANCE

    fake = FakeOpenAIRealtime(replies=[echo_say], speed=4.0)
    async with fake, FakeCarrierREST(carrier, ACCOUNT[carrier], TOKEN) as rest:
        async with realtime_call(
            carrier,
            fake,
            rest,
            max_call_duration_seconds=1.0,
            goodbye="Our time is up. Goodbye.",
        ) as (call, seen):
            await talk_until(call, lambda: bool(rest.hangups))
            events = list(seen[0][0].recent_events)
    assert fake.connections[0].response_creates[-1] == {
        "instructions": SAY + "Our time is up. Goodbye."
    }
    acks = played(events, GOODBYE_UTTERANCE)
    assert acks and acks[-1].complete, "the goodbye was acknowledged as played before hang-up"
    assert call.heard_seconds + 1e-6 >= acks[-1].played > 1.0
    assert rest.hangups == [call_id(carrier, call)]


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_realtime_interruptible_none_lets_the_reply_finish(carrier: str) -> None:
    fake = FakeOpenAIRealtime(
        transcripts=["tell me about the rooms", "wait"], replies=[LONG, "Yes?"], speed=4.0
    )
    async with fake:
        async with realtime_call(carrier, fake, interruptible="none") as (call, seen):
            r = rate(carrier)
            await call.send_silence(0.3)
            await call.send_audio(speech("tell me about the rooms", r), sample_rate=r)
            await call.send_silence(1.5)  # the long answer starts playing
            await call.send_audio(speech("wait", r), sample_rate=r)  # the caller talks over it
            supervisor = seen[0][0].graph["supervisor"]
            # the whole long answer (60 ms per character in the fake) reaches the caller
            await talk_until(call, lambda: call.heard_seconds >= len(LONG) * 0.06 - 0.01)
            await call.send_silence(0.5)
            events = list(seen[0][0].recent_events)
    conn = fake.connections[0]
    assert conn.sessions[0]["audio"]["input"]["turn_detection"]["interrupt_response"] is False
    assert conn.cancels == 0 and not conn.truncations and call.clears == 0
    long_entry = next(e for e in supervisor.transcript if e.get("full") == LONG)
    assert long_entry["content"] == LONG and "interrupted" not in long_entry
    uid = next(u for u, e in supervisor._agent.items() if e is long_entry)
    assert played(events, uid)[-1].complete


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_realtime_cough_is_a_false_interruption_and_the_reply_resumes(carrier: str) -> None:
    fake = FakeOpenAIRealtime(
        transcripts=["tell me about the rooms"],  # the cough transcribes to nothing
        replies=[LONG, echo_say, echo_say],
        speed=4.0,
    )
    async with fake:
        async with realtime_call(carrier, fake) as (call, seen):
            r = rate(carrier)
            await call.send_silence(0.3)
            await call.send_audio(speech("tell me about the rooms", r), sample_rate=r)
            await call.send_silence(2.0)  # the long answer plays
            noise = np.random.default_rng(7).integers(-12000, 12000, r // 4).astype(np.int16)
            await call.send_audio(noise, sample_rate=r)  # a cough
            supervisor = seen[0][0].graph["supervisor"]
            await talk_until(call, lambda: supervisor.resumed > 0)
            conn = fake.connections[0]
            await talk_until(
                call,
                lambda: any(
                    (c or {}).get("instructions", "").startswith(SAY) for c in conn.response_creates
                ),
            )
    assert call.clears >= 1
    long_entry = next(e for e in supervisor.transcript if e.get("full") == LONG)
    assert long_entry.get("interrupted") is True
    heard = long_entry["content"]
    [resume] = [c["instructions"] for c in conn.response_creates if c and SAY in c["instructions"]]
    rest = resume.removeprefix(SAY)
    assert LONG.endswith(rest) and rest and heard, (heard, rest)
    assert len(heard) + len(rest) <= len(LONG) + 1


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_realtime_reconnect_replays_the_heard_conversation(carrier: str) -> None:
    fake = FakeOpenAIRealtime(
        transcripts=["a table for two"], replies=["Sure, a table for two."], speed=4.0
    )
    async with fake:
        async with realtime_call(carrier, fake) as (call, seen):
            r = rate(carrier)
            await call.send_silence(0.3)
            await call.send_audio(speech("a table for two", r), sample_rate=r)
            supervisor = seen[0][0].graph["supervisor"]
            await talk_until(
                call, lambda: any(e.get("content") == REPLY for e in supervisor.transcript)
            )
            # the reply plays to its end (60 ms per character in the fake) and is acknowledged
            await talk_until(call, lambda: call.heard_seconds >= len(REPLY) * 0.06 - 0.01)
            await call.send_silence(0.3)
            await fake.drop()  # the service restarts
            await talk_until(
                call, lambda: len(fake.connections) == 2 and bool(fake.connections[1].messages)
            )
            await call.send_silence(0.3)
    second = fake.connections[1]
    assert second.events[0] == "session.update" and second.errors == []
    assert second.messages == [("user", "a table for two"), ("assistant", REPLY)]


REPLY = "Sure, a table for two."
