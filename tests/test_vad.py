"""VAD: hysteresis rules with a scripted analyser, then every analyser on synthesised speech
(espeak-ng), silence and noise, per sensitivity."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from voicegraph import (
    DTMF,
    Actor,
    AudioFormat,
    AudioFormatMismatch,
    AudioFrame,
    Call,
    Graph,
    In,
    Kind,
    Out,
    SpeechStarted,
    SpeechStopped,
)
from voicegraph.nodes.audio.analysers import EnergyAnalyser, WebRTCAnalyser
from voicegraph.nodes.audio.g711 import MulawDecode
from voicegraph.nodes.audio.pcm import AudioInputError
from voicegraph.nodes.audio.resample import Resampler, StreamResampler
from voicegraph.nodes.audio.silero import SileroAnalyser, silero_model_path
from voicegraph.nodes.audio.vad import SENSITIVITY, VAD, VADProfile
from voicegraph.nodes.offline.espeak import EspeakSynth

# `make test` installs the silero-vad wheel without its torch dependency (see the Makefile), so
# Silero is tested everywhere; a missing model fails these tests with the install hint.
ANALYSERS = [EnergyAnalyser, WebRTCAnalyser, SileroAnalyser]
SENSITIVITIES = ["low", "medium", "high"]
LEAD_IN = 1.0  # seconds of silence before the speech


class Scripted:
    """An analyser that returns the given probabilities, one 20 ms window per call."""

    name = "scripted"

    def __init__(self, probs: list[float]) -> None:
        self.probs = list(probs)
        self.configured: tuple[int, str] | None = None

    def configure(self, sample_rate: int, sensitivity: str) -> None:
        self.configured = (sample_rate, sensitivity)

    def analyse(self, samples: np.ndarray) -> list[tuple[float, float]]:
        return [(self.probs.pop(0), 0.02)] if self.probs else []


def frame(i: int, rate: int = 8000, data: bytes | None = None) -> AudioFrame:
    n = rate // 50
    return AudioFrame(
        data=data if data is not None else bytes(2 * n),
        sample_rate=rate,
        timestamp=i * 0.02,
        capture_time=500.0 + i * 0.02,
    )


def events(vad: VAD, frames: list[AudioFrame], *, finish: bool = False) -> list:
    out = []
    for f in frames:
        res = vad.process("in", f)
        out.extend(x for x in (res if isinstance(res, tuple) else (res,)) if x is not f)
    tail = vad.finish() if finish else None
    if tail is not None:
        out.append(tail)
    return out


class Source(Actor):
    outputs = (Out("out", AudioFrame, DTMF, format=AudioFormat("mulaw", 8000)),)

    def __init__(self, frames: list) -> None:
        super().__init__()
        self.frames = frames

    async def run(self) -> None:
        for f in self.frames:
            await self.send("out", f)


class Sink(Actor):
    inputs = (In("in"),)

    def __init__(self) -> None:
        super().__init__()
        self.got: list = []

    async def handle(self, port: str, frame) -> None:
        self.got.append(frame)


PROFILE = VADProfile(start_threshold=0.6, stop_threshold=0.4, min_speech=0.06, min_silence=0.1)


def scripted_events(probs: list[float], *, finish: bool = False) -> list:
    vad = VAD(Scripted(probs), profile=PROFILE)
    return events(vad, [frame(i) for i in range(len(probs))], finish=finish)


# ---------------------------------------------------------------- hysteresis rules


def test_speech_starts_after_min_speech_above_the_start_threshold() -> None:
    got = scripted_events([0.0, 0.9, 0.9, 0.9, 0.9])
    assert got == [SpeechStarted(timestamp=0.06, capture_time=500.06)]  # third window


def test_speech_shorter_than_min_speech_does_not_start() -> None:
    assert scripted_events([0.9, 0.9, 0.1, 0.9, 0.9, 0.1]) == []


def test_window_between_thresholds_holds_the_count_towards_start() -> None:
    got = scripted_events([0.9, 0.5, 0.9, 0.9, 0.0])
    assert [type(e) for e in got] == [SpeechStarted]
    assert got[0].timestamp == pytest.approx(0.06)


def test_speech_stops_after_min_silence_below_the_stop_threshold() -> None:
    got = scripted_events([0.9] * 3 + [0.1] * 6)
    assert got[1] == SpeechStopped(
        timestamp=pytest.approx(0.14), capture_time=pytest.approx(500.14)
    )


def test_window_at_or_above_the_stop_threshold_keeps_speech_going() -> None:
    got = scripted_events([0.9] * 3 + [0.1] * 4 + [0.45] + [0.1] * 4)
    assert [type(e) for e in got] == [SpeechStarted]


def test_open_speech_is_closed_at_end_of_input() -> None:
    got = scripted_events([0.9] * 5, finish=True)
    assert [type(e) for e in got] == [SpeechStarted, SpeechStopped]
    assert got[1].timestamp == pytest.approx(0.1)


def test_audio_passes_through_unchanged_before_the_event() -> None:
    vad = VAD(Scripted([0.9] * 3), profile=PROFILE)
    frames = [frame(i, data=bytes([i]) * 320) for i in range(3)]
    outs = [vad.process("in", f) for f in frames]
    assert outs[0] is frames[0] and outs[1] is frames[1]
    assert outs[2][0] is frames[2] and isinstance(outs[2][1], SpeechStarted)


def test_dtmf_passes_through_as_a_control_frame() -> None:
    digit = DTMF(digit="7", timestamp=1.0)
    assert VAD(Scripted([])).process("in", digit) is digit


@pytest.mark.anyio
async def test_carrier_dtmf_crosses_the_inbound_audio_chain_as_a_control_frame() -> None:
    mulaw = [
        AudioFrame(data=b"\xff" * 160, encoding="mulaw", sample_rate=8000, timestamp=i * 0.02)
        for i in range(10)
    ]
    digit = DTMF(digit="#", timestamp=0.1)
    g = Graph()
    g.add("carrier_in", Source([*mulaw[:5], digit, *mulaw[5:]]))
    g.add("decode", MulawDecode())
    g.add("resample", Resampler(8000, 16000))
    g.add("vad", VAD(EnergyAnalyser(), sample_rate=16000))
    sink = g.add("sink", Sink())
    g.chain("carrier_in", "decode", "resample", "vad", "sink")
    result = await Call(g).run()
    assert result.reason == "completed"
    assert digit in sink.got
    assert digit.kind is Kind.CONTROL
    assert sum(f.duration for f in sink.got if isinstance(f, AudioFrame)) == pytest.approx(0.2)


def test_analyser_is_configured_with_the_stream_rate_and_sensitivity() -> None:
    analyser = Scripted([0.0])
    VAD(analyser, "high").process("in", frame(0, rate=16000))
    assert analyser.configured == (16000, "high")


def test_sensitivity_picks_its_row_of_the_table() -> None:
    assert VAD(Scripted([]), "low").profile == SENSITIVITY["low"]


def test_higher_sensitivity_needs_less_evidence_and_less_time() -> None:
    low, med, high = (SENSITIVITY[s] for s in SENSITIVITIES)
    assert low.start_threshold > med.start_threshold > high.start_threshold
    assert low.min_speech > med.min_speech > high.min_speech


class BinaryScripted(Scripted):
    """Scripted 0/1 decisions, like WebRTC's."""

    binary = True


