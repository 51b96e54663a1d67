"""CartesiaTTS against FakeCartesia: contexts, audio, timestamps, cancel, reconnect, auth, errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from fake_kit import ENGINES, refused_handshake

from voicegraph import (
    Actor,
    AgentText,
    AudioDone,
    AudioFrame,
    Call,
    Frame,
    Graph,
    In,
    Interrupt,
    Out,
    TimelineMark,
    WordTimestamps,
)
from voicegraph.nodes.providers import (
    MissingSecret,
    ProviderAuthError,
    ProviderProtocolError,
    ReconnectPolicy,
)
from voicegraph.nodes.tts.cartesia import CartesiaOptions, CartesiaTTS
from voicegraph.nodes.tts.cartesia_wire import sentence_cut
from voicegraph.testing.fake_cartesia import CartesiaFaults, FakeCartesia
from voicegraph.testing.fakeserver import Engine
from voicegraph.wsio import SocketClosed, connect_websocket

KEY = "test-cartesia-key"
VOICE_A = "0a1b2c3d-0000-4000-8000-000000000001"  # a voice the fake knows
VOICE_B = "0a1b2c3d-0000-4000-8000-000000000002"  # well-formed, but no such voice
FAST = ReconnectPolicy(
    connect_timeout=2.0, max_attempts=3, initial_backoff=0.05, max_backoff=0.1, drain_timeout=3.0
)


class Agent(Actor):
    outputs = (Out("text", AgentText, Interrupt),)

    def __init__(self, script: Callable[[Agent], Awaitable[None]]) -> None:
        super().__init__()
        self.script = script

    async def run(self) -> None:
        await self.script(self)

    async def say(self, uid: int, *parts: str) -> None:
        for i, p in enumerate(parts):
            await self.send("text", AgentText(text=p, utterance_id=uid, last=i == len(parts) - 1))


class Collect(Actor):
    inputs = (In("in", AudioFrame, WordTimestamps, AudioDone),)

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def handle(self, port: str, frame: Frame) -> None:
        self.frames.append(frame)

    def audio(self, uid: int) -> list[AudioFrame]:
        return [f for f in self.frames if isinstance(f, AudioFrame) and f.utterance_id == uid]

    def done(self) -> list[int]:
        return [f.utterance_id for f in self.frames if isinstance(f, AudioDone)]


async def run_tts(
    fake: FakeCartesia,
    script: Callable[[Agent], Awaitable[None]],
    sink: Collect | None = None,
    tts: CartesiaTTS | None = None,
    **opts: Any,
) -> tuple[CartesiaTTS, Collect, Any, list[Frame]]:
    tts = tts or make_tts(fake, **opts)
    out = sink or Collect()
    g = Graph("tts")
    g.add("agent", Agent(script))
    g.add("tts", tts)
    g.add("sink", out)
    g.chain("agent", "tts", "sink")
    call = Call(g, "c1")
    events: list[Frame] = []
    call.subscribe(events.append)
    result = await call.run()
    return tts, out, result, events


def make_tts(fake: FakeCartesia, **opts: Any) -> CartesiaTTS:
    return CartesiaTTS(api_key=opts.pop("api_key", KEY), base_url=fake.url, reconnect=FAST, **opts)


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        # Polling: the conditions are plain attributes of fakes and nodes, not events.
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.01)


# ------------------------------------------------------------ options


def test_missing_key_error_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(MissingSecret, match="CARTESIA_API_KEY"):
        CartesiaTTS()


def test_mulaw_at_24k_is_refused_with_a_fix() -> None:
    with pytest.raises(ValueError, match="encoding='pcm16'"):
        CartesiaOptions(encoding="mulaw", sample_rate=24000)


def test_audio_port_pins_the_configured_format() -> None:
    tts = CartesiaTTS(api_key=KEY, encoding="pcm16", sample_rate=16000)
    fmt = tts.output("audio").format
    assert fmt is not None and (fmt.encoding, fmt.sample_rate) == ("pcm16", 16000)


def test_text_is_cut_after_the_last_full_sentence() -> None:
    text = "Hello there. How are you? I am"
    assert text[: sentence_cut(text, 250)] == "Hello there. How are you? "


def test_text_without_sentence_end_waits_until_the_limit() -> None:
    assert sentence_cut("no full stop yet", 250) == 0
    long = "word " * 60
    assert 0 < sentence_cut(long, 250) <= 250 and long[sentence_cut(long, 250) - 1] == " "


# ---------------------------------------------------------- normal flow


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_utterance_becomes_mulaw_audio_of_plausible_length_then_audio_done(
    engine: Engine,
) -> None:
    async with FakeCartesia(engine=engine) as fake:

        async def script(a: Agent) -> None:
            await a.say(7, "Hello there, ", "how are you?")

        _, out, result, _ = await run_tts(fake, script)
    assert result.reason == "completed", result.error
    frames = out.audio(7)
    assert frames and all(f.encoding == "mulaw" and f.sample_rate == 8000 for f in frames)
    seconds = sum(f.duration for f in frames)
    assert seconds == pytest.approx(0.06 * len("Hello there, how are you?") + 0.06, abs=0.05)
    assert out.done() == [7]
    assert isinstance(out.frames[-1], AudioDone)


@pytest.mark.anyio
async def test_deltas_go_out_as_sentences_on_one_context_closed_by_continue_false() -> None:
    async with FakeCartesia() as fake:
        tts = make_tts(fake)

        async def script(a: Agent) -> None:
            await wait_for(lambda: tts.connected)
            await a.say(1, "Sure. I can", " help with that. Anything", " else?")

        await run_tts(fake, script, tts=tts)
    reqs = fake.requests()
    assert [r.transcript for r in reqs] == ["Sure. ", "I can help with that. ", "Anything else?"]
    assert [r.continue_ for r in reqs] == [True, True, False]
    assert len({r.context_id for r in reqs}) == 1


@pytest.mark.anyio
async def test_pcm16_at_16k_is_requested_and_delivered_without_resampling() -> None:
    async with FakeCartesia() as fake:

        async def script(a: Agent) -> None:
            await a.say(2, "One two three.")

        _, out, _, _ = await run_tts(fake, script, encoding="pcm16", sample_rate=16000)
    frames = out.audio(2)
    assert all(f.encoding == "pcm16" and f.sample_rate == 16000 for f in frames)
    assert sum(len(f.data) for f in frames) % 2 == 0
    assert sum(f.duration for f in frames) == pytest.approx(
        0.06 * (len("One two three.") + 1), abs=0.05
    )


@pytest.mark.anyio
async def test_word_timestamps_are_passed_on_relative_to_the_utterance() -> None:
    async with FakeCartesia() as fake:

        async def script(a: Agent) -> None:
            await a.say(3, "Good morning. ", "Welcome back.")

        _, out, _, _ = await run_tts(fake, script)
    stamps = [f for f in out.frames if isinstance(f, WordTimestamps)]
    words = [w for s in stamps for w in s.words]
    assert [w.text for w in words] == ["Good", "morning.", "Welcome", "back."]
    assert words[0].start == 0.0
    assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False))
    assert words[-1].end <= sum(f.duration for f in out.audio(3))


@pytest.mark.anyio
async def test_first_audio_records_ttfb_and_publishes_a_timeline_mark() -> None:
    async with FakeCartesia(ttfb=0.05) as fake:

        async def script(a: Agent) -> None:
            await a.say(4, "Hi.")

        tts, _, _, events = await run_tts(fake, script)
    assert tts.metrics.last_ttfb is not None and tts.metrics.last_ttfb >= 0.05
    marks = [e for e in events if isinstance(e, TimelineMark)]
    assert [(m.turn, m.stage) for m in marks] == [(4, "tts_first_audio")]


# -------------------------------------------------------- interruption


@pytest.mark.anyio
async def test_interrupt_cancels_the_context_and_drops_its_late_audio() -> None:
    out = Collect()
    async with FakeCartesia(realtime=20.0, chunk_ms=20) as fake:

        async def script(a: Agent) -> None:
            await a.say(5, "This is a rather long answer that the caller will cut short.")
            await wait_for(lambda: len(out.audio(5)) >= 2)
            await a.send("text", Interrupt(utterance_id=5))
            await a.say(5, "late text of the interrupted utterance")
            await wait_for(lambda: bool(fake.requests("cancel")))
            await anyio.sleep(0.2)  # let the in-flight generation keep streaming

        tts, out, result, _ = await run_tts(fake, script, sink=out)
    assert result.reason == "completed", result.error
    cancel = fake.requests("cancel")[0]
    assert cancel.context_id == fake.requests()[0].context_id
    assert tts.dropped_late_chunks > 0
    assert len(out.audio(5)) < fake.chunks_sent
    assert 5 not in out.done()
    assert len(fake.requests()) == 1  # text for the cancelled utterance was not sent


@pytest.mark.anyio
async def test_next_utterance_after_an_interrupt_uses_a_new_context() -> None:
    async with FakeCartesia() as fake:

        async def script(a: Agent) -> None:
            await a.send("text", AgentText(text="First answer. ", utterance_id=1))
            await a.send("text", Interrupt())
            await a.say(2, "Second answer.")

        _, out, _, _ = await run_tts(fake, script)
    ids = [r.context_id for r in fake.requests()]
    cancelled = {r.context_id for r in fake.requests("cancel")}
    assert ids[-1] not in cancelled and set(ids[:-1]) <= cancelled
    assert out.done() == [2]
    assert [r.transcript for r in fake.requests()][-1] == "Second answer."


# ------------------------------------------------------------- faults


@pytest.mark.anyio
async def test_drop_mid_utterance_ends_it_and_next_text_is_replayed_after_reconnect() -> None:
    faults = CartesiaFaults(close_after_chunks=1)
    async with FakeCartesia(faults=faults) as fake:
        tts = make_tts(fake)

        async def script(a: Agent) -> None:
            await wait_for(lambda: tts.connected)
            faults.fail_connects = 2  # keep the socket down for a moment after the drop
            await a.say(1, "A long first sentence that will be cut.")
            await wait_for(lambda: not tts.connected and fake.chunks_sent >= 1)
            await a.say(2, "Second one.")
            await wait_for(lambda: fake.connections == 2)

        _, out, result, _ = await run_tts(fake, script, tts=tts)
    assert result.reason == "completed", result.error
    assert tts.metrics.reconnects == 1
    assert out.done() == [1, 2]  # 1 ended early by the drop, 2 spoken whole
    second = [r for r in fake.requests() if r.connection == 2]
    assert [(r.transcript, r.continue_) for r in second] == [("Second one.", False)]
    assert sum(f.duration for f in out.audio(2)) == pytest.approx(
        0.06 * (len("Second one.") + 1), abs=0.05
    )


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_wrong_key_ends_the_call_with_an_auth_error(engine: Engine) -> None:
    async with FakeCartesia(api_key="right", engine=engine) as fake:

        async def script(a: Agent) -> None:
            await anyio.sleep(5)

        _, _, result, _ = await run_tts(fake, script)
    assert result.error is not None and isinstance(result.error.exc, ProviderAuthError)
    assert KEY not in str(result.error)


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["current", "legacy"])
async def test_service_error_ends_the_call_with_its_message(shape: str) -> None:
    async with FakeCartesia(known_voices={VOICE_A}, error_shape=shape) as fake:  # type: ignore[arg-type]

        async def script(a: Agent) -> None:
            await a.say(1, "Hello.")
            await anyio.sleep(5)

        _, _, result, _ = await run_tts(fake, script, voice_id=VOICE_B)
    assert result.error is not None and isinstance(result.error.exc, ProviderProtocolError)
    assert f"no voice with id '{VOICE_B}'" in str(result.error.exc)


@pytest.mark.anyio
async def test_bearer_auth_style_is_accepted() -> None:
    async with FakeCartesia() as fake:

        async def script(a: Agent) -> None:
            await a.say(1, "Hi.")

        _, out, result, _ = await run_tts(fake, script, auth="bearer")
    assert result.reason == "completed", result.error
    assert out.done() == [1]


# ------------------------------------------------- the fake's own checks


async def raw_request(fake: FakeCartesia, body: str) -> dict[str, Any]:
    """The fake's first reply to ``body`` on a fresh connection."""
    import msgspec

    url = f"{fake.url}/tts/websocket?cartesia_version=2025-04-16"
    async with connect_websocket(url, {"X-API-Key": KEY}) as ws:
        await ws.send(body)
        reply = await ws.receive()
    return msgspec.json.decode(reply)  # type: ignore[no-any-return]


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_answers_a_request_without_voice_with_an_error(engine: Engine) -> None:
    async with FakeCartesia(engine=engine) as fake:
        reply = await raw_request(
            fake,
            '{"model_id":"sonic-3","transcript":"x","context_id":"c",'
            '"output_format":{"container":"raw","encoding":"pcm_mulaw","sample_rate":8000}}',
        )
    assert reply["type"] == "error" and reply["message"] == "voice is required"
    assert fake.requests("invalid")[0].context_id == "c"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_an_unsupported_sample_rate(engine: Engine) -> None:
    async with FakeCartesia(engine=engine) as fake:
        reply = await raw_request(
            fake,
            '{"model_id":"sonic-3","transcript":"x","context_id":"c","voice":{"mode":"id","id":"v"},'
            '"output_format":{"container":"raw","encoding":"pcm_s16le","sample_rate":11025}}',
        )
    assert reply["type"] == "error" and reply["error_code"] == "invalid_output_format"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_a_wrong_key_with_401_and_a_json_error(engine: Engine) -> None:
    async with FakeCartesia(engine=engine) as fake:
        got = await refused_handshake(
            fake.url, "/tts/websocket?cartesia_version=2025-04-16", {"X-API-Key": "nope"}
        )
    assert (got.status, got.body) == (401, b'{"error":"Invalid API key"}')
    assert got.headers["content-type"] == "text/plain"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_a_handshake_without_a_version_with_400(engine: Engine) -> None:
    async with FakeCartesia(engine=engine) as fake:
        got = await refused_handshake(fake.url, "/tts/websocket", {"X-API-Key": KEY})
    assert (got.status, got.body) == (400, b'{"error":"Cartesia-Version is required"}')


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_while_down_with_503_and_another_path_with_404(engine: Engine) -> None:
    async with FakeCartesia(faults=CartesiaFaults(fail_connects=1), engine=engine) as fake:
        down = await refused_handshake(
            fake.url, "/tts/websocket?cartesia_version=2025-04-16", {"X-API-Key": KEY}
        )
        elsewhere = await refused_handshake(fake.url, "/tts/bytes", {"X-API-Key": KEY})
    assert (down.status, down.body) == (503, b'{"error":"unavailable"}')
    assert (elsewhere.status, elsewhere.body) == (404, b"not found")
    assert (fake.handshakes, fake.connections) == (2, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_closes_with_1011_after_the_fault_injected_chunk(engine: Engine) -> None:
    faults = CartesiaFaults(close_after_chunks=1)
    async with FakeCartesia(faults=faults, engine=engine) as fake:
        node = CartesiaTTS(api_key=KEY, base_url=fake.url)  # only its messages are used
        url = f"{fake.url}/tts/websocket?cartesia_version={node.options.version}"
        async with connect_websocket(url, dict(node.headers())) as ws:
            await ws.send(node._request("ctx-1", "Hello there.", False))
            first = await ws.receive()
            with pytest.raises(SocketClosed) as info:
                await ws.receive()
    assert '"type":"chunk"' in str(first)
    assert info.value.code == 1011 and fake.chunks_sent == 1


@pytest.mark.anyio
async def test_the_fakes_audio_length_per_character_is_configurable() -> None:
    default, short = FakeCartesia(), FakeCartesia(seconds_per_char=0.01)
    audio, words = await default.render("Hi there.", "pcm_s16le", 8000)
    assert len(audio) == 2 * int(8000 * 0.06 * 3) + 2 * int(8000 * 0.06 * 7)
    audio, words = await short.render("Hi there.", "pcm_s16le", 8000)
    assert len(audio) == 2 * int(8000 * 0.01 * 3) + 2 * int(8000 * 0.01 * 7)
    assert words[-1][0] == "there."
    with pytest.raises(ValueError, match="seconds_per_char"):
        FakeCartesia(seconds_per_char=0)


# ------------------------------------- the official cartesia library as judge (offline)


def test_headers_are_what_the_cartesia_library_sends() -> None:
    import cartesia

    official = cartesia.Cartesia(api_key=KEY).default_headers
    ours = CartesiaTTS(api_key=KEY).headers()
    assert ours["Authorization"] == official["Authorization"] == f"Bearer {KEY}"
    assert ours["Cartesia-Version"] == official["cartesia-version"]
    assert CartesiaTTS(api_key=KEY, auth="x-api-key").headers()["X-API-Key"] == KEY


def test_generation_and_cancel_requests_are_what_the_cartesia_library_declares() -> None:
    import msgspec
    from cartesia.types.generation_request import GenerationRequest
    from cartesia.types.websocket_client_event import CancelContextRequest

    from voicegraph.nodes.tts.cartesia_wire import CancelContext, encode

    node = CartesiaTTS(api_key=KEY, language="es")
    request = msgspec.json.decode(node._request("ctx-1", "Hola.", True))
    parsed = GenerationRequest.model_validate(request)
    assert parsed.model_extra == {} and parsed.continue_ is True and parsed.language == "es"
    assert parsed.voice.model_extra == {} and parsed.output_format.model_extra == {}
    cancel = CancelContextRequest.model_validate(
        msgspec.json.decode(encode(CancelContext("ctx-1")))
    )
    assert cancel.model_extra == {}


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_responses_are_what_the_cartesia_library_declares(engine: Engine) -> None:
    import msgspec
    from cartesia.types import websocket_response as wr

    classes = {
        c.model_fields["type"].annotation.__args__[0]: c
        for c in (wr.Chunk, wr.FlushDone, wr.Done, wr.Timestamps, wr.Error, wr.PhonemeTimestamps)
    }
    node = CartesiaTTS(api_key=KEY, base_url="ws://127.0.0.1:9")  # only its messages are used
    replies: list[dict[str, Any]] = []
    async with FakeCartesia(engine=engine) as fake:
        url = f"{fake.url}/tts/websocket?cartesia_version={node.options.version}"
        async with connect_websocket(url, dict(node.headers())) as ws:
            await ws.send(node._request("ctx-1", "Hello there.", False))
            await ws.send('{"model_id":"sonic-3","transcript":"x","context_id":"c2"}')
            with anyio.fail_after(10):
                while not any(r["type"] == "done" for r in replies) or not any(
                    r["type"] == "error" for r in replies
                ):
                    replies.append(msgspec.json.decode(await ws.receive()))
    assert {r["type"] for r in replies} >= {"chunk", "timestamps", "done", "error"}
    for reply in replies:
        parsed = classes[reply["type"]].model_validate(reply)
        assert parsed.model_extra == {}, reply["type"]
