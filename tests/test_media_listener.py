"""The media listener (``AgentRuntime(media=MediaListener(...))``): the answers send carriers
there, the handshake is judged as on the ASGI path (signature over the URL the carrier
connected to, capacity, waiting sockets), calls run end to end on both engines, an oversize
message ends only its own call, and a drain ends its calls politely."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
import pytest
from e2ekit import NUMBER, PUBLIC, TOKEN, interface, speech
from twilio.request_validator import RequestValidator

from voicegraph import Agent, AgentRuntime, AgentRuntimeError
from voicegraph.server import MediaListener, MediaListenerError
from voicegraph.testing.plivo_caller import PlivoCaller
from voicegraph.testing.server import echo_graph, serve_runtime
from voicegraph.testing.twilio_caller import TwilioCaller
from voicegraph.wsio import SocketClosed, connect_websocket

ENGINES = ["picows", "websockets"]
CARRIERS = ["twilio", "plivo"]


@asynccontextmanager
async def served_media(
    iface: Any, engine: str = "picows", **kw: Any
) -> AsyncIterator[tuple[str, AgentRuntime, list[Any]]]:
    """Serve one interface with a media listener on loopback; yields the webhook base URL, the
    runtime and the ``(call, session, timeline)`` list of its calls."""
    seen: list[Any] = []
    media = MediaListener("127.0.0.1", 0, engine=engine)
    runtime = AgentRuntime(
        [iface], public_url=PUBLIC, media=media, on_call=lambda *a: seen.append(a), **kw
    )
    async with serve_runtime(runtime) as url:
        # no proxy on loopback: carriers reach the listener where it is bound
        media.public_url = media.url
        yield url, runtime, seen


def caller(carrier: str, url: str, **kw: Any) -> Any:
    if carrier == "twilio":
        return TwilioCaller(url, TOKEN, public_url=PUBLIC, **kw)
    return PlivoCaller(url, TOKEN, public_url=PUBLIC, to=NUMBER.lstrip("+"), **kw)


def tone(seconds: float, rate: int = 8000) -> np.ndarray:
    return np.full(int(seconds * rate), 1000, np.int16)


async def until(predicate: Any) -> None:
    with anyio.fail_after(20):  # a safety net, not a timing claim
        while not predicate():  # noqa: ASYNC110  # plain counters
            await anyio.sleep(0.01)


# ----------------------------------------------------------------------- configuration


def test_the_answer_points_carriers_at_the_media_listeners_public_url() -> None:
    media = MediaListener(public_url="wss://media.example.com/")
    runtime = AgentRuntime([interface("twilio", graph=echo_graph)], PUBLIC, media=media)
    assert media.stream_url(runtime, "http", {}) == "wss://media.example.com"


def test_without_its_own_public_url_the_listener_shares_the_runtimes() -> None:
    media = MediaListener()
    runtime = AgentRuntime([interface("twilio", graph=echo_graph)], PUBLIC, media=media)
    assert media.stream_url(runtime, "http", {}) == "ws://127.0.0.1"


def test_the_deploy_guides_example_builds_a_runtime_with_a_media_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import re
    import sys
    import types
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "media=" in b)
    lines = types.ModuleType("lines")  # the guide's module of CallInterface objects
    lines.LINES = [interface("twilio", graph=echo_graph)]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lines", lines)
    scope: dict[str, Any] = {}
    exec(compile(code, "deploy.md", "exec"), scope)
    media = scope["runtime"].media
    assert isinstance(media, MediaListener) and media.port == 8765
    assert media.stream_url(scope["runtime"], "http", {}) == "wss://agent.example.com"


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"engine": "hypercorn"}, "engine="),
        ({"public_url": "ftp://media.example.com"}, r"ws\(s\) URL"),
        ({"public_url": "wss://media.example.com/?a=1"}, "query"),
        ({"max_message": 10}, "max_message"),
        ({"handshake_timeout": 0}, "handshake_timeout"),
    ],
)
def test_a_listener_that_cannot_work_is_refused_at_construction(
    kw: dict[str, Any], words: str
) -> None:
    with pytest.raises(MediaListenerError, match=words):
        MediaListener(**kw)


def test_a_runtime_with_a_media_listener_refuses_the_trio_backend_before_serving() -> None:
    runtime = AgentRuntime(
        [interface("twilio", graph=echo_graph)], PUBLIC, media=MediaListener("127.0.0.1", 0)
    )
    with pytest.raises(AgentRuntimeError, match="asyncio only"):
        runtime.run("127.0.0.1", 0, backend="trio")


# ---------------------------------------------------------------------------- calls


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_call_streams_through_the_media_listener(engine: str, carrier: str) -> None:
    async with served_media(interface(carrier, graph=echo_graph), engine) as (url, rt, seen):
        async with caller(carrier, url, playback_rate=20).dial() as call:
            await call.send_audio(tone(0.5), sample_rate=8000)
            await call.wait_for_audio(0.5, timeout=10)
            assert list(rt.calls) == [seen[0][1].call_id]
    assert call.heard_seconds >= 0.5
    assert rt.calls == {}


@pytest.mark.anyio
async def test_a_conversation_relay_call_streams_through_the_media_listener() -> None:
    from voicegraph.testing.relay_caller import RelayCaller

    iface = interface("twilio", pipeline="managed", graph=echo_graph, greeting="Hello")
    async with served_media(iface) as (url, rt, _seen):
        async with RelayCaller(url, TOKEN, to=NUMBER, public_url=PUBLIC).dial() as call:
            assert call.attributes["url"] == f"{rt.media.url}/call/stream"  # type: ignore[union-attr]
            await call.say("What are your opening hours?")
            reply = await call.wait_for_reply(timeout=10)
    assert reply == "What are your opening hours?"


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_cascading_call_through_the_media_listener_answers_the_caller(
    carrier: str,
) -> None:
    from voicegraph.nodes import CartesiaTTS, DeepgramSTT
    from voicegraph.nodes.llm import OpenAIChatLLM
    from voicegraph.testing.fake_cartesia import FakeCartesia
    from voicegraph.testing.fake_chat import FakeChatCompletions
    from voicegraph.testing.fake_deepgram import FakeDeepgram

    rate = 8000 if carrier == "twilio" else 16000
    dg, tts = FakeDeepgram(["do you have a table"]), FakeCartesia(realtime=4.0)
    async with dg, tts, FakeChatCompletions(["Yes, we have a table for you."]) as chat:
        agent = Agent(
            "You take bookings.", llm=OpenAIChatLLM(api_key=chat.api_key, base_url=chat.base_url)
        )
        iface = interface(
            carrier,
            pipeline="cascading",
            agent=agent,
            greeting="Hello.",
            stt=lambda: DeepgramSTT(api_key=dg.api_key, base_url=dg.url),
            tts=lambda: CartesiaTTS(api_key=tts.api_key, base_url=tts.url),
        )
        async with served_media(iface) as (url, _rt, seen):
            async with caller(carrier, url, playback_rate=4.0).dial() as call:
                await call.wait_for_audio(0.3, timeout=10)  # the greeting
                greeting = call.heard_seconds
                await call.send_silence(0.5)
                await call.send_audio(speech("do you have a table", rate), sample_rate=rate)
                with anyio.fail_after(20):
                    while not chat.requests or call.heard_seconds < greeting + 0.5:
                        await call.send_silence(0.2)
    said = [m.content for m in chat.requests[0].messages or [] if m.role == "user"]
    assert said == ["do you have a table"]
    assert seen and seen[0][1].carrier == carrier


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_realtime_call_through_the_media_listener_answers_the_caller(
    carrier: str,
) -> None:
    from voicegraph.nodes.realtime import OpenAIRealtime
    from voicegraph.testing.fake_openai_realtime import FakeOpenAIRealtime

    rate = 8000 if carrier == "twilio" else 16000
    fake = FakeOpenAIRealtime(transcripts=["hello there"], replies=["Hi, how can I help?"])
    async with fake:
        template = OpenAIRealtime(api_key="test-key", base_url=fake.url)
        iface = interface(carrier, pipeline="realtime", realtime=template, agent=Agent("x"))
        async with served_media(iface) as (url, _rt, _seen):
            async with caller(carrier, url, playback_rate=4.0).dial() as call:
                await call.send_silence(0.3)
                await call.send_audio(speech("hello there", rate), sample_rate=rate)
                with anyio.fail_after(20):
                    while call.heard_seconds < 0.5:
                        await call.send_silence(0.2)
    assert call.heard_seconds >= 0.5


# ------------------------------------------------------------------------ refusals


def twilio_headers(url: str) -> dict[str, str]:
    """The handshake header Twilio sends, computed by Twilio's own library."""
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})}