@pytest.mark.parametrize(
    ("voiced", "starts"),
    [
        # a repeating pattern of 20 ms decisions with this share of voiced windows
        ([1, 1, 0, 1, 0], {"low": False, "medium": True, "high": True}),
        ([1, 0, 0, 1, 0], {"low": False, "medium": False, "high": False}),
        ([1, 1, 1, 1, 0], {"low": True, "medium": True, "high": True}),
    ],
)
def test_thresholds_apply_to_a_binary_analyser_as_the_share_of_voiced_windows(
    voiced: list[int], starts: dict[str, bool]
) -> None:
    for sensitivity, expected in starts.items():
        vad = VAD(BinaryScripted([float(v) for v in voiced * 20]), sensitivity)  # type: ignore[arg-type]
        got = events(vad, [frame(i) for i in range(100)])
        assert any(isinstance(e, SpeechStarted) for e in got) is expected, sensitivity


def test_a_binary_analyser_needs_more_evidence_at_low_sensitivity() -> None:
    # one cough-like burst of 160 ms of voiced windows: a start at high, none at low
    burst = [0.0] * 10 + [1.0] * 8 + [0.0] * 40
    fired = {}
    for sensitivity in SENSITIVITIES:
        vad = VAD(BinaryScripted(list(burst)), sensitivity)  # type: ignore[arg-type]
        got = events(vad, [frame(i) for i in range(len(burst))])
        fired[sensitivity] = any(isinstance(e, SpeechStarted) for e in got)
    assert fired == {"low": False, "medium": False, "high": True}


