"""Liveness watchdogs: a provider that accepts and then never answers ends the call (so the
runtime can apologise) instead of leaving the caller in silence; a quiet healthy one does not."""

from __future__ import annotations

import anyio
import pytest

from voicegraph import AgentText, Graph, SpeechStopped
from voicegraph.nodes import CartesiaTTS, DeepgramSTT
from voicegraph.nodes.providers import ProviderStalled, ReconnectPolicy
from voicegraph.runtime import Call
from voicegraph.testing.fake_cartesia import CartesiaFaults, FakeCartesia
from voicegraph.testing.fake_deepgram import DeepgramFaults, FakeDeepgram

QUICK = ReconnectPolicy(
    connect_timeout=2.0,
    max_attempts=3,
    initial_backoff=0.01,
    max_backoff=0.02,
    drain_timeout=1.0,
    stall_timeout=0.4,
)
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"


async def run_graph(source: object, node: object, sink: object) -> object:
    g = Graph("watch")
    g.add("source", source)  # type: ignore[arg-type]
    g.add("node", node)  # type: ignore[arg-type]
    g.add("sink", sink)  # type: ignore[arg-type]
    g.connect("source", "node", capacity=10_000)
    g.connect("node", "sink")
    with anyio.fail_after(30):  # a safety net, not a timing claim
        return await Call(g, "watch").run()


def stt_script(after: float):  # type: ignore[no-untyped-def]
    from test_deepgram import Caller, tone

    async def script(c: Caller) -> None:
        await c.play(tone(0.4))
        await c.vad(SpeechStopped())  # -> Finalize, which a stalled service never answers
        await anyio.sleep(after)

    return Caller(script)


@pytest.mark.anyio
async def test_a_stalled_stt_is_reconnected_once_then_ends_the_call() -> None:
    from test_deepgram import Collect

    async with FakeDeepgram(["hello"], faults=DeepgramFaults(stall=True)) as dg:
        stt = DeepgramSTT(api_key="test-deepgram-key", base_url=dg.url, reconnect=QUICK)
        result = await run_graph(stt_script(after=60), stt, Collect())
    assert result.reason == "error"  # type: ignore[attr-defined]
    assert isinstance(result.error.exc, ProviderStalled)  # type: ignore[attr-defined]
    assert stt.stalls == 2 and dg.connections == 2


@pytest.mark.anyio
async def test_a_finalize_answered_with_silence_is_not_a_stall() -> None:
    from test_deepgram import Caller, Collect, silence

    async def script(c: Caller) -> None:
        await c.play(silence(0.4))
        await c.vad(SpeechStopped())
        await anyio.sleep(1.5)  # several watchdog periods with nothing left to answer

    async with FakeDeepgram([]) as dg:
        stt = DeepgramSTT(api_key="test-deepgram-key", base_url=dg.url, reconnect=QUICK)
        result = await run_graph(Caller(script), stt, Collect())
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    assert stt.stalls == 0


@pytest.mark.anyio
async def test_a_stalled_tts_is_reconnected_once_then_ends_the_call() -> None:
    from test_cartesia import Agent, Collect

    async def script(a: Agent) -> None:
        await a.say(1, "Hello there.")
        await anyio.sleep(60)

    async with FakeCartesia(faults=CartesiaFaults(stall=True)) as fake:
        tts = CartesiaTTS(
            api_key="test-cartesia-key", base_url=fake.url, voice_id=VOICE, reconnect=QUICK
        )
        result = await run_graph(Agent(script), tts, Collect())
    assert isinstance(result.error.exc, ProviderStalled)  # type: ignore[attr-defined]
    assert tts.stalls == 2 and fake.connections == 2


@pytest.mark.anyio
async def test_a_tts_that_answers_after_a_reconnect_keeps_the_call() -> None:
    from test_cartesia import Agent, Collect

    faults = CartesiaFaults(stall=True)
    sink = Collect()

    async def script(a: Agent) -> None:
        await a.say(1, "Hello there.")
        with anyio.fail_after(20):
            while tts.stalls == 0:  # noqa: ASYNC110  # a plain counter, no event to wait on
                await anyio.sleep(0.01)
        faults.stall = False  # the service recovers; the reconnect replays the utterance
        with anyio.fail_after(20):
            while 1 not in sink.done():  # noqa: ASYNC110
                await anyio.sleep(0.01)

    async with FakeCartesia(faults=faults) as fake:
        tts = CartesiaTTS(
            api_key="test-cartesia-key", base_url=fake.url, voice_id=VOICE, reconnect=QUICK
        )
        result = await run_graph(Agent(script), tts, sink)
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    assert tts.stalls == 1 and sink.audio(1)


