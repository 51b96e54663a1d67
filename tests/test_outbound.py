"""Outbound calls end to end, per carrier: dial through the fake REST API, which rings a
simulated callee and dials the runtime's webhook; status callbacks come back signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
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
        handle = await runtime.dial(CALLEE, carrier_recording=True)
        final = await handle.outcome(timeout=30)
        placed, rest_url = rest.placed[0], rest.base_url
        with anyio.fail_after(10):
            await placed.done.wait()  # the recording report comes after the final status
    assert not rest.errors
    # the carrier recorded too, and said where the file is
    assert [r.url.startswith(rest_url) for r in handle.recordings] == [True]
    assert handle.recordings[0].call_id == handle.call_id
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


VOICEMAIL = "Hi, this is Acme. Your appointment is on Monday at nine. Call us back any time."


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_an_answering_machine_gets_the_voicemail_after_its_beep(carrier: str) -> None:
    rate = _rate(carrier)
    machine = Callee.answering_machine(
        speech("hi you have reached Sam please leave a message", rate), rate=rate
    )
    async with outbound_line(carrier, machine, voicemail_message=VOICEMAIL) as (
        runtime,
        rest,
        seen,
        _,
    ):
        handle = await runtime.dial(CALLEE, machine_detection=True)
        final = await handle.outcome(timeout=40)
        placed = rest.placed[0]
    assert not rest.errors
    assert handle.answered_by is not None and handle.answered_by.result == "machine"
    assert placed.heard_before_beep == 0  # nothing was said over the greeting or the beep
    assert placed.heard_after_beep > 2.0  # the message, after the beep
    graph = seen[0][0].graph
    assert graph["agent"].agent.turns == []  # the agent never talked to the machine
    assert graph["answering"].state == "done"
    assert rest.hangups == [placed.call_id] and final.status == "completed"


def _onsets(pcm: bytes, rate: int, level: float = 500.0) -> list[float]:
    """Start times (s) of the 20 ms blocks louder than ``level``."""
    import numpy as np

    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    n = rate // 50
    blocks = x[: len(x) // n * n].reshape(-1, n)
    loud = np.sqrt((blocks**2).mean(axis=1)) > level
    return [i / 50 for i in np.flatnonzero(loud)]


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_a_person_is_greeted_after_the_verdict_and_the_recording_holds_both_sides(
    carrier: str, tmp_path: Any
) -> None:
    import wave

    import numpy as np

    rate = _rate(carrier)

    async def person(call: Any) -> None:
        await call.wait_for_audio(0.5, timeout=15)  # the greeting, after the verdict
        await call.send_silence(2.5)  # let the greeting finish
        await call.send_audio(speech("yes I will be there", rate), sample_rate=rate)
        while not call.closed:
            await call.send_silence(0.2)

    async with outbound_line(carrier, Callee.person(person), record=str(tmp_path)) as (
        runtime,
        rest,
        seen,
        _,
    ):
        handle = await runtime.dial(CALLEE, machine_detection=True)
        await handle.outcome(timeout=40)
        call = seen[0][0]
    turns = call.graph["agent"].agent.turns
    assert [(t.text, t.answered_by) for t in turns] == [("yes I will be there", "human")]
    with wave.open(str(tmp_path / f"{handle.call_id}.wav"), "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, rate)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    caller = _onsets(frames[:, 0].tobytes(), rate)
    agent = _onsets(frames[:, 1].tobytes(), rate)
    assert caller and agent
    spoke_from, spoke_to = caller[0], caller[-1]
    assert agent[0] < spoke_from  # the greeting came first
    reply = [t for t in agent if t > spoke_to]
    # the goodbye follows the caller's words, as the caller lived it: after them, not long after
    assert reply and 0 < reply[0] - spoke_to < 5.0


@pytest.mark.anyio
@pytest.mark.parametrize(("carrier", "kind"), [("twilio", "machine"), ("plivo", "person")])
async def test_realtime_mode_follows_the_verdict_too(carrier: str, kind: str) -> None:
    from voicegraph import Agent
    from voicegraph.nodes.realtime import OpenAIRealtime
    from voicegraph.testing.fake_openai_realtime import FakeOpenAIRealtime

    rate = _rate(carrier)
    said: list[str] = []

    def say_what_was_asked(instructions: str) -> str:
        said.append(instructions.split(": ", 1)[-1])  # Say becomes "Say exactly ...: <text>"
        return said[-1]

    async def person(call: Any) -> None:
        await call.wait_for_audio(1.0, timeout=15)
        await call.send_silence(1.0)

    # asked before the callee said anything: the fake's greeting path answers both requests
    fake = FakeOpenAIRealtime(greeting=say_what_was_asked, speed=4.0)
    callee = Callee.answering_machine(rate=rate) if kind == "machine" else Callee.person(person)
    async with fake:
        model = OpenAIRealtime(api_key="test-key", base_url=fake.url)
        async with outbound_line(
            carrier,
            callee,
            pipeline="realtime",
            realtime=model,
            stt=None,
            tts=None,
            agent=Agent("You remind people of appointments."),
            voicemail_message=VOICEMAIL,
        ) as (runtime, rest, seen, _):
            handle = await runtime.dial(CALLEE, machine_detection=True)
            await handle.outcome(timeout=40)
            placed = rest.placed[0]
    expected = (
        VOICEMAIL if kind == "machine" else "Hello, this is Acme calling about your appointment."
    )
    assert said == [expected]  # the model was asked to say exactly one thing, the right one
    assert placed.call.heard_seconds > 1.0
    if kind == "machine":
        assert placed.heard_before_beep == 0 and rest.hangups == [placed.call_id]


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 (state of the runtime and of the fake)
            await anyio.sleep(0.02)


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_hanging_up_a_call_that_still_rings_cancels_it(carrier: str) -> None:
    async with outbound_line(carrier, Callee.person(ring=30)) as (runtime, rest, seen, _):
        handle = await runtime.dial(CALLEE)
        await _until(lambda: handle.status == "ringing")
        assert await handle.hangup() is True
        final = await handle.outcome(timeout=10)
        placed = rest.placed[0]
    assert final.status == "canceled" and final.duration == 0
    assert not seen and placed.call is None  # nobody answered, no graph ran
    assert runtime.registry.in_flight() == 0
    if carrier == "plivo":  # before the answer Plivo knows the call by its request alone
        assert rest.requests[-1].path.endswith(f"/Request/{handle.request_id}/")


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_hanging_up_an_answered_call_ends_its_graph_and_completes_it(carrier: str) -> None:
    async def listener(call: Any) -> None:
        await call.wait_for_audio(1.0, timeout=10)  # the greeting
        while not call.closed:
            await call.send_silence(0.2)

    async with outbound_line(carrier, Callee.person(listener)) as (runtime, rest, seen, _):
        handle = await runtime.dial(CALLEE)
        await _until(lambda: handle.call is not None and rest.placed[0].call is not None)
        await rest.placed[0].call.wait_for_audio(1.0, timeout=10)
        call = handle.call
        assert await handle.hangup() is True
        final = await handle.outcome(timeout=15)
        assert call is not None
        await _until(lambda: call.result is not None)  # the carrier closed the stream
    assert final.status == "completed"
    assert rest.hangups == [handle.call_id]  # one hang-up, of the call's own id
    assert seen and not seen[0][0].graph["agent"].agent.turns  # ended before any turn


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_hanging_up_a_call_that_is_over_does_nothing(carrier: str) -> None:
    async with outbound_line(carrier, Callee("busy")) as (runtime, rest, _, _):  # type: ignore[arg-type]
        handle = await runtime.dial(CALLEE)
        await handle.outcome(timeout=10)
        assert await handle.hangup() is False
    assert rest.hangups == []
