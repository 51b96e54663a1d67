"""Per-turn timelines: grouping marks by turn, durations, barge-in reaction pairs."""

from __future__ import annotations

import logging

import pytest

from voicegraph import TimelineMark, Transcript
from voicegraph.timeline import TurnTimeline


def marks(turn: int, t0: float, stages: list[str]) -> list[TimelineMark]:
    return [TimelineMark(turn=turn, stage=s, time=t0 + 0.1 * i) for i, s in enumerate(stages)]


def test_a_turn_closes_at_its_first_mark_ack_with_durations_from_speech_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tl = TurnTimeline("call-1")
    caplog.set_level(logging.INFO, "voicegraph.timeline")
    for m in marks(
        2,
        10.0,
        [
            "caller_speech_end",
            "stt_final",
            "agent_first_token",
            "tts_first_audio",
            "first_audio_sent",
            "first_mark_ack",
        ],
    ):
        tl.on_event(m)
    tl.on_event(Transcript(text="ignored"))
    (rec,) = tl.turns
    ms = rec.durations_ms()
    assert [
        round(ms[k])
        for k in (
            "stt_final",
            "agent_first_token",
            "tts_first_audio",
            "first_audio_sent",
            "first_mark_ack",
        )
    ] == [100, 200, 300, 400, 500]
    assert round(ms["voice_to_voice"]) == 400
    assert '"call_id":"call-1","turn":2' in caplog.text


def test_a_later_turn_closes_earlier_open_turns_and_flush_closes_the_rest() -> None:
    tl = TurnTimeline("c")
    tl.on_event(TimelineMark(turn=1, stage="tts_first_audio", time=1.0))
    tl.on_event(TimelineMark(turn=2, stage="caller_speech_end", time=2.0))
    assert [r.turn for r in tl.turns] == [1]
    tl.flush()
    assert [r.turn for r in tl.turns] == [1, 2]
    assert tl.turns[1].durations_ms() == {}


def test_barge_in_decision_pairs_with_the_next_clear() -> None:
    tl = TurnTimeline("c")
    tl.on_event(TimelineMark(turn=-1, stage="barge_in_decision", time=5.0))
    tl.on_event(TimelineMark(turn=-1, stage="clear_sent", time=5.004))
    tl.on_event(TimelineMark(turn=-1, stage="clear_sent", time=9.0))  # a clear with no decision
    assert [tuple(b) for b in tl.barge_ins] == [(5.0, 5.004)]


def test_marks_no_turn_can_claim_are_ignored() -> None:
    tl = TurnTimeline("c")
    tl.on_event(TimelineMark(turn=0, stage="stt_final", time=1.0))
    tl.flush()
    assert list(tl.turns) == []
