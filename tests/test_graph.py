"""Graph builder: composition, build-time validation errors naming both ends, Mermaid."""

from __future__ import annotations

import pytest
from enginekit import MapStage, PassActor, Sink, Source

from voicegraph import (
    Actor,
    AudioFormat,
    AudioFormatMismatch,
    AudioFrame,
    FrameTypeMismatch,
    Graph,
    IllegalCycle,
    In,
    Interrupt,
    MarkAck,
    Out,
    Stage,
    Transcript,
    UnconnectedPort,
    UnknownNode,
    UnknownPort,
)

ULAW = AudioFormat("mulaw", 8000)
PCM16K = AudioFormat("pcm16", 16000)


class UlawOut(Actor):
    outputs = (Out("audio", AudioFrame, format=ULAW),)


class Pcm16kIn(Actor):
    inputs = (In("audio", AudioFrame, format=PCM16K),)


class TextOnly(Actor):
    inputs = (In("text", Transcript),)


class Playout(Actor):
    inputs = (In("audio", AudioFrame), In("acks", MarkAck, Interrupt, required=False))
    outputs = (Out("out", AudioFrame, Interrupt),)


def test_unknown_node_and_port_name_the_node_and_list_ports() -> None:
    g = Graph()
    g.add("src", Source([]))
    g.add("sink", Sink())
    with pytest.raises(UnknownNode, match="no node 'nope'"):
        g.connect("nope", "sink")
    with pytest.raises(UnknownPort, match=r"'src' has no output port 'audio' \(outputs: out\)"):
        g.connect("src.audio", "sink")


def test_frame_type_mismatch_names_both_nodes() -> None:
    g = Graph()
    g.add("mic", UlawOut())
    g.add("llm", TextOnly())
    with pytest.raises(
        FrameTypeMismatch,
        match=r"mic\.audio \(UlawOut\) -> llm\.text \(TextOnly\).*AudioFrame.*Transcript",
    ):
        g.connect("mic", "llm")


def test_audio_format_mismatch_names_both_nodes_and_formats() -> None:
    g = Graph()
    g.add("carrier", UlawOut())
    g.add("stt", Pcm16kIn())
    with pytest.raises(
        AudioFormatMismatch, match=r"carrier sends mulaw/8000 audio but stt expects pcm16/16000"
    ):
        g.connect("carrier", "stt")


def test_unconnected_required_input_is_reported() -> None:
    g = Graph()
    g.add("src", Source([]))
    g.add("a", PassActor())
    g.add("sink", Sink())
    g.connect("src", "sink")
    with pytest.raises(UnconnectedPort, match=r"required input a\.in"):
        g.validate()


def test_required_output_must_be_connected() -> None:
    class MustSend(Actor):
        outputs = (Out("out", required=True),)

    g = Graph()
    g.add("m", MustSend())
    with pytest.raises(UnconnectedPort, match=r"required output m\.out"):
        g.validate()


def test_blocking_cycle_is_illegal_but_feedback_edge_makes_it_legal() -> None:
    g = Graph()
    g.add("src", Source([]))
    g.add("play", Playout())
    g.add("carrier", PassActor())
    g.connect("src", "play.audio")
    g.connect("play", "carrier")
    g.connect("carrier", "play.acks", types=(MarkAck,))
    with pytest.raises(IllegalCycle, match="play -> carrier -> play"):
        g.validate()
    g.edges.pop()
    g.connect("carrier", "play.acks", types=(MarkAck,), feedback=True)
    g.validate()


def test_feedback_edge_may_not_carry_media() -> None:
    g = Graph()
    g.add("play", Playout())
    g.add("carrier", PassActor())
    with pytest.raises(IllegalCycle, match="may carry only control and event"):
        g.connect("carrier", "play.audio", feedback=True)


def test_cycle_of_inline_stages_is_illegal_when_fused() -> None:
    g = Graph()
    g.add("a", MapStage(lambda f: f))
    g.add("b", MapStage(lambda f: f))
    g.connect("a", "b")
    g.connect("b", "a", policy="drop_oldest")
    with pytest.raises(IllegalCycle, match="only of inline stages"):
        g.validate()


def test_edge_type_filter_must_be_something_the_source_emits() -> None:
    g = Graph()
    g.add("play", Playout())
    g.add("sink", Sink())
    with pytest.raises(FrameTypeMismatch, match="Transcript is never emitted"):
        g.connect("play", "sink", types=(Transcript,))


def test_replace_keeps_edges_and_rechecks_them() -> None:
    g = Graph()
    g.add("src", Source([]))
    g.add("mid", PassActor())
    g.add("sink", Sink())
    g.chain("src", "mid", "sink")
    g.replace("mid", MapStage(lambda f: f))
    assert isinstance(g["mid"], Stage) and len(g.edges) == 2
    with pytest.raises(UnknownPort, match="sink has no port 'in'"):
        g.replace("sink", TextOnly())
    assert isinstance(g["sink"], Sink)  # the failed replace left the graph as it was
    g.validate()


def test_insert_splices_a_node_after_a_port() -> None:
    g = Graph()
    g.add("src", Source([]))
    g.add("sink", Sink())
    g.connect("src", "sink")
    g.insert("meter", MapStage(lambda f: f), after="src.out")
    assert [(e.src, e.dst) for e in g.edges] == [("src", "meter"), ("meter", "sink")]


def test_mermaid_shows_actors_stages_formats_policies_and_feedback() -> None:
    g = Graph()
    g.add("carrier", UlawOut())
    g.add("play", Playout())
    g.add("tap", MapStage(lambda f: f))
    g.add("echo", PassActor())
    g.connect("carrier", "tap", policy="drop_oldest")
    g.connect("tap", "play.audio")
    g.connect("play", "echo")
    g.connect("echo", "play.acks", types=(Interrupt,), feedback=True)
    text = g.to_mermaid()
    assert text.startswith("flowchart LR\n")
    assert 'carrier["carrier<br/><small>UlawOut</small>"]' in text
    assert 'tap(["tap<br/><small>MapStage</small>"])' in text
    assert 'carrier -->|"AudioFrame mulaw/8000 drop_oldest"| tap' in text
    assert 'echo -.->|"Interrupt"| play' in text


def test_duplicate_names_and_non_nodes_are_rejected() -> None:
    g = Graph()
    g.add("a", Sink())
    with pytest.raises(ValueError, match="already has a node named 'a'"):
        g.add("a", Sink())
    with pytest.raises(TypeError, match="expected an Actor or Stage"):
        g.add("b", object())  # type: ignore[arg-type]
