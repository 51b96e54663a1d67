"""The parts of the OpenAI Realtime node that hold no socket: options, items, responses, tools."""

from __future__ import annotations

import logging

import anyio
import pytest

from voicegraph.frames import PlayedPosition, Say
from voicegraph.nodes.realtime import messages as m
from voicegraph.nodes.realtime.items import ItemBook
from voicegraph.nodes.realtime.responses import ResponseQueue
from voicegraph.nodes.realtime.session import (
    PCM_24K,
    OpenAIRealtimeOptions,
    session_config,
)
from voicegraph.nodes.realtime.tools import error_json, run_tool, tool_schema

LOG = logging.getLogger("test")

# ------------------------------------------------------------------------ options


def test_options_refuse_a_voice_of_the_other_dialect() -> None:
    with pytest.raises(ValueError, match="'marin' is not a beta voice"):
        OpenAIRealtimeOptions(model="gpt-4o-realtime-preview", dialect="beta", voice="marin")


def test_options_refuse_a_model_that_is_not_speech_to_speech() -> None:
    with pytest.raises(ValueError, match="not a realtime model"):
        OpenAIRealtimeOptions(model="gpt-4o")


def test_the_ga_session_of_pcm_audio_names_its_rate() -> None:
    session = session_config(OpenAIRealtimeOptions(audio_format=PCM_24K))
    assert isinstance(session, m.GASession)
    assert session.audio.input.format == m.GAFormat("audio/pcm", 24000)


# -------------------------------------------------------------------------- items


def test_each_new_item_plays_as_the_next_utterance_unless_one_is_given() -> None:
    book = ItemBook()
    utterances = [book.item("a").utterance, book.item("b", 7).utterance, book.item("c").utterance]
    assert utterances == [1, 7, 2]
    assert book.item("a").utterance == 1 and book.current is book.item("c")


def test_the_truncation_is_at_the_heard_position_and_sent_once() -> None:
    book = ItemBook()
    book.item("a").received = 8 * 900  # 900 ms of µ-law
    pos = PlayedPosition(utterance_id=1, played=0.4, sent=0.9, complete=False)
    assert book.truncation(pos, 8) == m.ItemTruncate(item_id="a", content_index=0, audio_end_ms=400)
    assert book.truncation(pos, 8) is None


def test_the_truncation_is_clamped_to_the_audio_received() -> None:
    book = ItemBook()
    book.item("a").received = 8 * 100
    pos = PlayedPosition(utterance_id=1, played=0.4, sent=0.4, complete=False)
    truncate = book.truncation(pos, 8)
    assert truncate is not None and truncate.audio_end_ms == 100


def test_a_completed_utterance_is_not_truncated() -> None:
    book = ItemBook()
    book.item("a").received = 800
    assert (
        book.truncation(PlayedPosition(utterance_id=1, played=0.1, sent=0.1, complete=True), 8)
        is None
    )


def test_only_the_newest_items_are_kept() -> None:
    book = ItemBook(keep=2)
    for item_id in "abc":
        book.item(item_id)
    assert book.find(1) is None and book.find(3) is not None


# ---------------------------------------------------------------------- responses


def test_no_response_is_requested_while_one_is_in_progress() -> None:
    queue = ResponseQueue()
    queue.created("r1")
    queue.say(Say(text="hello"))
    assert queue.next_request() is None
    queue.done("r1")
    request = queue.next_request()
    assert request is not None and request.response is not None
    assert request.response.instructions == "Say exactly this, nothing else: hello"


def test_the_tool_follow_up_waits_for_every_call_of_the_response() -> None:
    queue = ResponseQueue()
    queue.calls_pending.update({"c1", "c2"})
    queue.calls_pending.discard("c1")
    queue.outputs_sent = True
    assert queue.next_request() is None
    queue.calls_pending.discard("c2")
    assert queue.next_request() == m.ResponseCreate(response=None)


def test_the_message_of_a_said_response_plays_under_the_says_utterance_id() -> None:
    queue = ResponseQueue()
    queue.say(Say(text="one moment", utterance_id=42))
    assert queue.next_request() is not None
    queue.created("r1")
    assert queue.utterance_for("r2") is None
    assert queue.utterance_for("r1") == 42
    assert queue.utterance_for("r1") is None  # once


def test_waiting_says_are_bounded_and_the_oldest_dropped() -> None:
    queue = ResponseQueue(max_says=2)
    assert queue.say(Say(text="a")) and queue.say(Say(text="b"))
    assert not queue.say(Say(text="c"))
    assert [s.text for s in queue.says] == ["b", "c"]


# -------------------------------------------------------------------------- tools


def test_a_chat_completions_tool_is_flattened() -> None:
    spec = {"type": "function", "function": {"name": "lookup", "description": "Find."}}
    tool = tool_schema(spec)
    assert (tool.name, tool.description) == ("lookup", "Find.")
    assert tool.parameters == {"type": "object", "properties": {}}


def test_a_tool_without_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="with a name"):
        tool_schema({"type": "function", "parameters": {}})


@pytest.mark.anyio
async def test_a_failing_tool_handler_becomes_an_error_the_model_reads() -> None:
    async def broken(name: str, arguments: str) -> str:
        raise KeyError(arguments)

    output = await run_tool(broken, "lookup", "{}", 1.0, LOG)
    assert output == error_json("tool lookup failed: KeyError")


@pytest.mark.anyio
async def test_a_tool_handler_past_its_timeout_is_cancelled() -> None:
    cancelled = False

    async def slow(name: str, arguments: str) -> str:
        nonlocal cancelled
        try:
            await anyio.sleep_forever()
        finally:
            cancelled = True
        return ""  # unreachable: sleep_forever only ends by cancellation

    assert await run_tool(slow, "wait", "{}", 0.01, LOG) == error_json("tool wait timed out")
    assert cancelled
