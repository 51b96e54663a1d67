"""User code may await asyncio libraries: on the default backend, a tool of a live cascading call
talks to a loopback server through ``asyncio.open_connection`` and its answer reaches the LLM."""

from __future__ import annotations

import asyncio

import anyio
import msgspec
import pytest
from e2ekit import TOKEN, interface, served, speech

from voicegraph import Agent, AudioFormat, tool
from voicegraph.nodes.llm import OpenAIChatLLM
from voicegraph.testing.fake_chat import ChatReply, FakeChatCompletions, ScriptedToolCall
from voicegraph.testing.twilio_caller import TwilioCaller

STOCK = {"umbrella": 7, "raincoat": 0}


async def stock_server() -> tuple[asyncio.Server, list[str]]:
    """A line-based asyncio server on loopback: item name in, count out."""
    asked: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        item = (await reader.readline()).decode().strip()
        asked.append(item)
        writer.write(f"{STOCK.get(item, -1)}\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, asked


@pytest.mark.anyio
async def test_a_tool_awaiting_asyncio_streams_answers_the_llm_in_a_live_call() -> None:
    from voicegraph.nodes import CartesiaTTS, DeepgramSTT
    from voicegraph.testing.fake_cartesia import FakeCartesia
    from voicegraph.testing.fake_deepgram import FakeDeepgram

    server, asked = await stock_server()
    port = server.sockets[0].getsockname()[1]

    @tool
    async def stock_level(item: str) -> dict[str, object]:
        """How many of an item are in stock.

        Args:
            item: The item's name, like umbrella.
        """
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(item.encode() + b"\n")
        await writer.drain()
        count = int(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return {"item": item, "count": count}

    fmt = AudioFormat("mulaw", 8000)
    replies = [
        ChatReply(tool_calls=(ScriptedToolCall("stock_level", '{"item": "umbrella"}', "c1"),)),
        "We have seven umbrellas.",
    ]
    dg = FakeDeepgram(["how many umbrellas do you have"])
    tts_fake = FakeCartesia(realtime=4.0)
    async with server, dg, tts_fake, FakeChatCompletions(replies) as chat:
        agent = Agent(
            "You answer stock questions.",
            llm=OpenAIChatLLM(api_key=chat.api_key, base_url=chat.base_url),
            tools=[stock_level],
        )
        iface = interface(
            "twilio",
            pipeline="cascading",
            agent=agent,
            greeting="Hello.",
            stt=lambda: DeepgramSTT(
                api_key=dg.api_key, base_url=dg.url, encoding="mulaw", sample_rate=8000
            ),
            tts=lambda: CartesiaTTS(
                api_key=tts_fake.api_key,
                base_url=tts_fake.url,
                encoding=fmt.encoding,
                sample_rate=fmt.sample_rate,
            ),
        )
        async with served(iface) as (url, _seen):
            caller = TwilioCaller(url, TOKEN, public_url="http://127.0.0.1")
            async with caller.dial() as call:
                await call.wait_for_audio(0.3, timeout=10)  # the greeting
                await call.send_silence(1.0)
                await call.send_audio(
                    speech("how many umbrellas do you have", 8000), sample_rate=8000
                )
                await call.send_silence(2.0)
                await chat.wait_idle()
                with anyio.fail_after(10):  # the tool's answer goes back to the LLM
                    while len(chat.requests) < 2:
                        await call.send_silence(0.2)
        assert agent.llm._client is None  # the runtime closed the line's pool as it stopped
    assert asked == ["umbrella"]
    tool_messages = [m for m in chat.requests[1].messages or [] if m.role == "tool"]
    assert [msgspec.json.decode(str(m.content)) for m in tool_messages] == [
        {"item": "umbrella", "count": 7}
    ]
