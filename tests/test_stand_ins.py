"""Stand-in carriers: the carrier nodes a call would get, over a socket nothing is connected to
(what `voicegraph graph`, the docs' pictures and the start-up preflight build presets around)."""

from __future__ import annotations

import pytest

from voicegraph import AudioFormat, GraphError
from voicegraph.presets import sketch, stand_in_carrier


def test_managed_mode_gets_the_relay_nodes_and_no_audio_format() -> None:
    carrier = stand_in_carrier("managed", "twilio")
    assert carrier.audio_format is None
    assert {p.name for p in carrier.carrier_in.outputs} >= {"text", "control"}


def test_twilio_media_streams_carry_mulaw_8k() -> None:
    carrier = stand_in_carrier("cascading", "twilio")
    assert carrier.audio_format == AudioFormat("mulaw", 8000)
    assert carrier.carrier_in.output("audio").format == AudioFormat("mulaw", 8000)


def test_a_plivo_stream_carries_the_format_asked_for() -> None:
    fmt = AudioFormat("pcm16", 8000)
    carrier = stand_in_carrier("realtime", "plivo", fmt)
    assert carrier.audio_format == fmt
    assert carrier.carrier_in.output("audio").format == fmt


def test_managed_mode_on_plivo_is_refused() -> None:
    with pytest.raises(GraphError, match="managed mode is Twilio only"):
        stand_in_carrier("managed", "plivo")


def test_an_unknown_carrier_is_refused() -> None:
    with pytest.raises(GraphError, match="unknown carrier 'vonage'"):
        stand_in_carrier("cascading", "vonage")


def test_an_unknown_preset_is_refused_by_sketch() -> None:
    with pytest.raises(GraphError, match="unknown preset 'echo'"):
        sketch("echo")


@pytest.mark.parametrize("mode", ["managed", "cascading", "realtime"])
def test_sketch_builds_each_preset_around_the_stand_ins(mode: str) -> None:
    g = sketch(mode, "twilio")
    assert g.name == mode
    g.validate()
