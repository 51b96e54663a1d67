"""Every provider faked at once, and a phone line of any preset × carrier wired to them.

    async with FakeProviders(lines=script.lines(), chat=[...]) as fakes:
        agent = Agent("You take bookings.", fakes.llm(), tools=[book_table])
        line = fakes.line(agent, pipeline="cascading", telephony="plivo")
        async with serve_app(line) as app:
            result = await script.run_call(app)

``lines`` are what the caller says, in order: the fake speech-to-text (Deepgram) and the fake
realtime model transcribe the caller's audio to them. ``chat`` scripts the fake chat model
(:class:`~voicegraph.testing.FakeChatCompletions` replies); ``realtime`` scripts the fake
realtime model (:class:`~voicegraph.testing.fake_openai_realtime.RealtimeReply` s).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from ..interface import CallInterface
from .fake_cartesia import SECONDS_PER_CHAR, FakeCartesia
from .fake_chat import FakeChatCompletions
from .fake_deepgram import FakeDeepgram
from .fake_openai_realtime import FakeOpenAIRealtime

__all__ = ["FakeProviders"]

ACCOUNTS = {"twilio": "AC" + "0" * 32, "plivo": "MA" + "X" * 18}
NUMBERS = {"twilio": "+14155550199", "plivo": "+14155550198"}
AUTH_TOKEN = "voicegraph-test-token"


class FakeProviders:
    """Fake chat, Deepgram, Cartesia and OpenAI Realtime servers on loopback (see module
    docs). ``seconds_per_char``: the fake voices' audio per character of text."""

    def __init__(
        self,
        *,
        lines: list[str] | tuple[str, ...] = (),
        chat: list[Any] | tuple[Any, ...] = (),
        realtime: list[Any] | tuple[Any, ...] = (),
        seconds_per_char: float = SECONDS_PER_CHAR,
    ) -> None:
        self.seconds_per_char = seconds_per_char
        self.chat = FakeChatCompletions(list(chat))
        self.deepgram = FakeDeepgram(transcripts=list(lines))
        self.cartesia = FakeCartesia(ttfb=0.0, seconds_per_char=seconds_per_char)
        self.realtime = FakeOpenAIRealtime(
            transcripts=list(lines),
            replies=list(realtime),
            ms_per_char=round(1000 * seconds_per_char),
        )
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> FakeProviders:
        async with AsyncExitStack() as stack:
            for fake in (self.chat, self.deepgram, self.cartesia, self.realtime):
                await stack.enter_async_context(fake)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            await self._stack.__aexit__(exc_type, exc, tb)

    def llm(self, **options: Any) -> Any:
        """A chat client for the fake chat model."""
        return self.chat.llm(**options)

    def line(
        self,
        agent: Any,
        *,
        pipeline: str = "cascading",
        telephony: str = "twilio",
        **options: Any,
    ) -> CallInterface:
        """A :class:`CallInterface` for ``pipeline`` × ``telephony`` whose providers are these
        fakes (``options`` go to the interface: greeting, interruptible...)."""
        from voicegraph.nodes import CartesiaTTS, DeepgramSTT, OpenAIRealtime

        creds: dict[str, Any] = {
            "auth_id" if telephony == "plivo" else "account_sid": ACCOUNTS[telephony]
        }
        providers: dict[str, Any] = {}
        if pipeline == "cascading":
            providers["stt"] = DeepgramSTT(
                api_key=self.deepgram.api_key, base_url=self.deepgram.url
            )
            providers["tts"] = CartesiaTTS(
                api_key=self.cartesia.api_key, base_url=self.cartesia.url
            )
        elif pipeline == "realtime":
            providers["realtime"] = OpenAIRealtime(
                api_key=self.realtime.api_key or "test-key", base_url=self.realtime.url
            )
        return CallInterface(
            telephony=telephony,
            phone_number=NUMBERS[telephony],
            pipeline=pipeline,
            auth_token=AUTH_TOKEN,
            agent=agent,
            **creds,
            **providers,
            **options,
        )
