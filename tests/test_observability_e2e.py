"""Observability of whole calls over loopback: ``/metrics`` scraped and parsed while a call runs,
and the OpenTelemetry span tree of a cascading call with a tool call and a barge-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from e2ekit import TOKEN, interface, served, speech
from prometheus_client.parser import text_string_to_metric_families

from voicegraph import Agent, tool
from voicegraph.nodes.llm import OpenAIChatLLM
from voicegraph.observability import Metrics, Observability, Tracing
from voicegraph.testing.fake_chat import ChatReply, FakeChatCompletions, ScriptedToolCall
from voicegraph.testing.twilio_caller import TwilioCaller

SCRAPE_TOKEN = "scrape-token-0123456789"
BOOKED: list[int] = []
KEYS: list[str] = []  # the fakes' API keys of the last line served


@tool
def book_table(party: int) -> dict[str, object]:
    """Book a table.

    Args:
        party: Number of guests.
    """
    BOOKED.append(party)
    return {"booked": True, "party": party}


ROOMS = (
    "We have a lovely terrace. There is a quiet room at the back. "
    "The long table by the window seats twelve. Tonight the chef cooks a tasting menu."
)


@asynccontextmanager
async def cascading_line(
    transcripts: list[str], replies: list[Any], observability: Observability
) -> AsyncIterator[tuple[str, list[Any]]]:
    """A Twilio cascading line on the Deepgram / chat / Cartesia fakes, served on loopback."""
    from voicegraph.nodes import CartesiaTTS, DeepgramSTT
    from voicegraph.testing.fake_cartesia import FakeCartesia
    from voicegraph.testing.fake_deepgram import FakeDeepgram

    dg, tts = FakeDeepgram(transcripts), FakeCartesia(realtime=4.0)
    async with dg, tts, FakeChatCompletions(replies, tokens_per_second=12) as chat:
        agent = Agent(
            "You take bookings.",
            llm=OpenAIChatLLM(api_key=chat.api_key, base_url=chat.base_url),
            tools=[book_table],
        )
        iface = interface(
            "twilio",
            pipeline="cascading",
            agent=agent,
            greeting="Hello, Luigi's.",
            stt=lambda: DeepgramSTT(api_key=dg.api_key, base_url=dg.url),
            tts=lambda: CartesiaTTS(api_key=tts.api_key, base_url=tts.url),
        )
        async with served(iface, observability=observability) as (url, seen):
            yield url, seen
    KEYS[:] = [dg.api_key, tts.api_key, chat.api_key]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``(sample name, labels) -> value`` of an exposition, via prometheus_client's parser."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(scraped: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in scraped.items() if n == name and want <= lab)


@pytest.mark.anyio
async def test_metrics_scraped_during_a_live_call_move_as_the_call_proceeds() -> None:
    obs = Observability(metrics=Metrics("/metrics", bearer_token=SCRAPE_TOKEN))
    replies = ["A table for two, done."]
    async with cascading_line(["a table for two please"], replies, obs) as (url, _):
        auth = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=auth) as http:

            async def scrape() -> dict[tuple[str, Any], float]:
                resp = await http.get("/metrics")
                assert resp.status_code == 200
                return samples(resp.text)

            before = await scrape()
            assert total(before, "voicegraph_active_calls") == 0
            assert total(before, "voicegraph_calls_started_total") == 0
            caller = TwilioCaller(url, TOKEN, public_url="http://127.0.0.1")
            async with caller.dial() as call:
                await call.wait_for_audio(0.3, timeout=10)  # the greeting
                during = await scrape()
                assert total(during, "voicegraph_active_calls") == 1
                labels = {"carrier": "twilio", "mode": "cascading"}
                assert total(during, "voicegraph_calls_started_total", **labels) == 1
                assert total(during, "voicegraph_provider_connect_seconds_count") >= 2
                greeting_heard = call.heard_seconds
                await call.send_silence(1.0)
                await call.send_audio(speech("a table for two please", 8000), sample_rate=8000)
                await call.send_silence(1.5)
                await call.wait_for_audio(greeting_heard + 0.5, timeout=10)  # the reply plays
                v2v = "voicegraph_voice_to_voice_seconds_count"
                with anyio.fail_after(10):  # the turn completes when its audio was acknowledged
                    while not total(after_turn := await scrape(), v2v, **labels):
                        await call.send_silence(0.2)
            stage_count = "voicegraph_turn_stage_seconds_count"
            assert total(after_turn, v2v, **labels) == 1
            for stage in ("agent_first_token", "tts_first_audio"):
                assert total(after_turn, stage_count, stage=stage) == 1
            # the greeting has playout stages too (no caller speech before it)
            assert total(after_turn, stage_count, stage="first_audio_sent") == 2
            for provider in ("cartesia", "openai-chat"):  # (Deepgram: only on Finalize)
                ttfb = "voicegraph_provider_ttfb_seconds_count"
                assert total(after_turn, ttfb, provider=provider) >= 1, provider
            assert total(after_turn, "voicegraph_calls_ended_total") == 0
            with anyio.fail_after(10):  # the caller hung up: the runtime ends the call
                while total(ended := await scrape(), "voicegraph_calls_ended_total") == 0:  # noqa: ASYNC110
                    await anyio.sleep(0.05)  # (polling over HTTP)
            assert total(ended, "voicegraph_active_calls") == 0
            assert total(ended, "voicegraph_calls_ended_total", outcome="hangup", **labels) == 1
            assert total(ended, "voicegraph_event_loop_lag_seconds_count") > 0


@pytest.mark.anyio
async def test_the_metrics_route_refuses_a_scrape_without_the_bearer_token() -> None:
    obs = Observability(metrics=Metrics("/internal/metrics", bearer_token=SCRAPE_TOKEN))
    async with cascading_line([], [], obs) as (url, _):
        async with httpx.AsyncClient(base_url=url) as http:
            missing = await http.get("/internal/metrics")
            wrong = await http.get(
                "/internal/metrics", headers={"Authorization": "Bearer not-the-token-at-all"}
            )
            right = await http.get(
                "/internal/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
            )
            default_path = await http.get("/metrics")
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert SCRAPE_TOKEN not in missing.text + wrong.text
    assert default_path.status_code == 404


@pytest.mark.anyio
async def test_a_runtime_without_observability_serves_no_metrics_route() -> None:
    from voicegraph import AgentRuntime
    from voicegraph.testing.server import echo_graph, serve_runtime

    runtime = AgentRuntime([interface("twilio", graph=echo_graph)], public_url="http://127.0.0.1")
    async with serve_runtime(runtime) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/metrics")).status_code == 404


def span_tree(spans: list[Any]) -> dict[str, Any]:
    """The finished spans as ``{"name", "span", "children": [...]}`` from the single root."""
    nodes = {s.context.span_id: {"name": s.name, "span": s, "children": []} for s in spans}
    roots = []
    for s in spans:
        parent = s.parent.span_id if s.parent is not None else None
        (nodes[parent]["children"] if parent in nodes else roots).append(nodes[s.context.span_id])
    assert len(roots) == 1, [r["name"] for r in roots]
    return roots[0]


@pytest.mark.anyio
async def test_the_spans_of_a_call_with_a_tool_call_and_a_barge_in_form_the_expected_tree() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    obs = Observability(tracing=Tracing(provider))
    replies = [
        ChatReply(tool_calls=(ScriptedToolCall("book_table", '{"party": 2}', "c1"),)),
        "Booked for two.",
        ROOMS,
        "Yes, go ahead.",
    ]
    transcripts = ["a table for two please", "tell me about the rooms", "wait a moment"]
    BOOKED.clear()
    async with cascading_line(transcripts, replies, obs) as (url, seen):
        async with TwilioCaller(url, TOKEN, public_url="http://127.0.0.1").dial() as call:
            await call.wait_for_audio(0.3, timeout=10)  # the greeting
            await call.send_silence(1.0)
            await call.send_audio(speech("a table for two please", 8000), sample_rate=8000)
            await call.send_silence(2.0)
            heard = call.heard_seconds
            await call.send_audio(speech("tell me about the rooms", 8000), sample_rate=8000)
            await call.send_silence(1.2)
            await call.wait_for_audio(heard + 1.0, timeout=10)  # the long answer plays
            await call.send_audio(speech("wait a moment", 8000), sample_rate=8000)  # barge in
            await call.send_silence(1.0)
            agent = seen[0][0].graph["agent"]
            with anyio.fail_after(10):  # the answer to the barge-in is played and heard
                while not any(m.get("content") == "Yes, go ahead." for m in agent.llm_history()):
                    await call.send_silence(0.2)
    assert BOOKED == [2]
    root = span_tree(list(exporter.get_finished_spans()))
    assert root["name"] == "voicegraph.call"
    attrs = dict(root["span"].attributes)
    assert attrs["voicegraph.carrier"] == "twilio" and attrs["voicegraph.mode"] == "cascading"
    assert (
        attrs["voicegraph.call_id"] == call.call_sid and attrs["voicegraph.line"] == "14155550199"
    )
    assert "voicegraph.caller" not in attrs  # personal data only on opt-in
    assert "barge_in" in [e.name for e in root["span"].events]
    children = root["children"]
    connects = [c for c in children if c["name"] == "voicegraph.provider.connect"]
    assert {c["span"].attributes["voicegraph.provider"] for c in connects} >= {
        "deepgram",
        "cartesia",
    }
    turns = [c for c in children if c["name"] == "voicegraph.turn"]
    answered = [
        t for t in turns if any(g["name"] == "voicegraph.agent_first_token" for g in t["children"])
    ]
    assert len(answered) >= 3  # the booking, the rooms (interrupted) and the answer to "wait"
    booking = answered[0]
    names = [g["name"] for g in booking["children"]]
    assert names.count("voicegraph.tool") == 1
    tool_span = next(g["span"] for g in booking["children"] if g["name"] == "voicegraph.tool")
    assert tool_span.attributes["voicegraph.tool"] == "book_table"
    llm_rounds = [
        g["span"]
        for g in booking["children"]
        if g["name"] == "voicegraph.provider.request"
        and g["span"].attributes["voicegraph.provider"] == "openai-chat"
    ]
    assert len(llm_rounds) == 2  # the round asking for the tool, then the answer
    assert llm_rounds[0].end_time <= tool_span.start_time <= tool_span.end_time
    stages = [n[11:] for n in names if n[11:] in _STAGES]
    assert stages == sorted(stages, key=_STAGES.index)  # in pipeline order
    assert stages[-4:] == [
        "agent_first_token",
        "tts_first_audio",
        "first_audio_sent",
        "first_mark_ack",
    ]
    for g in booking["children"]:  # stage spans lie within their turn
        if g["name"][11:] in stages:
            span = booking["span"]
            assert span.start_time <= g["span"].start_time <= g["span"].end_time <= span.end_time
    secrets = (TOKEN, *KEYS)
    assert all(KEYS)
    for s in exporter.get_finished_spans():
        for value in s.attributes.values():
            assert not any(secret in str(value) for secret in secrets)


_STAGES = (
    "caller_speech_end",
    "stt_final",
    "agent_first_token",
    "tts_first_audio",
    "first_audio_sent",
    "first_mark_ack",
)
