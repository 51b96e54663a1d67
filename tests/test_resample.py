"""Streaming resampler: chunking invariance, steady low latency, flush, frame bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from voicegraph import DTMF, AudioFrame
from voicegraph.nodes.audio.pcm import AudioInputError
from voicegraph.nodes.audio.resample import Resampler, StreamResampler

RATE_PAIRS = [(8000, 16000), (16000, 8000), (24000, 8000), (8000, 24000), (22050, 16000)]


def one_shot(signal: np.ndarray, src: int, dst: int) -> np.ndarray:
    rs = StreamResampler(src, dst)
    return np.concatenate([rs.push(signal), rs.flush()])


def chunked(signal: np.ndarray, src: int, dst: int, sizes: list[int]) -> np.ndarray:
    rs = StreamResampler(src, dst)
    outs, i = [], 0
    for n in sizes:
        outs.append(rs.push(signal[i : i + n]))
        i += n
    outs.append(rs.push(signal[i:]))
    outs.append(rs.flush())
    return np.concatenate(outs)


def speechlike(n: int, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    x = 6000 * np.sin(2 * np.pi * 220 * t) + 3000 * np.sin(2 * np.pi * 1250 * t)
    x += rng.normal(0, 2000, n)
    return np.clip(x, -32768, 32767).astype(np.int16)


@settings(max_examples=60, deadline=None)
@given(
    pair=st.sampled_from(RATE_PAIRS),
    sizes=st.lists(st.integers(min_value=0, max_value=900), max_size=30),
    seed=st.integers(0, 2**16),
)
def test_any_chunking_gives_the_one_shot_output_within_2_lsb(
    pair: tuple[int, int], sizes: list[int], seed: int
) -> None:
    src, dst = pair
    signal = speechlike(src // 2, src, seed)  # 0.5 s
    whole = one_shot(signal, src, dst)
    parts = chunked(signal, src, dst, sizes)
    assert parts.shape == whole.shape
    assert int(np.abs(parts.astype(np.int32) - whole.astype(np.int32)).max(initial=0)) <= 2


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS[:4])
def test_output_length_equals_input_duration_after_flush(src: int, dst: int) -> None:
    out = one_shot(speechlike(src, src, 1), src, dst)
    assert out.size == dst


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS[:4])
def test_twenty_ms_in_gives_twenty_ms_out_in_steady_state(src: int, dst: int) -> None:
    rs = StreamResampler(src, dst)
    signal = speechlike(src, src, 2)
    n = src // 50
    sizes = [rs.push(signal[i : i + n]).size for i in range(0, signal.size, n)]
    assert set(sizes[3:]) == {dst // 50}


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS[:4])
def test_lag_held_back_by_the_filter_is_at_most_30_ms(src: int, dst: int) -> None:
    rs = StreamResampler(src, dst)
    signal = speechlike(src, src, 3)
    n = src // 50
    released = sum(rs.push(signal[i : i + n]).size for i in range(0, signal.size, n))
    lag = (dst - released) / dst
    assert 0 <= lag <= 0.030


def test_resampled_sine_keeps_its_frequency() -> None:
    src, dst = 8000, 16000
    t = np.arange(src) / src
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    out = one_shot(tone, src, dst).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    peak_hz = np.argmax(spectrum) * dst / 12000
    assert abs(peak_hz - 1000) < 5


def frames(signal: np.ndarray, rate: int, t0: float = 0.0) -> list[AudioFrame]:
    n = rate // 50
    return [
        AudioFrame(
            data=signal[i : i + n].tobytes(),
            sample_rate=rate,
            timestamp=t0 + i / rate,
            capture_time=100.0 + i / rate,
            utterance_id=4,
        )
        for i in range(0, signal.size, n)
    ]


def run_stage(stage: Resampler, inputs: list) -> list:
    out: list = []
    for f in inputs:
        res = stage.process("in", f)
        if res is not None:
            out.extend([res] if not isinstance(res, (list, tuple)) else res)
    tail = stage.finish()
    if tail is not None:
        out.append(tail)
    return out


def test_stage_output_frames_are_contiguous_in_media_time() -> None:
    out = run_stage(Resampler(8000, 16000), frames(speechlike(8000, 8000, 5), 8000, t0=2.0))
    assert out[0].timestamp == 2.0
    for a, b in zip(out, out[1:], strict=False):
        assert b.timestamp == pytest.approx(a.timestamp + a.duration)
    assert sum(f.duration for f in out) == pytest.approx(1.0)


def test_stage_output_is_pcm16_at_the_destination_rate_with_the_utterance_id() -> None:
    out = run_stage(Resampler(24000, 8000), frames(speechlike(2400, 24000, 6), 24000))
    assert {(f.encoding, f.sample_rate, f.utterance_id) for f in out} == {("pcm16", 8000, 4)}


def test_stage_finish_flushes_the_tail_held_by_the_filter() -> None:
    stage = Resampler(8000, 16000)
    before = [stage.process("in", f) for f in frames(speechlike(800, 8000, 7), 8000)]
    held = 1600 - sum(len(f.data) // 2 for f in before if f is not None)
    tail = stage.finish()
    assert held > 0
    assert isinstance(tail, AudioFrame) and len(tail.data) // 2 == held


def test_stage_passes_non_audio_frames_through() -> None:
    digit = DTMF(digit="#")
    assert Resampler(8000, 16000).process("in", digit) is digit


def test_stage_rejects_audio_at_the_wrong_rate() -> None:
    with pytest.raises(AudioInputError, match="pcm16/16000 audio but expects pcm16/8000"):
        Resampler(8000, 16000).process("in", AudioFrame(data=b"\0\0" * 320, sample_rate=16000))


def test_stage_rejects_mulaw_audio() -> None:
    with pytest.raises(AudioInputError, match="mulaw/8000 audio but expects pcm16/8000"):
        Resampler(8000, 16000).process(
            "in", AudioFrame(data=b"\xff" * 160, encoding="mulaw", sample_rate=8000)
        )


def test_stage_rejects_odd_length_pcm() -> None:
    with pytest.raises(AudioInputError, match="even length"):
        Resampler(8000, 16000).process("in", AudioFrame(data=b"\0" * 321, sample_rate=8000))


def test_bad_rate_is_a_construction_error() -> None:
    with pytest.raises(ValueError, match="src_rate must be an integer"):
        Resampler(0, 8000)


def test_pushing_after_flush_is_an_error() -> None:
    rs = StreamResampler(8000, 16000)
    rs.flush()
    with pytest.raises(RuntimeError, match="already flushed"):
        rs.push(np.zeros(160, dtype=np.int16))