async def twiml_stream(url: str) -> tuple[str, dict[str, str]]:
    """Answer one Twilio call; the stream URL and parameters the TwiML names."""
    twiml = await TwilioCaller(url, TOKEN, public_url=PUBLIC).answer(
        "/call/incoming", "CA" + "1" * 32
    )
    stream = twiml.find("./Connect/Stream")
    assert stream is not None
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


@pytest.mark.anyio
async def test_the_handshake_is_signed_over_the_media_listeners_url() -> None:
    async with served_media(interface("twilio", graph=echo_graph)) as (url, rt, _):
        assert rt.media is not None and rt.media.url is not None
        stream_url, _params = await twiml_stream(url)
        assert stream_url == rt.media.url + "/call/stream"
        async with connect_websocket(stream_url, twilio_headers(stream_url)):
            pass  # accepted
        elsewhere = "wss://agent.example.com/call/stream"  # signed for another URL
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(stream_url, twilio_headers(elsewhere)):
                pass
    assert info.value.code == 403


@pytest.mark.anyio
async def test_an_unsigned_twilio_handshake_is_refused_with_403() -> None:
    async with served_media(interface("twilio", graph=echo_graph)) as (_, rt, _seen):
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(f"{rt.media.url}/call/stream"):  # type: ignore[union-attr]
                pass
    assert info.value.code == 403


