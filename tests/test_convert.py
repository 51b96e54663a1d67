"""make_converter: the stage Graph.connect(convert=True) inserts between differing formats."""

from __future__ import annotations

import numpy as np
import pytest

from voicegraph import DTMF, Actor, AudioFormat, AudioFrame, Call, Graph, In, Out
from voicegraph.nodes.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voicegraph.nodes.audio.pcm import AudioInputError
from voicegraph.nodes.convert import AudioConverter, make_converter

MULAW8 = AudioFormat("mulaw", 8000)
PCM8 = AudioFormat("pcm16", 8000)
PCM16K = AudioFormat("pcm16", 16000)
PCM24K = AudioFormat("pcm16", 24000)


def tone(rate: int, seconds: float = 0.2, hz: float = 440.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def convert_all(stage, frames: list[AudioFrame]) -> list[AudioFrame]:
    out = [r for f in frames if (r := stage.process("in", f)) is not None]
    tail = stage.finish()
    return out + ([tail] if tail is not None else [])


def split(data: bytes, fmt: AudioFormat) -> list[AudioFrame]:
    n = fmt.bytes_for(0.02)
    return [
        AudioFrame(data=data[i : i + n], encoding=fmt.encoding, sample_rate=fmt.sample_rate)
        for i in range(0, len(data), n)
    ]


def test_mulaw_to_pcm16_same_rate_is_the_decoder() -> None:
    data = pcm16_to_ulaw(tone(8000))
    out = convert_all(make_converter(MULAW8, PCM8), split(data, MULAW8))
    assert b"".join(f.data for f in out) == ulaw_to_pcm16(data)


def test_pcm16_to_mulaw_same_rate_is_the_encoder() -> None:
    data = tone(8000)
    out = convert_all(make_converter(PCM8, MULAW8), split(data, PCM8))
    assert b"".join(f.data for f in out) == pcm16_to_ulaw(data)
    assert {f.format for f in out} == {MULAW8}


def test_mulaw_8k_to_pcm16_16k_decodes_then_resamples_to_full_length() -> None:
    data = pcm16_to_ulaw(tone(8000, 0.4))
    out = convert_all(make_converter(MULAW8, PCM16K), split(data, MULAW8))
    assert {f.format for f in out} == {PCM16K}
    assert sum(len(f.data) for f in out) == PCM16K.bytes_for(0.4)


def test_pcm16_24k_to_mulaw_8k_resamples_then_encodes() -> None:
    out = convert_all(make_converter(PCM24K, MULAW8), split(tone(24000, 0.4), PCM24K))
    assert {f.format for f in out} == {MULAW8}
    assert sum(len(f.data) for f in out) == MULAW8.bytes_for(0.4)


def test_converted_tone_keeps_its_level() -> None:
    out = convert_all(make_converter(PCM24K, PCM8), split(tone(24000, 0.4), PCM24K))
    x = np.frombuffer(b"".join(f.data for f in out), dtype="<i2").astype(float)
    rms = np.sqrt(np.mean(x[400:-400] ** 2))
    assert rms == pytest.approx(8000 / np.sqrt(2), rel=0.02)


def test_converter_ports_pin_both_formats() -> None:
    stage = make_converter(MULAW8, PCM16K)
    assert stage.input("in").format == MULAW8
    assert stage.output("out").format == PCM16K


def test_converter_passes_non_audio_frames_through() -> None:
    digit = DTMF(digit="1")
    assert make_converter(MULAW8, PCM16K).process("in", digit) is digit


def test_converter_rejects_audio_in_another_format() -> None:
    with pytest.raises(AudioInputError, match="pcm16/8000 audio but expects mulaw/8000"):
        make_converter(MULAW8, PCM16K).process("in", AudioFrame(data=b"\0\0", sample_rate=8000))


def test_unknown_encoding_is_a_construction_error() -> None:
    with pytest.raises(ValueError, match="unknown encoding 'alaw'"):
        AudioConverter(AudioFormat("alaw", 8000), PCM8)  # type: ignore[arg-type]


class Source(Actor):
    outputs = (Out("out", AudioFrame, format=MULAW8),)

    def __init__(self, frames: list[AudioFrame]) -> None:
        super().__init__()
        self.frames = frames

    async def run(self) -> None:
        for f in self.frames:
            await self.send("out", f)


class Sink(Actor):
    inputs = (In("in", AudioFrame, format=PCM16K),)

    def __init__(self) -> None:
        super().__init__()
        self.got: list[AudioFrame] = []

    async def handle(self, port: str, frame) -> None:
        self.got.append(frame)


@pytest.mark.anyio
async def test_graph_connect_with_convert_inserts_a_working_converter() -> None:
    data = pcm16_to_ulaw(tone(8000, 0.4))
    g = Graph()
    g.add("src", Source(split(data, MULAW8)))
    sink = g.add("sink", Sink())
    g.connect("src", "sink", convert=True)
    assert isinstance(g["src_to_sink_convert"], AudioConverter)
    result = await Call(g).run()
    assert result.reason == "completed"
    assert sum(len(f.data) for f in sink.got) == PCM16K.bytes_for(0.4)  # flushed at the end
