"""Conversation nodes: turn detection, barge-in policy, heard-only history."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from enginekit import Sink
from hypothesis import given, strategies as st

from voicegraph import (
    DTMF,
    AgentText,
    Call,
    EndOfTurn,
    Graph,
    Hangup,
    Interrupt,
    PlayedPosition,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    Turn,
    Word,
    WordTimestamps,
)
from voicegraph.dialogue import heard_prefix
from voicegraph.nodes.conversation.agent import AgentNode
from voicegraph.nodes.conversation.barge_in import BargeIn, FalseInterrupt
from voicegraph.nodes.conversation.turns import TurnDetector


class Script:
    """An agent without an LLM: answers from a list, one reply per turn."""

    def __init__(self, *replies: str, end_on: str = "") -> None:
        self.replies = list(replies)
        self.turns: list[Turn] = []
        self.end_on = end_on

    async def respond(self, turn: Turn) -> AsyncIterator[str]:
        self.turns.append(turn)
        reply = self.replies.pop(0)
        for word in reply.split(" "):
            yield word + " "
            await anyio.lowlevel.checkpoint()
        if self.end_on and self.end_on in turn.text:
            turn.call.end_call("Bye.")
            yield "Bye."


async def _drive(node, feed, *, inputs=("in",)):  # type: ignore[no-untyped-def]
    """Run ``node`` in a call with a sink on every output; ``feed(call)`` injects frames."""
    g = Graph()
    g.add("node", node)
    sinks = {}
    for p in node.outputs:
        sinks[p.name] = g.add(f"sink_{p.name}", Sink())
        g.connect(f"node.{p.name}", f"sink_{p.name}")
    for p in node.inputs:
        if p.required:
            g.add(f"src_{p.name}", _Hold())
            g.connect(f"src_{p.name}", f"node.{p.name}")
    call = Call(g)
    async with anyio.create_task_group() as tg:
        tg.start_soon(call.run)
        await anyio.wait_all_tasks_blocked()
        await feed(call)
        await anyio.wait_all_tasks_blocked()
        call.stop()
    return {k: v.got for k, v in sinks.items()}, call


from voicegraph import Actor, Out  # noqa: E402


class _Hold(Actor):
    """Keeps an input open (a writer that never writes)."""

    outputs = (Out("out"),)

    async def run(self) -> None:
        await anyio.sleep_forever()


# ------------------------------------------------------------------ turn detector


@pytest.mark.anyio
async def test_turn_ends_on_speech_final_with_all_finals_joined() -> None:
    async def feed(call: Call) -> None:
        await call.inject("node", "stt", Transcript(text="book a", is_final=False))
        await call.inject("node", "stt", Transcript(text="book a table", is_final=True))
        await call.inject(
            "node", "stt", Transcript(text="for two", is_final=True, speech_final=True)
        )

    out, _ = await _drive(TurnDetector(), feed)
    assert [(f.text, f.reason) for f in out["out"]] == [("book a table for two", "speech_final")]


@pytest.mark.anyio
async def test_turn_ends_after_vad_silence_when_stt_never_says_speech_final() -> None:
    async def feed(call: Call) -> None:
        await call.inject("node", "vad", SpeechStarted(timestamp=0.0))
        await call.inject("node", "stt", Transcript(text="hello there", is_final=True))
        await call.inject("node", "vad", SpeechStopped(timestamp=1.0, capture_time=123.0))
        await anyio.sleep(0.08)

    out, _ = await _drive(TurnDetector(vad_silence=0.03), feed)
    assert [(f.text, f.reason, f.capture_time) for f in out["out"]] == [
        ("hello there", "vad_silence", 123.0)
    ]


@pytest.mark.anyio
async def test_speech_resuming_cancels_the_vad_deadline() -> None:
    async def feed(call: Call) -> None:
        await call.inject("node", "stt", Transcript(text="I want", is_final=True))
        await call.inject("node", "vad", SpeechStopped(timestamp=1.0))
        await call.inject("node", "vad", SpeechStarted(timestamp=1.01))
        await anyio.sleep(0.06)

    out, _ = await _drive(TurnDetector(vad_silence=0.03), feed)
    assert out["out"] == []


@pytest.mark.anyio
async def test_utterance_end_from_stt_ends_the_turn_and_silence_without_words_does_not() -> None:
    async def feed(call: Call) -> None:
        await call.inject("node", "vad", SpeechStopped(timestamp=1.0))
        await call.inject("node", "stt", EndOfTurn(reason="utterance_end"))
        await call.inject("node", "stt", Transcript(text="yes", is_final=True))
        await call.inject("node", "stt", EndOfTurn(reason="utterance_end"))
        await anyio.sleep(0.05)

    out, _ = await _drive(TurnDetector(vad_silence=0.01), feed)
    assert [(f.text, f.reason) for f in out["out"]] == [("yes", "utterance_end")]


# ------------------------------------------------------------------ barge-in


class Speaking:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


async def _barge(
    node: BargeIn, frames: list[tuple[str, object]], pause: float = 0.0
) -> list[object]:
    async def feed(call: Call) -> None:
        for port, frame in frames:
            await call.inject("node", port, frame)  # type: ignore[arg-type]
        await anyio.sleep(pause)

    out, _ = await _drive(node, feed)
    return out["out"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("interruptible", "by_speech", "by_dtmf"),
    [("none", False, False), ("dtmf", False, True), ("speech", True, False), ("any", True, True)],
)
async def test_interruptible_setting_decides_what_interrupts(
    interruptible: str, by_speech: bool, by_dtmf: bool
) -> None:
    speech = await _barge(
        BargeIn(Speaking(True), interruptible, "high"), [("vad", SpeechStarted(capture_time=5.0))]
    )  # type: ignore[arg-type]
    dtmf = await _barge(BargeIn(Speaking(True), interruptible, "high"), [("dtmf", DTMF(digit="1"))])  # type: ignore[arg-type]
    assert [f.reason for f in speech if isinstance(f, Interrupt)] == (
        ["speech"] if by_speech else []
    )
    assert [f.reason for f in dtmf if isinstance(f, Interrupt)] == (["dtmf"] if by_dtmf else [])


@pytest.mark.anyio
async def test_speech_while_the_agent_is_silent_is_not_a_barge_in() -> None:
    out = await _barge(
        BargeIn(Speaking(False), "any", "high"),
        [("vad", SpeechStarted()), ("dtmf", DTMF(digit="2"))],
    )
    assert out == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sensitivity", "needs_words"), [("low", True), ("medium", False), ("high", False)]
)
async def test_low_sensitivity_waits_for_words_before_interrupting(
    sensitivity: str, needs_words: bool
) -> None:
    frames = [("vad", SpeechStarted(capture_time=1.0)), ("stt", Transcript(text="uh"))]
    out = await _barge(BargeIn(Speaking(True), "any", sensitivity), frames)  # type: ignore[arg-type]
    assert bool([f for f in out if isinstance(f, Interrupt)]) is (not needs_words)
    frames.append(("stt", Transcript(text="wait stop")))
    out = await _barge(BargeIn(Speaking(True), "any", sensitivity), frames)  # type: ignore[arg-type]
    interrupts = [f for f in out if isinstance(f, Interrupt)]
    assert len(interrupts) == 1 and interrupts[0].capture_time == 1.0


@pytest.mark.anyio
async def test_an_interruption_without_words_is_reported_as_false() -> None:
    out = await _barge(
        BargeIn(Speaking(True), "speech", "high", false_window=0.02),
        [("vad", SpeechStarted())],
        pause=0.06,
    )
    assert [type(f).__name__ for f in out] == ["Interrupt", "FalseInterrupt"]
    out = await _barge(
        BargeIn(Speaking(True), "speech", "high", false_window=0.02),
        [("vad", SpeechStarted()), ("stt", Transcript(text="actually"))],
        pause=0.06,
    )
    assert [type(f).__name__ for f in out] == ["Interrupt"]


# ------------------------------------------------------------------ heard text


@given(
    text=st.lists(st.text("abcdefg", min_size=1, max_size=6), min_size=1, max_size=12).map(
        " ".join
    ),
    played=st.floats(0, 20),
    sent=st.floats(0, 20),
)
def test_heard_prefix_is_always_a_word_prefix(text: str, played: float, sent: float) -> None:
    heard = heard_prefix(text, [], played, sent)
    assert text.startswith(heard)
    assert heard == "" or heard == text or text[len(heard)] == " "


def test_heard_prefix_uses_word_timestamps() -> None:
    words = [Word("Your", 0.0, 0.2), Word("order", 0.2, 0.5), Word("shipped.", 0.5, 0.9)]
    assert heard_prefix("Your order shipped.", words, played=0.6, sent=0.9) == "Your order"
    assert heard_prefix("Your order shipped.", words, played=1.0, sent=1.0) == "Your order shipped."
    assert heard_prefix("Your order shipped.", words, played=0.1, sent=1.0) == ""


# ------------------------------------------------------------------ agent node


@pytest.mark.anyio
async def test_greeting_and_reply_are_sent_as_agent_text_and_recorded_when_played() -> None:
    agent = Script("Table for two, done.")
    node = AgentNode(agent, greeting="Hello!")

    async def feed(call: Call) -> None:
        await call.inject(
            "node", "playback", PlayedPosition(utterance_id=1, played=1.0, sent=1.0, complete=True)
        )
        await call.inject("node", "turns", EndOfTurn(text="a table for two", capture_time=1.0))
        await anyio.wait_all_tasks_blocked()
        await call.inject(
            "node", "playback", PlayedPosition(utterance_id=2, played=2.0, sent=2.0, complete=True)
        )

    out, _ = await _drive(node, feed)
    texts = out["text"]
    assert texts[0] == AgentText(text="Hello!", utterance_id=1, last=True)
    assert "".join(f.text for f in texts if f.utterance_id == 2) == "Table for two, done. "
    assert texts[-1].last and texts[-1].utterance_id == 2
    assert node.llm_history() == [
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "a table for two"},
        {"role": "assistant", "content": "Table for two, done."},
    ]


@pytest.mark.anyio
async def test_barge_in_keeps_only_the_heard_words_in_history() -> None:
    agent = Script("Our opening hours are nine to five every weekday.", "Sure.")
    node = AgentNode(agent)

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", EndOfTurn(text="when are you open"))
        await anyio.wait_all_tasks_blocked()
        words = [
            Word(w, i * 0.3, i * 0.3 + 0.25)
            for i, w in enumerate("Our opening hours are nine to five every weekday.".split())
        ]
        await call.inject("node", "playback", WordTimestamps(utterance_id=1, words=tuple(words)))
        await call.inject("node", "control", Interrupt(reason="speech"))
        await call.inject(
            "node", "playback", PlayedPosition(utterance_id=1, played=1.0, sent=1.6, complete=False)
        )
        await call.inject("node", "turns", EndOfTurn(text="what about saturday"))
        await anyio.wait_all_tasks_blocked()

    await _drive(node, feed)
    history = node.llm_history()
    assert history[:3] == [
        {"role": "user", "content": "when are you open"},
        {"role": "assistant", "content": "Our opening hours"},
        {"role": "user", "content": "what about saturday"},
    ]
    assert agent.turns[1].history == history[:3][:2]


@pytest.mark.anyio
async def test_end_call_hangs_up_only_after_the_goodbye_was_played() -> None:
    node = AgentNode(Script("Okay.", end_on="bye"))
    seen: list[list[object]] = []

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", EndOfTurn(text="bye now"))
        await anyio.wait_all_tasks_blocked()
        seen.append(list(call.graph["sink_hangup"].got))  # type: ignore[attr-defined]
        await call.inject(
            "node", "playback", PlayedPosition(utterance_id=1, played=1.0, sent=1.0, complete=True)
        )

    out, _ = await _drive(node, feed)
    assert seen == [[]]
    assert out["hangup"] == [Hangup(reason="agent ended the call")]
    assert out["text"][-1].end_call is True


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "expected"),
    [("resume", "to five every weekday."), ("reprompt", "Sorry, go ahead."), ("ignore", None)],
)
async def test_false_interruption_resumes_or_reprompts(policy: str, expected: str | None) -> None:
    node = AgentNode(Script("Open nine to five every weekday."), on_false_interrupt=policy)  # type: ignore[arg-type]

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", EndOfTurn(text="hours?"))
        await anyio.wait_all_tasks_blocked()
        await call.inject("node", "control", Interrupt(reason="speech"))
        await call.inject(
            "node", "playback", PlayedPosition(utterance_id=1, played=0.9, sent=2.0, complete=False)
        )
        await call.inject("node", "control", FalseInterrupt())

    out, _ = await _drive(node, feed)
    resumed = [f for f in out["text"] if f.utterance_id == 2]
    if expected is None:
        assert resumed == []
    else:
        assert [f.text for f in resumed] == [expected]


@pytest.mark.anyio
async def test_managed_mode_counts_replies_heard_unless_the_carrier_reports_otherwise() -> None:
    from voicegraph.transports.twilio.relay import RelayInterrupt

    node = AgentNode(Script("The store opens at nine tomorrow.", "Okay."), acknowledged=False)

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", Transcript(text="when do you open", is_final=True))
        await anyio.wait_all_tasks_blocked()
        await call.inject("node", "control", RelayInterrupt(heard="The store opens", heard_ms=900))
        await call.inject("node", "turns", Transcript(text="ok", is_final=True))
        await anyio.wait_all_tasks_blocked()

    await _drive(node, feed)
    assert node.llm_history() == [
        {"role": "user", "content": "when do you open"},
        {"role": "assistant", "content": "The store opens"},
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "Okay."},
    ]


@pytest.mark.anyio
async def test_history_is_bounded_on_a_long_call() -> None:
    node = AgentNode(Script(*["Ok."] * 30), max_history=10)

    async def feed(call: Call) -> None:
        for i in range(30):
            await call.inject("node", "turns", EndOfTurn(text=f"turn {i}"))
            await anyio.wait_all_tasks_blocked()

    await _drive(node, feed)
    assert len(node.history) <= 20
    assert len(node.llm_history()) <= 10
    assert node.history[-2] == {"role": "user", "content": "turn 29"}
