"""What the call benchmarks share: the server's call interfaces and runtime, the simulated
caller, the server-side log of each call; with the provider fakes (``_fakes.py``), the caller's
line (``_line.py``) and the per-turn analysis (``_measure.py``) re-exported.

Clocks: every time here is ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on
the machine), the clock ``TimelineMark`` uses, so caller, fakes and server times compare.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# the fakes, the caller's line and the per-turn analysis live in their own modules;
# re-exported so the benchmarks need one import
from ._fakes import (
    AGENT_SAYS as AGENT_SAYS,
    CALLER_SAYS as CALLER_SAYS,
    Fakes as Fakes,
    Latencies as Latencies,
    Mode as Mode,
    run_fakes as run_fakes,
)
from ._line import (
    CHUNK as CHUNK,
    SILENCE as SILENCE,
    Line as Line,
    speech_chunks as speech_chunks,
    voiced as voiced,
)
from ._measure import (
    CASCADING_HOPS as CASCADING_HOPS,
    REALTIME_HOPS as REALTIME_HOPS,
    SERVER_STAGES as SERVER_STAGES,
    fake_floor as fake_floor,
    finite as finite,
    summary as summary,
    turn_records as turn_records,
)

PHONE = "+14155550199"
AUTH_TOKEN = "bench-auth-token"
ACCOUNT_SID = "AC" + "0" * 32


def interface(
    mode: Mode,
    urls: dict[str, str],
    lat: Latencies,
    turns: Any = None,
    stt_batch: float | None = None,
    stt_batch_speaking: float | None = None,
) -> Any:
    """The server's :class:`CallInterface` for ``mode`` against the fakes at ``urls``.
    ``turns`` (cascading): the preset's end-of-turn policy (``None``: its default);
    ``stt_batch`` / ``stt_batch_speaking``: Deepgram's ``audio_batch`` /
    ``audio_batch_speaking``, else their defaults."""
    from voicegraph import CallInterface

    common: dict[str, Any] = {
        "telephony": "twilio",
        "phone_number": PHONE,
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "pipeline": mode,
    }
    from voicegraph.agent import Agent

    if mode == "cascading":
        import msgspec

        from voicegraph.nodes import CartesiaTTS, DeepgramSTT, OpenAIChatLLM
        from voicegraph.nodes.stt.deepgram import DeepgramOptions

        stt_options = DeepgramOptions(
            base_url=urls["deepgram"], endpointing=round(lat.stt_endpointing * 1000)
        )
        if stt_batch is not None:
            stt_options = msgspec.structs.replace(stt_options, audio_batch=stt_batch)
        if stt_batch_speaking is not None:
            stt_options = msgspec.structs.replace(
                stt_options, audio_batch_speaking=stt_batch_speaking
            )
        llm = OpenAIChatLLM(api_key="test-key", base_url=urls["chat"])
        built: list[Any] = []

        def build(session: Any) -> Any:
            from voicegraph import presets

            iface = built[0]
            return presets.cascading(
                carrier_in=session.carrier_in,
                carrier_out=session.carrier_out,
                carrier_format=session.audio_format,
                stt=iface.new_stt(),
                tts=iface.new_tts(),
                agent=iface.new_agent(),
                hangup=session.hangup,
                transfer=session.transfer,
                turns=turns,
            )

        built.append(
            CallInterface(
                **common,
                graph=build if turns is not None else None,
                stt=DeepgramSTT(
                    stt_options,
                    api_key="test-deepgram-key",
                ),
                tts=CartesiaTTS(api_key="test-cartesia-key", base_url=urls["cartesia"]),
                agent=Agent("You are a booking line.", llm, call_tools=False),
            )
        )
        return built[0]
    from voicegraph.nodes import OpenAIRealtime

    return CallInterface(
        **common,
        realtime=OpenAIRealtime(api_key="test-key", base_url=urls["realtime"]),
        agent=Agent("You are a booking line.", call_tools=False),
    )


def runtime(iface: Any, on_call: Callable[..., None] | None = None, **kw: Any) -> Any:
    from voicegraph import AgentRuntime

    return AgentRuntime([iface], public_url="http://127.0.0.1", on_call=on_call, **kw)


def describe(exc: BaseException) -> str:
    """The innermost error of ``exc`` (task groups wrap one failure in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


async def dial_through(url: str, audio: bytes) -> None:
    """Call, say ``audio`` at once, wait for the agent's first audio, hang up.

    The simulated caller can raise ``SocketClosed`` while leaving the call when a playback
    mark's echo races the hang-up (a known issue of the test kit's Twilio caller); a call whose
    reply was heard is complete, so that one error is not a failure here."""
    from voicegraph.wsio import SocketClosed

    heard = False
    try:
        async with caller(url).dial() as call:
            await call.send_audio(audio, speed=0)
            await call.wait_for_audio(0.02, timeout=10)
            heard = True
    except* SocketClosed:
        if not heard:
            raise


def caller(base_url: str) -> Any:
    from voicegraph.testing import TwilioCaller

    return TwilioCaller(base_url, AUTH_TOKEN, to=PHONE, public_url="http://127.0.0.1")


class ServerLog:
    """Server side, via ``AgentRuntime(on_call=...)``: each call's timeline marks as
    ``(stage, time)`` pairs, and the live :class:`~voicegraph.runtime.Call` objects."""

    def __init__(self, keep_calls: bool = True) -> None:
        self.marks: dict[str, list[tuple[str, float]]] = {}
        self.calls: dict[str, Any] = {}
        self.keep_calls = keep_calls
        self.started = 0

    def on_call(self, call: Any, session: Any, timeline: Any) -> None:
        from voicegraph.frames import TimelineMark

        self.started += 1
        if not self.keep_calls:
            return
        marks = self.marks.setdefault(call.call_id, [])
        self.calls[call.call_id] = call

        def on_event(ev: Any) -> None:
            if isinstance(ev, TimelineMark):
                marks.append((ev.stage, ev.time))

        call.subscribe(on_event)


def drops(call: Any) -> int:
    """Frames this (live) call has dropped so far: channel drops, carrier-side drops of
    caller audio, playout overflow."""
    total = 0
    for name, entry in call.stats().items():
        total += int(entry.get("dropped", 0))
        node = call.graph[name]
        total += int(getattr(node, "dropped_audio", 0) or 0)
        total += int(getattr(node, "dropped_overflow", 0) or 0)
    return total