def test_sensitivity_table_in_docs_matches_the_code() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "audio.md").read_text()
    for name, prof in SENSITIVITY.items():
        row = re.search(rf"^\| {name} \|(.+)\|$", doc, re.M)
        assert row is not None, f"docs/audio.md has no sensitivity row for {name}"
        cells = [c.strip() for c in row.group(1).split("|")]
        assert cells[:4] == [
            f"{prof.start_threshold:g}",
            f"{prof.stop_threshold:g}",
            f"{round(prof.min_speech * 1000)} ms",
            f"{round(prof.min_silence * 1000)} ms",
        ]


# ------------------------------------------------------------------- bad input


def test_unknown_sensitivity_is_a_construction_error() -> None:
    with pytest.raises(ValueError, match="sensitivity must be one of low, medium, high"):
        VAD(Scripted([]), "extreme")  # type: ignore[arg-type]


def test_mulaw_audio_is_rejected_with_a_hint_to_decode() -> None:
    with pytest.raises(AudioInputError, match="decode it first"):
        VAD(Scripted([])).process(
            "in", AudioFrame(data=b"\xff" * 160, encoding="mulaw", sample_rate=8000)
        )


def test_unsupported_rate_is_rejected_with_a_hint_to_resample() -> None:
    with pytest.raises(AudioInputError, match="8000 or 16000 Hz audio, got 24000"):
        VAD(Scripted([])).process("in", AudioFrame(data=bytes(960), sample_rate=24000))


def test_rate_change_mid_stream_is_rejected() -> None:
    vad = VAD(Scripted([0.0, 0.0]))
    vad.process("in", frame(0, 8000))
    with pytest.raises(AudioInputError, match="changed mid-stream from 8000 to 16000"):
        vad.process("in", frame(1, 16000))


def test_empty_frame_is_rejected() -> None:
    with pytest.raises(AudioInputError, match="empty AudioFrame"):
        VAD(Scripted([])).process("in", AudioFrame(data=b"", sample_rate=8000))


def test_odd_length_pcm_is_rejected() -> None:
    with pytest.raises(AudioInputError, match="even length"):
        VAD(Scripted([])).process("in", AudioFrame(data=bytes(319), sample_rate=8000))


def test_pinned_rate_makes_a_wrong_edge_a_build_error_naming_both_nodes() -> None:
    g = Graph()
    g.add("decode", MulawDecode())
    g.add("vad", VAD(Scripted([]), sample_rate=16000))
    with pytest.raises(AudioFormatMismatch, match=r"decode\.out.*vad\.in.*pcm16/8000.*16000"):
        g.connect("decode", "vad")


def test_bad_webrtc_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode must be 0, 1, 2 or 3"):
        WebRTCAnalyser(mode=5)


# -------------------------------------------------------- analysers on real signals


