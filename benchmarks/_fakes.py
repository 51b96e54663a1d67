"""The provider fakes of a call benchmark: the latencies they are configured with (vendors'
typical figures) and :func:`run_fakes`, which starts the ones a mode needs on 127.0.0.1.

The fakes are the load side: on asyncio the WebSocket ones (Deepgram, Cartesia) are served by
picows (``engine="picows"``), several times cheaper per message than Hypercorn, and the chat
fake by the fakes' asyncio HTTP engine (``engine="asyncio"``: a request reaches it in fewer
turns of the load's event loop), so they cost the load's core less and add less to the
framework-added figures; ``chat_engine="hypercorn"`` puts the chat fake back on Hypercorn.
Everything runs on Hypercorn on Trio.

Clocks: every time here is ``time.monotonic()``, the clock ``TimelineMark`` uses.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal

import msgspec

Mode = Literal["cascading", "realtime"]

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

    class TimedChat(FakeChatCompletions):  # type: ignore[misc]
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
    chat_engine: Literal["asyncio", "hypercorn"] = "asyncio",
) -> AsyncIterator[Fakes]:
    """Start the fakes ``mode`` needs on 127.0.0.1, configured with ``lat``; ``turns`` bounds
    the scripted turns (transcripts and replies); ``transcripts`` replaces the caller's
    sentence with a script, one entry per speech segment."""
    from voicegraph.backends import current_backend
    from voicegraph.testing import FakeCartesia, FakeDeepgram, FakeOpenAIRealtime

    engine: Literal["hypercorn", "picows"] = (
        "picows" if current_backend() == "asyncio" else "hypercorn"
    )
    f = Fakes()
    async with AsyncExitStack() as stack:
        if mode == "cascading":
            f.deepgram = await stack.enter_async_context(
                FakeDeepgram(
                    transcripts if transcripts is not None else [CALLER_SAYS] * turns,
                    endpointing_delay=lat.stt_endpointing,
                    latency=lat.stt_latency,
                    first_interim_delay=10.0,  # interims are off the critical path; skip them
                    engine=engine,
                )
            )
            f.chat = await stack.enter_async_context(
                _timed_chat()(
                    [reply] * turns,
                    ttfb=lat.llm_ttft,
                    tokens_per_second=tokens_per_second,
                    engine=chat_engine if engine == "picows" else "hypercorn",
                )
            )
            f.cartesia = await stack.enter_async_context(
                FakeCartesia(ttfb=lat.tts_ttfb, engine=engine)
            )
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
