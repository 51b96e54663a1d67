"""Every failure ends politely: the apology is heard in full whatever else fails at the same
time, then the call is hung up over the carrier's REST API."""

from __future__ import annotations

import anyio
import pytest
from e2ekit import TOKEN, interface, served

from voicegraph.graph import Graph
from voicegraph.node import Actor
from voicegraph.nodes import CartesiaTTS, DeepgramSTT
from voicegraph.nodes.providers import ReconnectPolicy
from voicegraph.runtime import Call
from voicegraph.testing.fake_cartesia import CartesiaFaults, FakeCartesia
from voicegraph.testing.fake_deepgram import DeepgramFaults, FakeDeepgram
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.twilio_caller import TwilioCaller

VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
APOLOGY_SECONDS = 5.0  # the pre-rendered apology is about 5.5 s long


class Fails(Actor):
    """Raises once ``after`` is set (or at once), setting ``failed`` first."""

    def __init__(self, after: anyio.Event | None, failed: anyio.Event) -> None:
        super().__init__()
        self.after, self.failed = after, failed

    async def run(self) -> None:
        if self.after is not None:
            await self.after.wait()
        self.failed.set()
        raise RuntimeError(f"{self.name} is down")


class Idle(Actor):
    async def run(self) -> None:
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_a_second_failure_does_not_cut_the_error_hook_short() -> None:
    first, second, hook_started = anyio.Event(), anyio.Event(), anyio.Event()
    done: list[str] = []

    async def on_error(call: Call, failure: object) -> None:
        hook_started.set()
        await second.wait()  # the second node has failed by now (it raises right after)
        await anyio.sleep(0.05)  # "the apology plays"
        done.append("apology")
        done.append("hangup")

    g = Graph("outage")
    g.add("stt", Fails(None, first))
    g.add("tts", Fails(hook_started, second))
    g.add("keeper", Idle())
    with anyio.fail_after(10):
        result = await Call(g, "c1", on_error=on_error).run()
    assert done == ["apology", "hangup"]
    assert result.error is not None and result.error.node == "stt"
    assert [f.node for f in result.also_failed] == ["tts"]


def _line(dg: FakeDeepgram, tts: FakeCartesia, rest: FakeCarrierREST, policy: ReconnectPolicy):  # type: ignore[no-untyped-def]
    return interface(
        "twilio",
        pipeline="cascading",
        agent=_Echo(),
        greeting="Hello, Luigi's.",
        api_base_url=rest.base_url,
        stt=lambda: DeepgramSTT(api_key=dg.api_key, base_url=dg.url, reconnect=policy),
        tts=lambda: CartesiaTTS(
            api_key=tts.api_key, base_url=tts.url, voice_id=VOICE, reconnect=policy
        ),
    )


class _Echo:
    async def respond(self, turn):  # type: ignore[no-untyped-def]
        yield turn.text


async def _call_until_hangup(iface: object, rest: FakeCarrierREST) -> tuple[TwilioCaller, object]:
    async with served(iface) as (url, seen):  # type: ignore[arg-type]
        caller = TwilioCaller(url, TOKEN, public_url="http://127.0.0.1", playback_rate=4.0)
        async with caller.dial() as call:
            assert await rest.wait_for_hangup(call.call_sid, timeout=30)
        return call, seen[0][0]


@pytest.mark.anyio
async def test_an_outage_of_stt_and_tts_together_still_gets_the_whole_apology() -> None:
    down = ReconnectPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    dg = FakeDeepgram([], faults=DeepgramFaults(fail_connects=100))
    tts = FakeCartesia(faults=CartesiaFaults(fail_connects=100))
    async with dg, tts, FakeCarrierREST("twilio", "AC" + "0" * 32, TOKEN) as rest:
        call, result_call = await _call_until_hangup(_line(dg, tts, rest, down), rest)
    assert call.heard_seconds > APOLOGY_SECONDS
    assert len(rest.requests) == 1
    failed = {result_call.result.error.node, *(f.node for f in result_call.result.also_failed)}  # type: ignore[attr-defined]
    assert failed == {"stt", "tts"}


@pytest.mark.anyio
async def test_a_stalled_tts_gives_the_caller_an_apology_instead_of_silence() -> None:
    stall = ReconnectPolicy(initial_backoff=0.01, max_backoff=0.02, stall_timeout=0.5)
    dg = FakeDeepgram([])
    tts = FakeCartesia(faults=CartesiaFaults(stall=True))
    async with dg, tts, FakeCarrierREST("twilio", "AC" + "0" * 32, TOKEN) as rest:
        call, result_call = await _call_until_hangup(_line(dg, tts, rest, stall), rest)
    assert call.heard_seconds > APOLOGY_SECONDS  # the greeting stalled; the apology was heard
    assert len(rest.requests) == 1
    assert type(result_call.result.error.exc).__name__ == "ProviderStalled"  # type: ignore[attr-defined]
