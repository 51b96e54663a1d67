"""The answering-machine policy node on its own: what it holds back, when it speaks, when it
hangs up."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from enginekit import Sink, Source

from voicegraph import (
    AgentText,
    AnsweredBy,
    AudioFormat,
    AudioFrame,
    Call,
    Graph,
    Hangup,
    PlayedPosition,
)
from voicegraph.nodes.conversation.amd import VOICEMAIL_UTTERANCE, AnsweringMachine

PCM = AudioFormat("pcm16", 8000)
LOUD = AudioFrame(data=(np.full(160, 8000, "<i2")).tobytes())
QUIET = AudioFrame(data=bytes(320))


def _graph(frames: list[AudioFrame], **kw: object) -> tuple[Graph, AnsweringMachine, Sink]:
    g = Graph("amd")
    g.add("src", Source(frames, delay=0.02))
    node = AnsweringMachine(PCM, **kw)  # type: ignore[arg-type]
    g.add("answering", node)
    sink = Sink(ports=("audio", "agent", "say", "hangup"))
    g.add("sink", sink)
    g.connect("src", "answering.audio")
    for port in ("audio", "agent", "say", "hangup"):
        g.connect(f"answering.{port}", f"sink.{port}")
    return g, node, sink


@pytest.mark.anyio
async def test_without_a_verdict_the_call_opens_as_unknown_after_the_timeout() -> None:
    g, node, sink = _graph([QUIET] * 40, voicemail="Bye.", verdict_timeout=0.2)
    await Call(g).run()
    assert node.verdict is not None and node.verdict.result == "unknown"
    assert sink.got[0] == node.verdict  # the agent hears of it first, then the audio flows
    heard = [f for f, p in zip(sink.got, sink.ports, strict=True) if p == "audio"]
    assert 0 < len(heard) < 40  # audio before the verdict was held back


@pytest.mark.anyio
async def test_a_machine_gets_the_message_after_its_greeting_then_a_hang_up() -> None:
    frames = [LOUD] * 10 + [QUIET] * 60
    g, node, sink = _graph(frames, voicemail="Please call back.", beep_silence=0.3)
    call = Call(g)

    async def drive() -> None:
        await call.inject("answering", "verdict", AnsweredBy(result="machine", detail="true"))
        with anyio.fail_after(5):
            while node.state != "leaving":  # noqa: ASYNC110 (the node announces nothing)
                await anyio.sleep(0.01)
        played = PlayedPosition(
            utterance_id=VOICEMAIL_UTTERANCE, played=1.0, sent=1.0, complete=True
        )
        await call.inject("answering", "playback", played)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await call.run()
    said = [f for f in sink.got if isinstance(f, AgentText)]
    assert [s.text for s in said] == ["Please call back."]
    assert [f.reason for f in sink.got if isinstance(f, Hangup)] == ["voicemail left"]
    assert not [p for p in sink.ports if p == "audio"]  # the machine's audio never went on
    assert node.state == "done"


@pytest.mark.anyio
async def test_a_machine_is_hung_up_on_at_once_without_a_voicemail_message() -> None:
    g, node, sink = _graph([LOUD] * 30, voicemail=None)
    call = Call(g)
    async with anyio.create_task_group() as tg:
        tg.start_soon(call.inject, "answering", "verdict", AnsweredBy(result="machine"))
        await call.run()
    assert [type(f).__name__ for f in sink.got] == ["AnsweredBy", "Hangup"]
