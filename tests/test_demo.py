"""The offline demo end to end: `voicegraph demo` runs one whole call (real STT on the call's
audio, real TTS, AgentRuntime on loopback, simulated Twilio caller) and records it."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from voicegraph.agent import CallControl, Turn
from voicegraph.cli import main
from voicegraph.demo import FrontDesk, TrackRecorder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--out", str(out)])
    with open(out / "call.json") as f:
        record = json.load(f)
    with wave.open(str(out / "call.wav"), "rb") as w:
        channels, rate = w.getnchannels(), w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, channels)
    return {"code": code, "out": buf.getvalue(), "record": record, "frames": frames, "rate": rate}


def test_demo_exits_zero(demo: dict) -> None:
    assert demo["code"] == 0


def test_wav_is_stereo_with_both_sides_speaking(demo: dict) -> None:
    frames = demo["frames"]
    assert frames.shape[1] == 2 and demo["rate"] == 8000
    caller_loud = np.abs(frames[:, 0].astype(np.int32)) > 1000
    agent_loud = np.abs(frames[:, 1].astype(np.int32)) > 1000
    assert caller_loud.sum() > 8000 * 1.0  # over a second of caller speech
    assert agent_loud.sum() > 8000 * 3.0  # the agent talks more


def test_caller_and_agent_tracks_are_time_aligned(demo: dict) -> None:
    # the greeting plays before the caller's first line
    frames = demo["frames"]
    first_agent = np.argmax(np.abs(frames[:, 1].astype(np.int32)) > 1000)
    first_caller = np.argmax(np.abs(frames[:, 0].astype(np.int32)) > 1000)
    assert first_agent < first_caller


def test_record_ends_with_the_agent_hanging_up(demo: dict) -> None:
    rec = demo["record"]
    assert rec["reason"] == "hangup: agent ended the call"
    assert rec["audio"]["rest_hangups"] == 1


def test_record_has_the_booking_tool_call(demo: dict) -> None:
    names = [t["name"] for t in demo["record"]["tool_calls"]]
    assert "book_table" in names


def test_barge_in_cleared_playout_and_history_keeps_only_heard_text(demo: dict) -> None:
    rec = demo["record"]
    assert len(rec["barge_ins"]) >= 1
    assert rec["audio"]["carrier_clears"] >= 1
    cut = [e for e in rec["transcript"] if e["speaker"] == "agent" and e["interrupted"]]
    assert cut, "an agent utterance was interrupted"
    assert len(cut[0]["heard"]) < len(cut[0]["text"])
    said = [m["content"] for m in rec["history"] if m["role"] == "assistant"]
    assert cut[0]["text"] not in said


def test_record_has_latency_for_each_answered_turn(demo: dict) -> None:
    turns = [t for t in demo["record"]["latency"] if t["ms"]]
    assert len(turns) >= 2
    for t in turns:
        assert {"stt_final", "agent_first_token", "tts_first_audio", "first_audio_sent"} <= set(
            t["ms"]
        )


def test_transcript_printed_live_with_goodbye(demo: dict) -> None:
    out = demo["out"]
    assert "caller" in out and "latency ms" in out
    assert "goodbye" in out.lower()
    assert "call.wav" in out


# ---------------------------------------------------------------- the agent alone


async def _reply(agent: FrontDesk, text: str) -> tuple[str, CallControl]:
    control = CallControl(can_transfer=False)
    turn = Turn(text, [], control, index=1)
    return "".join([c async for c in agent.respond(turn)]), control


@pytest.mark.anyio
async def test_front_desk_books_with_the_heard_party_size() -> None:
    agent = FrontDesk()
    said, _ = await _reply(agent, "i would like to book a table for four")
    assert agent.booking is not None and agent.booking["party_size"] == 4
    assert "4 people" in said


@pytest.mark.anyio
async def test_front_desk_says_aloud_when_it_assumes_two() -> None:
    agent = FrontDesk()
    said, _ = await _reply(agent, "book a table")
    assert agent.booking is not None and agent.booking["party_size"] == 2
    assert "did not catch how many" in said


@pytest.mark.anyio
async def test_front_desk_changes_party_size_through_the_tool() -> None:
    agent = FrontDesk()
    await _reply(agent, "book a table for two")
    await _reply(agent, "wait make it three people")
    assert [t.name for t in agent.tool_calls] == ["book_table", "change_party_size"]
    assert agent.booking is not None and agent.booking["party_size"] == 3


@pytest.mark.anyio
async def test_front_desk_ends_the_call_on_thanks() -> None:
    said, control = await _reply(FrontDesk(), "that's all thank you")
    assert control.ending == said


# ---------------------------------------------------------------- recording


def test_track_recorder_places_audio_at_its_time_and_never_overlaps() -> None:
    t = TrackRecorder(8000)
    t.add(0.5, b"\x01\x00" * 800)  # 0.1 s at 0.5 s
    t.add(0.55, b"\x02\x00" * 80)  # overlaps: goes right after the first piece
    pcm = np.frombuffer(t.pcm, "<i2")
    assert (pcm[:4000] == 0).all() and (pcm[4000:4800] == 1).all() and (pcm[4800:] == 2).all()


def test_track_recorder_counts_audio_beyond_its_bound() -> None:
    t = TrackRecorder(8000, max_seconds=1.0)
    t.add(0.9, b"\x01\x00" * 1600)  # 0.2 s, only 0.1 s fits
    assert t.seconds == pytest.approx(1.0)
    assert t.dropped_seconds == pytest.approx(0.1)
