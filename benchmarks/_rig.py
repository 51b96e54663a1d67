"""What the call benchmarks share: provider latencies, the caller's phone line, the fakes and
the server's call interfaces.

Clocks: every time here is ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on
the machine), the clock ``TimelineMark`` uses, so caller, fakes and server times compare.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal

import anyio
import msgspec
import numpy as np

# per-turn analysis lives in _measure; re-exported so the benchmarks need one import
from ._measure import (  # noqa: F401
    CASCADING_HOPS,
    REALTIME_HOPS,
    SERVER_STAGES,
    fake_floor,
    finite,
    summary,
    turn_records,
)

Mode = Literal["cascading", "realtime"]

PHONE = "+14155550199"
AUTH_TOKEN = "bench-auth-token"
ACCOUNT_SID = "AC" + "0" * 32
CHUNK = 0.02
SILENCE = b"\xff" * 160  # 20 ms of µ-law silence
CALLER_SAYS = "I would like to book a table for two tonight."
AGENT_SAYS = "Sure, for what time?"


class Latencies(msgspec.Struct, frozen=True, kw_only=True):
    """Latencies the provider fakes are configured with (seconds), defaults from the vendors'
    published typical figures (docs/benchmarks.md says where each comes from)."""

    stt_endpointing: float = 0.3
    """Deepgram ``endpointing``: silence that ends an utterance (voicegraph's default, within
    Deepgram's recommended 300-500 ms for conversation)."""
    stt_latency: float = 0.1
    """Deepgram: from the endpoint to the final result (inside its advertised sub-300 ms)."""
    llm_ttft: float = 0.4
    """Chat LLM time to first token (gpt-4o-mini class models, typical)."""
    tts_ttfb: float = 0.09
    """Cartesia Sonic time to first audio byte (Cartesia's published model latency)."""
    realtime_silence: float = 0.5
    """OpenAI Realtime ``server_vad`` ``silence_duration_ms`` (the vendor default, used by
    voicegraph's "medium" sensitivity)."""
    realtime_ttfb: float = 0.32
    """OpenAI Realtime first audio after the turn ends (OpenAI's published GPT-4o average audio
    response time, 320 ms)."""

    def critical_path(self, mode: Mode) -> float:
        """Seconds the providers alone spend between the caller's speech end and the first
        agent audio: the part of voice-to-voice the framework cannot remove."""
        if mode == "cascading":
            return self.stt_endpointing + self.stt_latency + self.llm_ttft + self.tts_ttfb
        return self.realtime_silence + self.realtime_ttfb

    def formula(self, mode: Mode) -> str:
        if mode == "cascading":
            return "stt_endpointing + stt_latency + llm_ttft + tts_ttfb"
        return "realtime_silence + realtime_ttfb"

    @classmethod
    def zero(cls) -> Latencies:
        """No provider latency (memory runs: only the framework's own work)."""
        return cls(
            stt_endpointing=0.1,
            stt_latency=0.0,
            llm_ttft=0.0,
            tts_ttfb=0.0,
            realtime_silence=0.5,
            realtime_ttfb=0.0,
        )


def voiced(seconds: float, rate: int = 8000, f0: float = 120.0) -> np.ndarray[Any, Any]:
    """A speech-like signal (the test kit's :func:`~voicegraph.testing.speech_like`)."""
    from voicegraph.testing.speech import speech_like

    return speech_like(seconds, rate, f0)


def speech_chunks(seconds: float) -> list[bytes]:
    """``seconds`` of caller speech as 20 ms µ-law chunks."""
    from voicegraph.nodes.audio.g711 import pcm16_to_ulaw

    data = pcm16_to_ulaw(voiced(seconds).tobytes())
    return [data[i : i + 160] for i in range(0, len(data) - 159, 160)]


class Line:
    """One caller's phone line on a live simulated Twilio call.

    Like a carrier, it sends 20 ms of audio every 20 ms, each chunk once its 20 ms have been
    spoken (so the last speech chunk leaves exactly at the end of the speech), silence unless
    :meth:`say` queued speech. It records, on the caller's side: when speech started and ended
    in the caller's own audio, when agent audio arrived, and when ``clear`` arrived."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._speech: deque[bytes] = deque()
        self.onsets: list[float] = []
        self.speech_ends: list[float] = []
        self.first_audio: list[float | None] = []  # first agent audio after each speech end
        self.clears: list[float] = []
        self.last_audio = 0.0
        self.audio_bytes = 0
        self._await_reply = False
        self._said = 0
        self._changed = anyio.Event()
        playback = call.playback
        add_audio, clear = playback.add_audio, playback.clear

        def on_audio(data: bytes) -> None:
            now = time.monotonic()
            self.last_audio = now
            self.audio_bytes += len(data)
            if self._await_reply:
                self._await_reply = False
                self.first_audio[-1] = now
                self._notify()
            add_audio(data)

        def on_clear() -> list[str]:
            self.clears.append(time.monotonic())
            return clear()  # type: ignore[no-any-return]

        # Instrument this call's playback buffer: the first point where the caller has the
        # agent's audio (the receive loop hands it over right after decoding the message).
        playback.add_audio = on_audio
        playback.clear = on_clear

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def say(self, chunks: list[bytes]) -> None:
        self._speech.extend(chunks)
        self._said += 1

    async def run(self, metronome: Any = None) -> None:
        """Stream until the call closes (run it in the dial block's task group). With a
        ``metronome`` (``await metronome.wait()`` returns every 20 ms), lines share one clock
        instead of a timer each."""
        from voicegraph.wsio import SocketClosed

        call = self.call
        due = anyio.current_time()
        speaking = False
        try:
            while not call.closed:
                if metronome is None:
                    due += CHUNK
                    await anyio.sleep_until(due)
                else:
                    await metronome.wait()
                if self._speech:
                    chunk = self._speech.popleft()
                    if not speaking:
                        speaking = True
                        self.onsets.append(time.monotonic() - CHUNK)
                    await call.send_audio(chunk, speed=0)
                    if not self._speech:
                        speaking = False
                        self.speech_ends.append(time.monotonic())
                        self.first_audio.append(None)
                        self._await_reply = True
                        self._notify()
                else:
                    await call.send_audio(SILENCE, speed=0)
        except SocketClosed:
            pass

    async def wait_spoken(self) -> None:
        """Wait until everything queued with :meth:`say` was sent."""
        while len(self.speech_ends) < self._said:
            await self._changed.wait()

    async def wait_quiet(self, gap: float = 0.3, timeout: float = 15.0) -> None:
        """Wait until no agent audio arrived for ``gap`` seconds and playback has drained."""
        with anyio.fail_after(timeout):
            while True:
                idle = time.monotonic() - self.last_audio
                if idle >= gap and self.call.playback.queued_seconds == 0:
                    return
                await anyio.sleep(max(CHUNK, gap - idle))

    async def wait_reply(self, timeout: float = 10.0) -> float:
        """Wait for the first agent audio after the last speech end; returns its time."""
        with anyio.fail_after(timeout):
            while (t := self.first_audio[-1]) is None:
                await self._changed.wait()
        return t


class _TimedList(list):  # type: ignore[type-arg]
    """A list that remembers when each item was appended (for the fakes' receive logs)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.monotonic())
        super().append(item)


def _timed_chat() -> type:
    from voicegraph.testing import FakeChatCompletions

    class TimedChat(FakeChatCompletions):  # type: ignore[misc,valid-type]
        """Remembers when each LLM stream ended early (the client closed it)."""

        closed_at: list[float]

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "disconnected" and value:
                self.__dict__.setdefault("closed_at", []).append(time.monotonic())
            super().__setattr__(name, value)

    return TimedChat


class Fakes:
    """The provider fakes of one benchmark run (see :func:`run_fakes`)."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.deepgram: Any = None
        self.chat: Any = None
        self.cartesia: Any = None
        self.realtime: Any = None
        self.cartesia_log: _TimedList | None = None


@asynccontextmanager
async def run_fakes(
    mode: Mode,
    lat: Latencies,
    *,
    turns: int = 10_000,
    reply: str = AGENT_SAYS,
    tokens_per_second: float | None = None,
    transcripts: list[str] | None = None,
) -> AsyncIterator[Fakes]:
    """Start the fakes ``mode`` needs on 127.0.0.1, configured with ``lat``; ``turns`` bounds
    the scripted turns (transcripts and replies); ``transcripts`` replaces the caller's
    sentence with a script, one entry per speech segment."""
    from voicegraph.testing import FakeCartesia, FakeDeepgram, FakeOpenAIRealtime

    f = Fakes()
    async with AsyncExitStack() as stack:
        if mode == "cascading":
            f.deepgram = await stack.enter_async_context(
                FakeDeepgram(
                    transcripts if transcripts is not None else [CALLER_SAYS] * turns,
                    endpointing_delay=lat.stt_endpointing,
                    latency=lat.stt_latency,
                    first_interim_delay=10.0,  # interims are off the critical path; skip them
                )
            )
            f.chat = await stack.enter_async_context(
                _timed_chat()(
                    [reply] * turns, ttfb=lat.llm_ttft, tokens_per_second=tokens_per_second
                )
            )
            f.cartesia = await stack.enter_async_context(FakeCartesia(ttfb=lat.tts_ttfb))
            f.cartesia_log = _TimedList()
            f.cartesia.received = f.cartesia_log
            f.urls = {
                "deepgram": f.deepgram.url,
                "chat": f.chat.base_url,
                "cartesia": f.cartesia.url,
            }
        else:
            f.realtime = await stack.enter_async_context(
                FakeOpenAIRealtime(
                    transcripts=[CALLER_SAYS] * turns,
                    replies=[reply] * turns,
                    ttfb=lat.realtime_ttfb,
                )
            )
            f.urls = {"realtime": f.realtime.url}
        yield f


def interface(
    mode: Mode,
    urls: dict[str, str],
    lat: Latencies,
    turns: Any = None,
    stt_batch: float | None = None,
) -> Any:
    """The server's :class:`CallInterface` for ``mode`` against the fakes at ``urls``.
    ``turns`` (cascading): the preset's end-of-turn policy (``None``: its default);
    ``stt_batch``: Deepgram's ``audio_batch``, else its default."""
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
        from voicegraph.nodes import CartesiaTTS, DeepgramSTT, OpenAIChatLLM

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
                    api_key="test-deepgram-key",
                    base_url=urls["deepgram"],
                    endpointing=round(lat.stt_endpointing * 1000),
                    **({} if stt_batch is None else {"audio_batch": stt_batch}),
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
