"""Answering sooner: preemptive replies, adaptive end of turn, backchannels, the early pause."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import numpy as np
import pytest
from test_conversation import Script, Speaking, _barge, _drive

from voicegraph import (
    AgentText,
    AudioFrame,
    Call,
    EndOfTurn,
    Interrupt,
    PlayedPosition,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    Word,
    WordTimestamps,
)
from voicegraph.nodes.audio import VAD, EnergyAnalyser
from voicegraph.nodes.conversation.agent import AgentNode
from voicegraph.nodes.conversation.barge_in import BargeIn
from voicegraph.nodes.conversation.turn_policy import (
    AdaptiveTurnDetector,
    Backchannel,
    EarlyTurn,
    TurnContinues,
    TurnPolicy,
    turn_policy,
)


class Slow(Script):
    """A scripted agent that records whether its reply stream was closed early."""

    def __init__(self, *replies: str) -> None:
        super().__init__(*replies)
        self.closed_early = 0

    async def respond(self, turn):  # type: ignore[no-untyped-def]
        self.turns.append(turn)
        reply = self.replies.pop(0)
        try:
            for word in reply.split(" "):
                yield word + " "
                await anyio.lowlevel.checkpoint()
        except BaseException:
            self.closed_early += 1
            raise


# ------------------------------------------------------------------ preemptive replies


@pytest.mark.anyio
async def test_preemptive_reply_cancelled_on_continued_speech_leaves_no_audio_and_no_history() -> (
    None
):
    agent = Slow("Sure, for what time?")
    node = AgentNode(agent)

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", EarlyTurn(text="I would like to book a table."))
        await anyio.wait_all_tasks_blocked()
        await call.inject("node", "turns", TurnContinues())
        await anyio.wait_all_tasks_blocked()

    out, _ = await _drive(node, feed)
    assert [t.text for t in agent.turns] == ["I would like to book a table."]  # it did start
    assert agent.closed_early == 1
    assert out["text"] == []  # nothing reached the TTS, so nothing was played
    assert node.history == [] and node.llm_history() == []


@pytest.mark.anyio
async def test_confirmed_turn_plays_the_held_reply_without_asking_again() -> None:
    agent = Slow("Sure, for what time?")
    node = AgentNode(agent)
    held: list[list[AgentText]] = []

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", EarlyTurn(text="Book a table."))
        await anyio.wait_all_tasks_blocked()
        held.append(list(call.graph["sink_text"].got))
        await call.inject("node", "turns", EndOfTurn(text="book a  table."))
        await anyio.wait_all_tasks_blocked()
        await call.inject(
            "node", "playback", PlayedPosition(utterance_id=1, played=1.0, sent=1.0, complete=True)
        )

    out, _ = await _drive(node, feed)
    assert held == [[]]  # held until the turn was confirmed
    assert len(agent.turns) == 1
    assert "".join(f.text for f in out["text"]) == "Sure, for what time? "
    assert out["text"][-1].last
    assert node.llm_history() == [
        {"role": "user", "content": "Book a table."},
        {"role": "assistant", "content": "Sure, for what time?"},
    ]
    assert (node.preempted, node.preempt_used) == (1, 1)


@pytest.mark.anyio
async def test_confirmed_turn_with_more_words_replaces_the_held_reply() -> None:
    agent = Slow("Sure.", "A table for two, done.")
    node = AgentNode(agent)

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", EarlyTurn(text="I would like to book"))
        await anyio.wait_all_tasks_blocked()
        await call.inject("node", "turns", EndOfTurn(text="I would like to book a table for two"))
        await anyio.wait_all_tasks_blocked()

    out, _ = await _drive(node, feed)
    assert [t.text for t in agent.turns] == [
        "I would like to book",
        "I would like to book a table for two",
    ]
    assert "".join(f.text for f in out["text"]) == "A table for two, done. "
    assert [m["content"] for m in node.history if m["role"] == "user"] == [
        "I would like to book a table for two"
    ]


# ------------------------------------------------------------------ adaptive end of turn


@pytest.mark.parametrize(
    ("text", "asked", "ending"),
    [
        ("I would like to book a table for two.", False, "complete"),
        ("Can you do seven?", False, "complete"),
        ("seven thirty", True, "complete"),
        ("seven thirty", False, "open"),
        ("I would like to book a table", False, "open"),
        ("I would like to book, um", False, "hesitant"),
        ("I would like to book, um.", False, "hesitant"),
        ("a table for two and", False, "hesitant"),
        ("I need it for", False, "hesitant"),
        ("so,", False, "hesitant"),
    ],
)
def test_transcript_ending_classification(text: str, asked: bool, ending: str) -> None:
    assert turn_policy("medium").ending(text, asked) == ending


@pytest.mark.parametrize("sensitivity", ["low", "medium", "high"])
def test_windows_grow_from_complete_to_open_to_hesitant(sensitivity: str) -> None:
    p = turn_policy(sensitivity)
    assert p.window("Yes.") < p.window("I would like to book") < p.window("I would like, um")


def test_a_policy_with_windows_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError, match="complete <= open <= hesitant"):
        TurnPolicy(complete=0.8, open=0.5)
    with pytest.raises(ValueError, match="no word lists for language"):
        TurnPolicy(language="xx")


_FAST = TurnPolicy(complete=0.01, open=0.02, hesitant=5.0, pause=0.005)


async def _detect(frames: list[tuple[str, object]], wait: float = 0.1, **kw: object) -> list:
    async def feed(call: Call) -> None:
        for port, frame in frames:
            await call.inject("node", port, frame)  # type: ignore[arg-type]
            await anyio.wait_all_tasks_blocked()  # in order: control frames overtake media
        await anyio.sleep(wait)

    out, _ = await _drive(AdaptiveTurnDetector(kw.pop("policy", _FAST), **kw), feed)  # type: ignore[arg-type]
    return out["out"]


@pytest.mark.anyio
async def test_a_finished_sentence_ends_the_turn_after_the_short_window() -> None:
    out = await _detect(
        [
            ("vad", SpeechStarted()),
            ("stt", Transcript(text="Book a table for two.", is_final=True)),
            ("vad", SpeechPaused(silence=0.005)),
        ]
    )
    assert [type(f).__name__ for f in out] == ["EarlyTurn", "EndOfTurn"]
    assert out[0].text == out[1].text == "Book a table for two."


@pytest.mark.anyio
async def test_a_hesitation_waits_for_the_long_window_and_prepares_nothing() -> None:
    out = await _detect(
        [
            ("vad", SpeechStarted()),
            ("stt", Transcript(text="I would like to book, um", is_final=True)),
            ("vad", SpeechPaused(silence=0.005)),
            ("vad", SpeechStopped()),
        ]
    )
    assert out == []


@pytest.mark.anyio
async def test_the_stt_endpoint_does_not_end_a_hesitant_turn() -> None:
    out = await _detect(
        [("stt", Transcript(text="a table for two and", is_final=True, speech_final=True))]
    )
    assert out == []
    out = await _detect(
        [("stt", Transcript(text="a table for two", is_final=True, speech_final=True))]
    )
    assert [(type(f).__name__, f.reason) for f in out] == [("EndOfTurn", "speech_final")]


@pytest.mark.anyio
async def test_speech_resuming_withdraws_the_early_turn_and_the_turn_goes_on() -> None:
    slow = TurnPolicy(complete=0.5, open=0.6, hesitant=1.0, pause=0.005)
    out = await _detect(
        [
            ("vad", SpeechStarted()),
            ("stt", Transcript(text="I would like to book", is_final=True)),
            ("vad", SpeechPaused(silence=0.005)),
            ("vad", SpeechResumed()),
            ("stt", Transcript(text="a table for two.", is_final=True)),
        ],
        wait=0.05,
        policy=slow,
    )
    assert [type(f).__name__ for f in out] == ["EarlyTurn", "TurnContinues"]


# ------------------------------------------------------------------ backchannels


@pytest.mark.parametrize(
    ("text", "yes"),
    [("Mm-hmm.", True), ("okay", True), ("Uh huh, right.", True), ("Got it.", True)]
    + [("Okay, but what about Saturday?", False), ("No.", False), ("", False)],
)
def test_backchannel_word_list(text: str, yes: bool) -> None:
    assert turn_policy("medium").is_backchannel(text) is yes


def test_backchannel_words_are_per_language_and_configurable() -> None:
    assert turn_policy("medium", language="es").is_backchannel("vale")
    assert not turn_policy("medium").is_backchannel("vale")
    custom = turn_policy("medium", backchannels=frozenset({"roger"}))
    assert custom.is_backchannel("Roger.") and not custom.is_backchannel("okay")


@pytest.mark.anyio
async def test_an_acknowledgement_while_the_agent_speaks_is_a_backchannel_not_a_turn() -> None:
    out = await _detect(
        [
            ("vad", SpeechStarted()),
            ("stt", Transcript(text="Mm-hmm.", is_final=True)),
            ("vad", SpeechPaused(silence=0.005)),
        ],
        agent_speaking=lambda: True,
    )
    assert [(type(f).__name__, f.text) for f in out] == [("Backchannel", "Mm-hmm.")]
    out = await _detect(
        [
            ("vad", SpeechStarted()),
            ("stt", Transcript(text="Mm-hmm.", is_final=True)),
            ("vad", SpeechPaused(silence=0.005)),
        ],
        agent_speaking=lambda: False,
    )
    assert [type(f).__name__ for f in out] == ["EarlyTurn", "EndOfTurn"]  # an answer, then


@pytest.mark.anyio
async def test_backchannel_does_not_interrupt_when_words_decide() -> None:
    bc = turn_policy("low").is_backchannel
    frames = [("vad", SpeechStarted(capture_time=1.0)), ("stt", Transcript(text="mm-hmm okay"))]
    out = await _barge(BargeIn(Speaking(True), "any", "low", backchannel=bc), frames)  # type: ignore[arg-type]
    assert out == []


@pytest.mark.anyio
async def test_a_real_interruption_still_interrupts_at_once() -> None:
    bc = turn_policy("medium").is_backchannel
    low = [("vad", SpeechStarted(capture_time=1.0)), ("stt", Transcript(text="okay wait stop"))]
    out = await _barge(BargeIn(Speaking(True), "any", "low", backchannel=bc), low)  # type: ignore[arg-type]
    assert [(type(f).__name__, f.capture_time) for f in out] == [("Interrupt", 1.0)]
    medium = [("vad", SpeechStarted(capture_time=2.0))]
    out = await _barge(BargeIn(Speaking(True), "any", "medium", backchannel=bc), medium)  # type: ignore[arg-type]
    assert [type(f).__name__ for f in out] == ["Interrupt"]  # the VAD decides, as before


@pytest.mark.anyio
async def test_a_backchannel_is_kept_as_said_and_the_stopped_reply_goes_on() -> None:
    reply = "Our opening hours are nine to five every weekday."
    node = AgentNode(Script(reply))

    async def feed(call: Call) -> None:
        await call.inject("node", "turns", EndOfTurn(text="when are you open"))
        await anyio.wait_all_tasks_blocked()
        words = [Word(w, i * 0.3, i * 0.3 + 0.25) for i, w in enumerate(reply.split())]
        await call.inject("node", "playback", WordTimestamps(utterance_id=1, words=tuple(words)))
        await call.inject("node", "control", Interrupt(reason="speech"))
        await call.inject(
            "node", "playback", PlayedPosition(utterance_id=1, played=1.0, sent=1.6, complete=False)
        )
        await call.inject("node", "turns", Backchannel(text="Mm-hmm."))
        await anyio.wait_all_tasks_blocked()

    out, _ = await _drive(node, feed)
    assert node.llm_history() == [
        {"role": "user", "content": "when are you open"},
        {"role": "assistant", "content": "Our opening hours"},
        {"role": "user", "content": "Mm-hmm."},
    ]
    assert out["text"][-1] == AgentText(
        text="are nine to five every weekday.", utterance_id=2, last=True
    )


# ------------------------------------------------------------------ the early pause


def _frames(*parts: tuple[str, float]) -> list[AudioFrame]:
    rate, t, out = 8000, 0.0, []
    for kind, seconds in parts:
        n = int(rate * seconds)
        x = np.zeros(n) if kind == "quiet" else 8000 * np.sin(2 * np.pi * 200 * np.arange(n) / rate)
        data = x.astype("<i2").tobytes()
        for i in range(0, len(data), 320):
            out.append(AudioFrame(data=data[i : i + 320], sample_rate=rate, timestamp=t))
            t += 0.02
    return out


def _events(vad: VAD, frames: list[AudioFrame]) -> list[str]:
    names = []
    for f in frames:
        res = vad.process("in", f)
        if isinstance(res, tuple):
            names += [type(e).__name__ for e in res[1:]]
    return names


def test_the_vad_reports_an_early_pause_and_the_resumption_before_it_stops() -> None:
    vad = VAD(EnergyAnalyser(), "medium", pause=0.08)
    frames = _frames(("quiet", 0.5), ("voice", 0.6), ("quiet", 0.2), ("voice", 0.4), ("quiet", 1))
    assert _events(vad, frames) == [
        "SpeechStarted",
        "SpeechPaused",
        "SpeechResumed",
        "SpeechPaused",
        "SpeechStopped",
    ]
    plain = VAD(EnergyAnalyser(), "medium")
    assert _events(plain, frames) == ["SpeechStarted", "SpeechStopped"]


def test_an_early_pause_longer_than_the_stop_is_refused() -> None:
    with pytest.raises(ValueError, match="below the profile's min_silence"):
        VAD(EnergyAnalyser(), "medium", pause=0.6)


def test_early_pause_frames_are_stops_and_starts_for_existing_consumers() -> None:
    assert issubclass(SpeechPaused, SpeechStopped) and issubclass(SpeechResumed, SpeechStarted)
