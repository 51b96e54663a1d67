"""Audio nodes benchmark: per-frame cost and real-time streams per core.

Run ``python -m benchmarks audio``. Prints a table and writes ``bench-results/audio.json``
(``VOICEGRAPH_BENCH_DIR`` or ``--out-dir`` moves it). Each figure is the median over several repeats of the mean cost of
one frame through the node's ``process`` (the same call the executor makes when it fuses a
stage), on a synthetic speech-like signal. Streams per core = frame duration / cost.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import table, verdict, write_json
from voicegraph.frames import AudioFormat, AudioFrame
from voicegraph.nodes.audio.analysers import EnergyAnalyser, WebRTCAnalyser
from voicegraph.nodes.audio.g711 import MulawDecode, MulawEncode, pcm16_to_ulaw
from voicegraph.nodes.audio.resample import Resampler
from voicegraph.nodes.audio.vad import VAD
from voicegraph.nodes.convert import make_converter

# The targets: one inbound 20 ms frame through codec + resampler + energy/WebRTC VAD
# <= 30 us together; Silero <= 100 us per 32 ms window.
TARGETS = {
    "inbound: decode+VAD energy (8k)": 30.0,
    "inbound: decode+VAD webrtc (8k)": 30.0,
    "inbound: decode+8k->16k+VAD energy": 30.0,
    "inbound: decode+8k->16k+VAD webrtc": 30.0,
    "VAD silero 8k per 32 ms window": 100.0,
    "VAD silero 16k per 32 ms window": 100.0,
}


def signal(rate: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-rate loudness
    x = envelope * (6000 * np.sin(2 * np.pi * 180 * t) + 2500 * np.sin(2 * np.pi * 900 * t))
    out: np.ndarray = np.clip(x + rng.normal(0, 300, t.size), -32768, 32767).astype("<i2")
    return out


def frames_of(fmt: AudioFormat, seconds: float, frame_s: float = 0.02) -> list[AudioFrame]:
    pcm = signal(fmt.sample_rate, seconds).tobytes()
    data = pcm16_to_ulaw(pcm) if fmt.encoding == "mulaw" else pcm
    step = fmt.bytes_for(frame_s)
    return [
        AudioFrame(
            data=data[i : i + step],
            encoding=fmt.encoding,
            sample_rate=fmt.sample_rate,
            timestamp=i / step * frame_s,
        )
        for i in range(0, len(data) - step + 1, step)
    ]


def per_frame_us(
    make: Callable[[], Callable[[AudioFrame], Any]], frames: list[AudioFrame], repeats: int
) -> float:
    """Median over ``repeats`` fresh pipelines of the mean microseconds per frame."""
    results = []
    for _ in range(repeats):
        step = make()
        for f in frames[:10]:  # warm-up: first frames fill filters and caches
            step(f)
        t0 = time.perf_counter_ns()
        for f in frames:
            step(f)
        results.append((time.perf_counter_ns() - t0) / len(frames) / 1000)
    return statistics.median(results)


def stage_fn(*stages: Any) -> Callable[[AudioFrame], Any]:
    """Frame -> every stage in turn, as the fused executor would run them."""
    if len(stages) == 1:
        return functools.partial(stages[0].process, "in")

    def run(frame: AudioFrame) -> None:
        batch: tuple[Any, ...] = (frame,)
        for s in stages:
            nxt: list[Any] = []
            for f in batch:
                if type(f) is AudioFrame:
                    res = s.process("in", f)
                    if res is not None:
                        nxt.extend(res if type(res) is tuple else (res,))
            batch = tuple(nxt)

    return run


def silero_window_us(rate: int, seconds: float, repeats: int) -> float | None:
    try:
        from voicegraph.nodes.audio.silero import SileroAnalyser
    except ImportError:
        return None
    try:
        analyser = SileroAnalyser()
    except (ImportError, FileNotFoundError):
        return None
    x = signal(rate, seconds)
    window = 512 if rate == 16000 else 256
    results = []
    for _ in range(repeats):
        analyser.configure(rate, "medium")
        n = 0
        t0 = time.perf_counter_ns()
        for i in range(0, x.size - window + 1, window):
            n += len(analyser.analyse(x[i : i + window]))
        results.append((time.perf_counter_ns() - t0) / max(1, n) / 1000)
    return statistics.median(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks audio", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", "--out-dir", dest="out_dir", type=Path, default=None, help="default bench-results/"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s of audio, 1 repeat")
    args = parser.parse_args(argv)
    secs, reps = (2.0, 1) if args.quick else (args.seconds, args.repeats)

    mu8 = frames_of(AudioFormat("mulaw", 8000), secs)
    p8 = frames_of(AudioFormat("pcm16", 8000), secs)
    p16 = frames_of(AudioFormat("pcm16", 16000), secs)
    p24 = frames_of(AudioFormat("pcm16", 24000), secs)

    cases: list[tuple[str, Callable[[], Callable[[AudioFrame], Any]], list[AudioFrame]]] = [
        ("mulaw decode 20 ms", lambda: stage_fn(MulawDecode()), mu8),
        ("mulaw encode 20 ms", lambda: stage_fn(MulawEncode()), p8),
        ("resample 8k->16k 20 ms", lambda: stage_fn(Resampler(8000, 16000)), p8),
        ("resample 24k->8k 20 ms", lambda: stage_fn(Resampler(24000, 8000)), p24),
        ("VAD energy 8k 20 ms", lambda: stage_fn(VAD(EnergyAnalyser())), p8),
        ("VAD energy 16k 20 ms", lambda: stage_fn(VAD(EnergyAnalyser())), p16),
        ("VAD webrtc 8k 20 ms", lambda: stage_fn(VAD(WebRTCAnalyser())), p8),
        ("VAD webrtc 16k 20 ms", lambda: stage_fn(VAD(WebRTCAnalyser())), p16),
        (
            "inbound: decode+VAD energy (8k)",
            lambda: stage_fn(MulawDecode(), VAD(EnergyAnalyser())),
            mu8,
        ),
        (
            "inbound: decode+VAD webrtc (8k)",
            lambda: stage_fn(MulawDecode(), VAD(WebRTCAnalyser())),
            mu8,
        ),
        (
            "inbound: decode+8k->16k+VAD energy",
            lambda: stage_fn(MulawDecode(), Resampler(8000, 16000), VAD(EnergyAnalyser())),
            mu8,
        ),
        (
            "inbound: decode+8k->16k+VAD webrtc",
            lambda: stage_fn(MulawDecode(), Resampler(8000, 16000), VAD(WebRTCAnalyser())),
            mu8,
        ),
        (
            "outbound: convert pcm16/24k->mulaw/8k",
            lambda: stage_fn(
                make_converter(AudioFormat("pcm16", 24000), AudioFormat("mulaw", 8000))
            ),
            p24,
        ),
    ]
    rows: list[dict[str, Any]] = []
    for name, make, frames in cases:
        us = per_frame_us(make, frames, reps)
        rows.append(
            {"case": name, "unit_ms": 20, "us": round(us, 2), "streams_per_core": int(20_000 / us)}
        )
    for rate in (8000, 16000):
        window_us = silero_window_us(rate, secs, reps)
        if window_us is not None:
            rows.append(
                {
                    "case": f"VAD silero {rate // 1000}k per 32 ms window",
                    "unit_ms": 32,
                    "us": round(window_us, 2),
                    "streams_per_core": int(32_000 / window_us),
                }
            )

    for r in rows:
        target = TARGETS.get(r["case"])
        r["target_us"] = target
        r["verdict"] = "" if target is None else verdict(r["us"] <= target)
    print(
        table(
            "Audio nodes: cost per unit of audio (median of repeats)",
            ["case", "us per unit", "unit", "streams/core", "target us", "verdict"],
            [
                [
                    r["case"],
                    r["us"],
                    f"{r['unit_ms']} ms",
                    r["streams_per_core"],
                    r["target_us"] or "",
                    r["verdict"],
                ]
                for r in rows
            ],
        )
    )
    path = write_json(
        "audio",
        {"seconds_per_repeat": secs, "repeats": reps, "results": rows},
        str(args.out_dir) if args.out_dir else None,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