@pytest.mark.anyio
async def test_an_unknown_path_is_refused_with_404() -> None:
    async with served_media(interface("plivo", graph=echo_graph)) as (_, rt, _seen):
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(f"{rt.media.url}/webhooks/other"):  # type: ignore[union-attr]
                pass
    assert info.value.code == 404


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_a_stream_beyond_max_calls_is_refused_with_503(engine: str) -> None:
    iface = interface("plivo", graph=echo_graph)
    async with served_media(iface, engine, max_calls=1) as (url, rt, _seen):
        async with caller("plivo", url, playback_rate=20).dial():
            await until(lambda: rt.calls)
            with pytest.raises(SocketClosed) as info:
                async with connect_websocket(f"{rt.media.url}/call/stream"):  # type: ignore[union-attr]
                    pass
    assert info.value.code == 503


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_sockets_waiting_for_their_start_are_capped_with_503(engine: str) -> None:
    iface = interface("plivo", graph=echo_graph)
    async with served_media(iface, engine, max_waiting_streams=2) as (_, rt, _seen):
        stream = f"{rt.media.url}/call/stream"  # type: ignore[union-attr]
        async with connect_websocket(stream), connect_websocket(stream):
            await until(lambda: rt.waiting_streams == 2)
            with pytest.raises(SocketClosed) as info:
                async with connect_websocket(stream):
                    pass
        await until(lambda: rt.waiting_streams == 0)
    assert info.value.code == 503


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_an_oversize_message_ends_only_its_own_call(engine: str) -> None:
    iface = interface("plivo", graph=echo_graph)
    async with served_media(iface, engine) as (url, rt, _seen):
        plivo = caller("plivo", url, playback_rate=20)
        async with plivo.dial() as calm, plivo.dial() as rogue:
            await until(lambda: len(rt.calls) == 2)
            await rogue.socket.send("x" * (64 * 1024 + 1))
            await until(lambda: len(rt.calls) == 1)
            assert calm.call_uuid in rt.calls  # the other call goes on
            await calm.send_audio(tone(0.3, 16000), sample_rate=16000)
            await calm.wait_for_audio(0.3, timeout=10)


# --------------------------------------------------------------------------- drain


@pytest.mark.anyio
async def test_drain_ends_media_listener_calls_with_a_rest_hang_up() -> None:
    from voicegraph.testing.fake_rest import FakeCarrierREST

    async with FakeCarrierREST("plivo", "MA" + "X" * 18, TOKEN) as rest:
        iface = interface("plivo", graph=echo_graph, api_base_url=rest.base_url)
        async with served_media(iface, drain_timeout=0.1) as (url, rt, _seen):
            async with caller("plivo", url, playback_rate=20).dial() as call:
                await until(lambda: rt.calls)
                rt.shutdown()
                assert await rest.wait_for_hangup(call.call_uuid, timeout=20)
                await until(lambda: not rt.calls)
                assert rt.draining


# ---------------------------------------------------------------- the picows socket


class FakePicowsTransport:
    """What the socket uses of a picows transport (and of the asyncio transport under it),
    recording what it was asked to do."""

    def __init__(self) -> None:
        self.underlying_transport = self
        self.sent: list[str | bytes] = []
        self.disconnects: list[bool] = []
        self.reading = True
        self.is_close_frame_sent = False

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def send(self, kind: object, message: str | bytes) -> None:
        self.sent.append(message)

    def send_close(self, code: object, message: bytes = b"") -> None:
        self.is_close_frame_sent = True

    def disconnect(self, graceful: bool = True) -> None:
        self.disconnects.append(graceful)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@pytest.mark.anyio
async def test_a_picows_write_blocked_past_the_write_timeout_ends_the_call() -> None:
    from voicegraph.server._media_picows import PicowsSocket

    ended: list[str] = []
    transport = FakePicowsTransport()
    sock = PicowsSocket(64 * 1024, write_timeout=0.05)
    sock.on_ws_connected(transport)
    sock.on_blocked = lambda: ended.append("call")
    sock.pause_writing()  # the peer's receive window stays full
    with anyio.fail_after(10), pytest.raises(SocketClosed, match="peer stopped reading"):
        await sock.send("media")
    assert sock.blocked and ended == ["call"]
    assert transport.disconnects == [False]  # aborted: nothing left to flush to that peer
    with pytest.raises(SocketClosed):
        await sock.send("more")
    assert transport.sent == []


@pytest.mark.anyio
async def test_a_picows_socket_stops_reading_while_its_queue_is_full() -> None:
    from voicegraph.server._media_picows import INBOX, PicowsSocket

    transport = FakePicowsTransport()
    sock = PicowsSocket(64 * 1024)
    sock.on_ws_connected(transport)
    for n in range(INBOX):
        sock._push(f"m{n}")
    assert not transport.reading  # back-pressure reaches TCP, not memory
    got = [await sock.receive() for _ in range(INBOX // 2)]
    assert got == [f"m{n}" for n in range(INBOX // 2)]
    assert transport.reading
