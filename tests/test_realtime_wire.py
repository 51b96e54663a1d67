"""The official openai library judges the Realtime wire, offline: every event FakeOpenAIRealtime
sends validates against the library's server event types for its dialect (GA or beta) with no
undeclared fields, and every event OpenAIRealtime sends validates against the client types."""

from __future__ import annotations

import json
from typing import Any

import anyio
import numpy as np
import pytest

from voicegraph.nodes.realtime import OpenAIRealtime, messages as m
from voicegraph.testing.fake_openai_realtime import FakeOpenAIRealtime, RealtimeReply
from voicegraph.wsio import connect_websocket

MODELS = {"ga": "gpt-realtime", "beta": "gpt-4o-realtime-preview"}
TOOL = {"type": "function", "name": "lookup_order", "parameters": {"type": "object"}}


def _by_type(union: Any) -> dict[str, Any]:
    """The library's event classes by their ``type`` literal."""
    from typing import Union, get_args, get_origin

    while get_origin(union) is not Union:
        union = get_args(union)[0]  # unwrap Annotated[...]
    out = {}
    for cls in get_args(union):
        for kind in get_args(cls.model_fields["type"].annotation):
            out[kind] = cls
    return out


def _types(dialect: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if dialect == "ga":
        from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
    else:
        from openai.types.beta.realtime import RealtimeClientEvent, RealtimeServerEvent
    return _by_type(RealtimeServerEvent), _by_type(RealtimeClientEvent)


def judge(types: dict[str, Any], event: dict[str, Any]) -> list[str]:
    """What is wrong with ``event`` by the library's type for it (nothing: ``[]``)."""
    cls = types.get(event["type"])
    if cls is None:
        return [f"{event['type']}: not an event of this dialect"]
    try:
        parsed = cls.model_validate(event)
    except Exception as exc:  # pydantic's ValidationError names the fields
        return [f"{event['type']}: {exc}"]
    return [f"{event['type']}: undeclared {p}" for p in undeclared(parsed)]


def undeclared(value: Any, path: str = "$") -> list[str]:
    """Fields of a validated openai model (recursively) that its type does not declare."""
    from pydantic import BaseModel

    out: list[str] = []
    if isinstance(value, BaseModel):
        out += [f"{path}.{k}" for k in (value.model_extra or {})]
        for name in type(value).model_fields:
            out += undeclared(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += undeclared(v, f"{path}[{i}]")
    return out


def loud(ms: int) -> str:
    t = np.arange(24 * ms) / 24000
    pcm = (9000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    return m.encode(m.InputAudioAppend(audio=pcm))


def quiet(ms: int) -> str:
    return m.encode(m.InputAudioAppend(audio=bytes(48 * ms)))


async def conversation(dialect: str) -> tuple[list[dict[str, Any]], list[str]]:
    """A spoken turn and a tool call against the fake, driven with the client's own
    messages; returns every server event and every client event sent."""
    node = OpenAIRealtime(
        MODELS[dialect],
        api_key="test-key",
        dialect=dialect,  # type: ignore[arg-type]
        audio_format=m_pcm24(),
        tools=[TOOL],
        instructions="Be brief.",
    )
    replies = [RealtimeReply(tool="lookup_order", arguments="{}"), "Shipped."]
    server: list[dict[str, Any]] = []
    sent: list[str] = []
    async with FakeOpenAIRealtime(transcripts=["where is my order"], replies=replies) as fake:
        headers = dict(node.headers())
        url = f"{fake.url}?model={MODELS[dialect]}"
        async with connect_websocket(url, headers) as ws:

            async def send(text: str) -> None:
                sent.append(text)
                await ws.send(text)

            async def until(kind: str, count: int = 1) -> None:
                with anyio.fail_after(10):
                    while sum(e["type"] == kind for e in server) < count:
                        server.append(json.loads(await ws.receive()))

            await until("session.created")
            await send(m.encode(m.SessionUpdate(session=node.session())))
            await until("session.updated")
            for text in [loud(100)] * 4 + [quiet(100)] * 8:
                await send(text)
            await until("response.done")
            call = next(e for e in server if e["type"] == "response.function_call_arguments.done")
            output = m.FunctionCallOutput(call_id=call["call_id"], output='{"ok": true}')
            await send(m.encode(m.ItemCreate(item=output)))
            await send(m.encode(m.ResponseCreate()))
            await until("response.done", 2)
    return server, sent


def m_pcm24() -> Any:
    from voicegraph import AudioFormat

    return AudioFormat("pcm16", 24000)


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", ["ga", "beta"])
async def test_fake_server_events_are_what_the_openai_library_declares(dialect: str) -> None:
    types, _ = _types(dialect)
    server, _ = await conversation(dialect)
    assert [p for event in server for p in judge(types, event)] == []


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", ["ga", "beta"])
async def test_client_events_are_what_the_openai_library_declares(dialect: str) -> None:
    _, types = _types(dialect)
    _, sent = await conversation(dialect)
    assert [p for text in sent for p in judge(types, json.loads(text))] == []


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_a_replayed_history_is_what_the_openai_library_declares(dialect: str) -> None:
    from voicegraph import PlayedPosition
    from voicegraph.nodes.realtime.history import HeardHistory

    history = HeardHistory()
    history.caller("a table for two")
    history.reply(1, "Sure, a table for two at seven. Anything else?")
    history.played(PlayedPosition(utterance_id=1, played=1.0, sent=3.0))
    history.reply(2, "Never heard.")  # no played position: the caller heard none of it
    _, types = _types(dialect)
    events = [json.loads(m.encode(m.ItemCreate(item=i))) for i in history.items(dialect)]
    assert [p for e in events for p in judge(types, e)] == []
    texts = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in events]
    assert texts[0] == ("user", "a table for two")
    assert texts[1][0] == "assistant" and texts[1][1].startswith("Sure,")
    assert len(texts) == 2 and "Anything else?" not in texts[1][1]
