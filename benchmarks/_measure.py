"""Per-turn measurements of the call benchmarks: stage times and framework-added latency
from the caller's line and the server's timeline marks, and the fakes' own floor."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from ._rig import Fakes, Latencies, Line, Mode

CASCADING_HOPS = (
    # (hop, stage it ends at, stage it starts from, provider latency inside it)
    ("stt", "stt_final", "caller_speech_end", ("stt_endpointing", "stt_latency")),
    ("llm", "agent_first_token", "stt_final", ("llm_ttft",)),
    ("tts", "tts_first_audio", "agent_first_token", ("tts_ttfb",)),
    ("playout", "first_audio_sent", "tts_first_audio", ()),
    ("carrier", "caller_first_audio", "first_audio_sent", ()),
)
REALTIME_HOPS = (
    ("model", "first_audio_sent", "caller_speech_end", ("realtime_silence", "realtime_ttfb")),
    ("carrier", "caller_first_audio", "first_audio_sent", ()),
)
SERVER_STAGES = ("stt_final", "agent_first_token", "tts_first_audio", "first_audio_sent")


def turn_records(
    line: Line, marks: list[tuple[str, float]], mode: Mode, lat: Latencies
) -> list[dict[str, Any]]:
    """One record per answered caller turn: stage times in ms after the caller's speech end
    (``caller_speech_end`` is the caller's, not the server VAD's), voice-to-voice, the
    framework-added latency and its share per hop."""
    out = []
    ends = line.speech_ends
    crit = lat.critical_path(mode)
    hops = CASCADING_HOPS if mode == "cascading" else REALTIME_HOPS
    for i, (end, heard) in enumerate(zip(ends, line.first_audio, strict=True)):
        if heard is None:
            continue
        until = ends[i + 1] if i + 1 < len(ends) else math.inf
        at: dict[str, float] = {"caller_speech_end": end, "caller_first_audio": heard}
        for stage, t in marks:
            if stage in SERVER_STAGES and end < t < until and stage not in at:
                at[stage] = t
        ms = {k: 1000 * (v - end) for k, v in at.items() if k != "caller_speech_end"}
        v2v = ms["caller_first_audio"]
        share = {}
        for hop, stop, begin, parts in hops:
            if stop in at and begin in at:
                provider = sum(getattr(lat, p) for p in parts)
                share[hop] = 1000 * (at[stop] - at[begin] - provider)
        out.append(
            {
                "turn": i,
                "voice_to_voice_ms": v2v,
                "framework_added_ms": v2v - 1000 * crit,
                "stages_ms": ms,
                "framework_share_ms": share,
            }
        )
    return out


def summary(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of ``values`` (NaN when empty)."""
    from .common import percentile

    v = finite(values)
    return {
        "n": len(v),
        "p50": percentile(v, 50),
        "p95": percentile(v, 95),
        "p99": percentile(v, 99),
        "mean": sum(v) / len(v) if v else float("nan"),
        "max": max(v) if v else float("nan"),
    }


def finite(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


async def fake_floor(fakes: Fakes, lat: Latencies, samples: int = 8) -> dict[str, Any]:
    """What a bare client (no voicegraph) sees from the same fakes, beyond their configured
    latency: the fakes' own share of each hop, which the framework-added figures include.
    LLM: raw httpx stream to the first content chunk; TTS: raw WebSocket request to the first
    audio chunk. Milliseconds, median of ``samples`` (each fake's script is consumed)."""
    import httpx

    from voicegraph.wsio import connect_websocket

    from .common import percentile

    out: dict[str, Any] = {}
    if fakes.chat is not None:
        times = []
        body = {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(samples):
                t0 = time.monotonic()
                async with client.stream(
                    "POST",
                    f"{fakes.chat.base_url}/chat/completions",
                    json=body,
                    headers={"Authorization": "Bearer test-key"},
                ) as resp:
                    async for line in resp.aiter_lines():
                        if '"content"' in line:
                            times.append(1000 * (time.monotonic() - t0 - lat.llm_ttft))
                            break
        out["llm_ms"] = percentile(times, 50)
    if fakes.cartesia is not None:
        times = []
        headers = {"X-API-Key": "test-cartesia-key", "Cartesia-Version": "2025-04-16"}
        async with connect_websocket(f"{fakes.cartesia.url}/tts/websocket", headers) as sock:
            for k in range(samples):
                req = {
                    "model_id": "sonic-3",
                    "transcript": "Sure, for what time?",
                    "voice": {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"},
                    "output_format": {
                        "container": "raw",
                        "encoding": "pcm_mulaw",
                        "sample_rate": 8000,
                    },
                    "context_id": f"floor-{k}",
                    "continue": False,
                }
                t0 = time.monotonic()
                await sock.send(msgspec.json.encode(req).decode())
                first = None
                while True:
                    msg = msgspec.json.decode(await sock.receive())
                    if first is None and msg.get("type") == "chunk":
                        first = 1000 * (time.monotonic() - t0 - lat.tts_ttfb)
                    if msg.get("type") in ("done", "error"):
                        break
                if first is not None:
                    times.append(first)
        out["tts_ms"] = percentile(times, 50)
    return out