def test_the_watchdog_defaults_are_documented_values() -> None:
    assert DeepgramSTT(api_key="k").stall_timeout == 5.0
    assert CartesiaTTS(api_key="k").stall_timeout == 5.0
    off = ReconnectPolicy(stall_timeout=0)
    assert not DeepgramSTT(api_key="k", reconnect=off).stall_timeout


# ------------------------------------------------------------------ chat LLM and agent turns


@pytest.mark.anyio
async def test_a_chat_request_with_no_first_token_is_sent_once_more() -> None:
    from voicegraph.llm import TextDelta
    from voicegraph.nodes.llm import OpenAIChatLLM
    from voicegraph.testing.fake_chat import ChatFault, FakeChatCompletions

    faults = [ChatFault("stall", after_chunks=0)]
    async with FakeChatCompletions(["one", "two"], faults=faults) as fake:
        llm = OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url, first_token_timeout=0.3)
        async with llm:
            events = [e async for e in llm.stream([{"role": "user", "content": "hi"}])]
    assert "".join(e.text for e in events if isinstance(e, TextDelta))
    assert len(fake.requests) == 2


@pytest.mark.anyio
async def test_a_chat_model_that_stalls_twice_raises_llm_stalled() -> None:
    from voicegraph.llm import LLMStalled
    from voicegraph.nodes.llm import OpenAIChatLLM
    from voicegraph.testing.fake_chat import ChatFault, FakeChatCompletions

    faults = [ChatFault("stall", after_chunks=0, times=5)]
    async with FakeChatCompletions(["one", "two", "three"], faults=faults) as fake:
        llm = OpenAIChatLLM(api_key=fake.api_key, base_url=fake.base_url, first_token_timeout=0.3)
        async with llm:
            with pytest.raises(LLMStalled):
                async for _ in llm.stream([{"role": "user", "content": "hi"}]):
                    pass
    assert len(fake.requests) == 2


class FlakyAgent:
    """Fails the turns whose caller text is in ``fail``; echoes the others."""

    def __init__(self, fail: set[str], error: Exception | None = None) -> None:
        self.fail = fail
        self.error = error or RuntimeError("HTTP 401: invalid key")

    async def respond(self, turn):  # type: ignore[no-untyped-def]
        if turn.text in self.fail:
            raise self.error
        yield f"ok {turn.text}"


async def run_turns(agent: object, texts: list[str]) -> tuple[object, list[str]]:
    from voicegraph import EndOfTurn
    from voicegraph.node import Actor, In, Out
    from voicegraph.nodes.conversation.agent import AgentNode

    said: list[str] = []

    class Turns(Actor):
        outputs = (Out("out", EndOfTurn),)

        async def run(self) -> None:
            for t in texts:
                await self.send("out", EndOfTurn(text=t))
                await anyio.sleep(0.05)

    class Sink(Actor):
        inputs = (In("in", AgentText),)

        async def handle(self, port: str, frame: AgentText) -> None:  # type: ignore[override]
            said.append(frame.text)

    g = Graph("turns")
    g.add("turns", Turns())
    g.add("agent", AgentNode(agent, acknowledged=False))  # type: ignore[arg-type]
    g.add("sink", Sink())
    g.connect("turns", "agent.turns")
    g.connect("agent.text", "sink")
    with anyio.fail_after(20):
        result = await Call(g, "turns").run()
    return result, said


@pytest.mark.anyio
async def test_two_failed_turns_in_a_row_end_the_call() -> None:
    from voicegraph.nodes.conversation.agent import AgentFailing

    result, said = await run_turns(FlakyAgent({"a", "b"}), ["a", "b", "c"])
    assert isinstance(result.error.exc, AgentFailing)  # type: ignore[attr-defined]
    assert said.count(" Sorry, something went wrong on my side.") == 1
    assert "ok c" not in said


@pytest.mark.anyio
async def test_a_good_turn_between_failures_keeps_the_call() -> None:
    result, said = await run_turns(FlakyAgent({"a", "c"}), ["a", "b", "c", "d"])
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    assert "ok b" in said and "ok d" in said


@pytest.mark.anyio
async def test_a_stalled_model_ends_the_call_at_once() -> None:
    from voicegraph.llm import LLMStalled
    from voicegraph.nodes.conversation.agent import AgentFailing

    result, said = await run_turns(FlakyAgent({"a"}, LLMStalled("no first token")), ["a", "b"])
    assert isinstance(result.error.exc, AgentFailing)  # type: ignore[attr-defined]
    assert not any("Sorry" in s for s in said)