@pytest.fixture(scope="module")
def spoken() -> np.ndarray:
    synth = EspeakSynth("en-us")
    return synth.synthesize(
        "Hello, I would like to book a table for two people tomorrow evening, please."
    )


def at_rate(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    rs = StreamResampler(src, dst)
    return np.concatenate([rs.push(samples), rs.flush()])


def clip(spoken: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    speech = at_rate(spoken, 22050, rate)
    silence = np.zeros(int(rate * LEAD_IN), dtype=np.int16)
    tail = np.zeros(int(rate * 1.5), dtype=np.int16)
    return np.concatenate([silence, speech, tail]), speech.size / rate


def noise(kind: str, rate: int, seconds: float = 4.0, dbfs: float = -40.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(int(rate * seconds))
    if kind == "brown":
        x = np.cumsum(x)
        x -= np.convolve(x, np.ones(200) / 200, "same")  # keep it centred
    x *= 10 ** (dbfs / 20) * 32768 / np.sqrt(np.mean(x**2))
    return np.clip(x, -32768, 32767).astype(np.int16)


def run_vad(analyser_cls, sensitivity: str, signal: np.ndarray, rate: int) -> list:
    vad = VAD(analyser_cls(), sensitivity)
    n = rate // 50
    frames = [
        AudioFrame(data=signal[i : i + n].tobytes(), sample_rate=rate, timestamp=i / rate)
        for i in range(0, signal.size - n + 1, n)
    ]
    return events(vad, frames)


@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
@pytest.mark.parametrize("analyser", ANALYSERS, ids=lambda a: a.name)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_speech_gives_one_start_near_its_onset_and_one_stop_after_it(
    spoken: np.ndarray, analyser, sensitivity: str, rate: int
) -> None:
    signal, speech_s = clip(spoken, rate)
    got = run_vad(analyser, sensitivity, signal, rate)
    assert [type(e) for e in got] == [SpeechStarted, SpeechStopped]
    prof = SENSITIVITY[sensitivity]
    assert LEAD_IN + prof.min_speech - 0.02 <= got[0].timestamp <= LEAD_IN + prof.min_speech + 0.4
    end = LEAD_IN + speech_s
    assert end - 0.3 <= got[1].timestamp <= end + prof.min_silence + 0.1


@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
@pytest.mark.parametrize("analyser", ANALYSERS, ids=lambda a: a.name)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_silence_gives_no_events(analyser, sensitivity: str, rate: int) -> None:
    assert run_vad(analyser, sensitivity, np.zeros(rate * 3, dtype=np.int16), rate) == []


@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
@pytest.mark.parametrize("analyser", ANALYSERS, ids=lambda a: a.name)
@pytest.mark.parametrize("kind", ["white", "brown"])
@pytest.mark.parametrize("rate", [8000, 16000])
def test_line_noise_gives_no_events(analyser, sensitivity: str, kind: str, rate: int) -> None:
    assert run_vad(analyser, sensitivity, noise(kind, rate), rate) == []


@pytest.mark.parametrize("analyser", ANALYSERS, ids=lambda a: a.name)
def test_higher_sensitivity_detects_speech_no_later(spoken: np.ndarray, analyser) -> None:
    signal, _ = clip(spoken, 8000)
    starts = [run_vad(analyser, s, signal, 8000)[0].timestamp for s in SENSITIVITIES]
    assert starts[0] >= starts[1] >= starts[2]


def test_energy_analyser_floor_absorbs_a_steady_hum_within_its_window() -> None:
    analyser = EnergyAnalyser(floor_window=2.0)
    analyser.configure(8000, "medium")
    t = np.arange(8000 * 4) / 8000
    hum = (0.03 * 32768 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)  # -33 dBFS, voiced-like
    signal = np.concatenate([np.zeros(8000, dtype=np.int16), hum])
    probs = [
        p for i in range(0, signal.size, 160) for p, _ in analyser.analyse(signal[i : i + 160])
    ]
    assert min(probs[50:60]) == 1.0  # a new sound stands out over the old floor at first
    assert max(probs[155:]) == 0.0  # 2 s later it is the floor


def test_webrtc_mode_follows_sensitivity_unless_given() -> None:
    derived, fixed = WebRTCAnalyser(), WebRTCAnalyser(mode=0)
    derived.configure(8000, "high")
    fixed.configure(8000, "high")
    assert (derived.mode, fixed.mode) == (None, 0)
    assert derived._vad is not fixed._vad


def test_webrtc_rechunks_odd_sized_frames_into_20_ms_windows() -> None:
    analyser = WebRTCAnalyser()
    analyser.configure(8000, "medium")
    windows = [w for _ in range(5) for w in analyser.analyse(np.zeros(100, dtype=np.int16))]
    assert windows == [(0.0, 0.02)] * 3  # 500 samples = three 160-sample windows + 20 held


def test_silero_model_path_does_not_import_the_torch_based_package() -> None:
    assert silero_model_path().name.endswith(".onnx")
    assert "silero_vad" not in sys.modules
    assert "torch" not in sys.modules


def test_silero_rechunks_20_ms_frames_into_32_ms_windows() -> None:
    analyser = SileroAnalyser()
    analyser.configure(16000, "medium")
    got = [w for _ in range(8) for w in analyser.analyse(np.zeros(320, dtype=np.int16))]
    assert [s for _, s in got] == [0.032] * 5  # 160 ms = five 32 ms windows


def test_webrtc_decides_whole_20_ms_frames_as_it_does_rechunked_ones() -> None:
    t = np.arange(8000) / 8000
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    hum = (6000 * voiced / np.abs(voiced).max()).astype(np.int16)
    signal = np.concatenate([np.zeros(4000, dtype=np.int16), hum, np.zeros(4000, dtype=np.int16)])
    whole, halves = WebRTCAnalyser(), WebRTCAnalyser()
    whole.configure(8000, "medium")
    halves.configure(8000, "medium")
    by_window = [w for i in range(0, signal.size, 160) for w in whole.analyse(signal[i : i + 160])]
    by_half = [w for i in range(0, signal.size, 80) for w in halves.analyse(signal[i : i + 80])]
    assert by_window == by_half
    assert {p for p, _ in by_window} == {0.0, 1.0}  # both decisions occur, so both were compared


def test_webrtc_reading_pcm_bytes_decides_as_it_does_from_samples() -> None:
    t = np.arange(8000) / 8000
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    hum = (6000 * voiced / np.abs(voiced).max()).astype(np.int16)
    signal = np.concatenate([np.zeros(4000, dtype=np.int16), hum, np.zeros(4000, dtype=np.int16)])
    data = signal.astype("<i2").tobytes()
    by_samples, by_bytes = WebRTCAnalyser(), WebRTCAnalyser()
    by_samples.configure(8000, "medium")
    by_bytes.configure(8000, "medium")
    for step in (160, 100):  # whole 20 ms windows (the fast path), then frames to re-chunk
        a = [
            w for i in range(0, signal.size, step) for w in by_samples.analyse(signal[i : i + step])
        ]
        b = [
            w
            for i in range(0, len(data), 2 * step)
            for w in by_bytes.analyse_pcm(data[i : i + 2 * step])
        ]
        assert a == b and {p for p, _ in a} == {0.0, 1.0}


def test_frame_level_for_the_early_pause_agrees_with_the_numpy_formula() -> None:
    from voicegraph.nodes.audio.vad import _level_db

    rng = np.random.default_rng(7)
    for amplitude in (30, 300, 3000, 30000):
        x = np.clip(rng.normal(0, amplitude, 160), -32768, 32767).astype("<i2")
        f = x.astype(np.float64)
        expected = 10 * np.log10(float(np.dot(f, f)) / f.size / 32768.0**2 + 1e-10)
        assert _level_db(x.tobytes()) == pytest.approx(expected, abs=0.2)  # dB
