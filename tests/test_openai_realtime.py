"""OpenAIRealtime against FakeOpenAIRealtime: session set-up per dialect, a spoken turn, tool
calls, barge-in (cancel + truncate), reconnect, auth failure, a service that stays down."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import numpy as np
import pytest

from voicegraph import (
    Actor,
    AgentText,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Call,
    Frame,
    Graph,
    In,
    Interrupt,
    Out,
    PlayedPosition,
    SpeechStarted,
    ToolCallRequest,
    ToolCallResult,
    Transcript,
)
from voicegraph.nodes.providers import ProviderAuthError, ProviderUnavailable, ReconnectPolicy
from voicegraph.nodes.realtime import SENSITIVITY, OpenAIRealtime
from voicegraph.testing.fake_openai_realtime import (
    FakeOpenAIRealtime,
    RealtimeFault,
    RealtimeReply,
)
from voicegraph.wsio import connect_websocket

pytestmark = pytest.mark.anyio

PCM24 = AudioFormat("pcm16", 24000)
FAST = ReconnectPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, connect_timeout=2)


def speech(ms: int, fmt: AudioFormat = PCM24) -> list[AudioFrame]:
    """20 ms frames of a loud tone (what the fake's energy VAD hears as speech)."""
    t = np.arange(fmt.sample_rate * 20 // 1000) / fmt.sample_rate
    data = (9000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    return [AudioFrame(data=data, encoding="pcm16", sample_rate=24000)] * (ms // 20)


def silence(ms: int) -> list[AudioFrame]:
    return [AudioFrame(data=bytes(960), encoding="pcm16", sample_rate=24000)] * (ms // 20)


class Mic(Actor):
    """Sends whatever the test pushes, until the call stops."""

    def __init__(self, fmt: AudioFormat) -> None:
        super().__init__()
        self.outputs = (Out("audio", AudioFrame, format=fmt),)
        self.tx, self.rx = anyio.create_memory_object_stream[AudioFrame](1000)

    async def run(self) -> None:
        async for frame in self.rx:
            await self.send("audio", frame)


class Sink(Actor):
    """Collects the realtime node's outputs; tests wait on conditions over them."""

    inputs = (In("audio"), In("events"))

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Frame] = []
        self._changed = anyio.Event()

    async def handle(self, port: str, frame: Frame) -> None:
        self.got.append(frame)
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, cls: type) -> list[Any]:
        return [f for f in self.got if isinstance(f, cls)]

    async def until(self, cond: Callable[[], bool], timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not cond():
                await self._changed.wait()


class Harness:
    def __init__(self, node: OpenAIRealtime) -> None:
        self.node = node
        self.mic = Mic(node.options.audio_format)
        self.sink = Sink()
        g = Graph()
        g.add("mic", self.mic)
        g.add("rt", node)
        g.add("sink", self.sink)
        g.connect("mic.audio", "rt.audio")
        g.connect("rt.audio", "sink.audio")
        g.connect("rt.events", "sink.events")
        self.call = Call(g)
        self.result: Any = None

    async def say(self, frames: list[AudioFrame]) -> None:
        for f in frames:
            await self.mic.tx.send(f)

    async def inject(self, port: str, frame: Frame) -> None:
        await self.call.inject("rt", port, frame)

    async def run(self) -> None:
        self.result = await self.call.run()


def realtime(fake: FakeOpenAIRealtime, **kw: Any) -> OpenAIRealtime:
    kw.setdefault("audio_format", PCM24)
    kw.setdefault("reconnect", FAST)
    kw.setdefault("api_key", "test-key")
    return OpenAIRealtime(base_url=fake.url, **kw)


async def run_with(h: Harness, body: Callable[[], Any]) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.run)
        try:
            await body()
        finally:
            h.call.stop()


# ------------------------------------------------------------------ session


async def test_ga_session_update_uses_nested_audio_and_sensitivity_table() -> None:
    async with FakeOpenAIRealtime() as fake:
        h = Harness(realtime(fake, model="gpt-realtime", sensitivity="high", voice="marin"))

        async def body() -> None:
            await fake.wait_for(lambda: bool(fake.connections and fake.connections[0].sessions))

        await run_with(h, body)
    conn = fake.connections[0]
    assert conn.dialect == "ga" and conn.errors == []
    audio = conn.sessions[0]["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["output"]["voice"] == "marin"
    threshold, padding, silence_ms = SENSITIVITY["high"]
    vad = audio["input"]["turn_detection"]
    assert (vad["threshold"], vad["prefix_padding_ms"], vad["silence_duration_ms"]) == (
        threshold,
        padding,
        silence_ms,
    )


async def test_preview_model_speaks_beta_with_flat_ulaw_session() -> None:
    async with FakeOpenAIRealtime() as fake:
        node = realtime(
            fake, model="gpt-4o-realtime-preview", audio_format=AudioFormat("mulaw", 8000)
        )
        h = Harness(node)

        async def body() -> None:
            await fake.wait_for(lambda: bool(fake.connections and fake.connections[0].sessions))

        await run_with(h, body)
    conn = fake.connections[0]
    assert conn.dialect == "beta" and conn.errors == []
    assert conn.sessions[0]["input_audio_format"] == "g711_ulaw"
    assert conn.sessions[0]["output_audio_format"] == "g711_ulaw"


async def test_fake_rejects_beta_fields_in_a_ga_session() -> None:
    async with FakeOpenAIRealtime() as fake:
        headers = {"Authorization": "Bearer test-key"}
        async with connect_websocket(f"{fake.url}?model=gpt-realtime", headers) as ws:
            await ws.receive()  # session.created
            update = {"type": "session.update", "session": {"input_audio_format": "pcm16"}}
            await ws.send(json.dumps(update))
            reply = json.loads(await ws.receive())
    assert reply["type"] == "error"
    assert reply["error"]["message"] == "Unknown parameter: 'session.input_audio_format'."


def test_unsupported_audio_format_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="convert=True"):
        OpenAIRealtime(api_key="k", audio_format=AudioFormat("pcm16", 16000))


def test_key_from_env_is_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-secret")
    node = OpenAIRealtime()
    assert "sk-live-secret" not in repr(node) and "sk-live-secret" not in repr(vars(node))


# -------------------------------------------------------------------- turns


async def test_spoken_turn_yields_transcript_agent_text_and_audio_of_the_right_length() -> None:
    reply = "Your order shipped."
    async with FakeOpenAIRealtime(transcripts=["where is my order"], replies=[reply]) as fake:
        h = Harness(realtime(fake))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))
            await h.sink.until(lambda: any(t.last for t in h.sink.of(AgentText)))

        await run_with(h, body)
    s = h.sink
    assert s.of(SpeechStarted)
    assert [t.text for t in s.of(Transcript)] == ["where is my order"]
    assert "".join(t.text for t in s.of(AgentText)) == reply
    frames = s.of(AudioFrame)
    assert {f.utterance_id for f in frames} == {s.of(AudioDone)[0].utterance_id}
    assert sum(len(f.data) for f in frames) == PCM24.bytes_for(len(reply) * 0.060)
    assert fake.connections[0].errors == []


async def test_greeting_is_requested_before_the_caller_speaks() -> None:
    async with FakeOpenAIRealtime(replies=["Hi, thanks for calling."]) as fake:
        h = Harness(realtime(fake, greeting="Hi, thanks for calling."))

        async def body() -> None:
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))

        await run_with(h, body)
    (params,) = fake.connections[0].response_creates
    assert params is not None and "Hi, thanks for calling." in params["instructions"]
    assert fake.connections[0].events[:2] == ["session.update", "response.create"]


async def test_the_greeting_does_not_use_up_the_scripted_replies() -> None:
    async with FakeOpenAIRealtime(
        transcripts=["hello"], replies=["First reply."], greeting="Hi, thanks for calling."
    ) as fake:
        h = Harness(realtime(fake, greeting="Hi, thanks for calling."))

        async def body() -> None:
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: len(h.sink.of(AudioDone)) == 2)

        await run_with(h, body)
    said = {}
    for t in h.sink.of(AgentText):
        said[t.utterance_id] = said.get(t.utterance_id, "") + t.text
    assert list(said.values()) == ["Hi, thanks for calling.", "First reply."]


async def test_without_a_scripted_greeting_the_fake_says_what_it_was_asked_to() -> None:
    async with FakeOpenAIRealtime() as fake:
        h = Harness(realtime(fake, greeting="Luigi's, good evening."))

        async def body() -> None:
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))

        await run_with(h, body)
    assert "".join(t.text for t in h.sink.of(AgentText)) == "Luigi's, good evening."


# -------------------------------------------------------------------- tools

ORDER_CALL = RealtimeReply(tool="lookup_order", arguments='{"order_id": "42"}')
TOOLS = [{"type": "function", "name": "lookup_order", "parameters": {"type": "object"}}]


async def test_tool_call_goes_out_and_its_result_resumes_the_model() -> None:
    async with FakeOpenAIRealtime(
        transcripts=["order 42"], replies=[ORDER_CALL, "Shipped."]
    ) as fake:
        h = Harness(realtime(fake, tools=TOOLS))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: bool(h.sink.of(ToolCallRequest)))
            req = h.sink.of(ToolCallRequest)[0]
            await h.inject(
                "events", ToolCallResult(call_id=req.call_id, output='{"status": "shipped"}')
            )
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))

        await run_with(h, body)
    req = h.sink.of(ToolCallRequest)[0]
    assert (req.name, json.loads(req.arguments)) == ("lookup_order", {"order_id": "42"})
    conn = fake.connections[0]
    assert conn.function_outputs == [(req.call_id, '{"status": "shipped"}')]
    assert conn.response_creates == [None]
    assert conn.errors == []


async def test_beta_tool_call_takes_its_name_from_the_announced_item() -> None:
    # beta's response.function_call_arguments.done carries no name (the openai library's type)
    async with FakeOpenAIRealtime(
        transcripts=["order 42"], replies=[ORDER_CALL, "Shipped."]
    ) as fake:
        h = Harness(realtime(fake, model="gpt-4o-realtime-preview", tools=TOOLS))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: bool(h.sink.of(ToolCallRequest)))

        await run_with(h, body)
    assert fake.connections[0].dialect == "beta"
    assert h.sink.of(ToolCallRequest)[0].name == "lookup_order"


async def test_tool_handler_runs_inside_the_node() -> None:
    calls: list[tuple[str, str]] = []

    async def handler(name: str, arguments: str) -> str:
        calls.append((name, arguments))
        return '{"status": "shipped"}'

    async with FakeOpenAIRealtime(
        transcripts=["order 42"], replies=[ORDER_CALL, "Shipped."]
    ) as fake:
        h = Harness(realtime(fake, tools=TOOLS, tool_handler=handler))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))

        await run_with(h, body)
    assert calls == [("lookup_order", '{"order_id": "42"}')]
    assert h.sink.of(ToolCallRequest) == []
    assert len(fake.connections[0].function_outputs) == 1


# ----------------------------------------------------------------- barge-in


async def test_interrupt_cancels_and_truncates_at_the_heard_position() -> None:
    long_reply = "This is a long answer that keeps going for quite a while. " * 4
    async with FakeOpenAIRealtime(transcripts=["hi"], replies=[long_reply], speed=2.0) as fake:
        h = Harness(realtime(fake))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: len(h.sink.of(AudioFrame)) >= 3)
            utt = h.sink.of(AudioFrame)[0].utterance_id
            await h.inject("control", Interrupt(utterance_id=utt))
            await h.inject("events", PlayedPosition(utterance_id=utt, played=0.25, sent=0.3))
            await fake.wait_for(lambda: bool(fake.connections[0].truncations))

        await run_with(h, body)
    conn = fake.connections[0]
    assert conn.cancels == 1
    assert [ms for _, ms in conn.truncations] == [250]
    assert conn.errors == []
    assert h.sink.of(AudioDone) == []


async def test_truncate_is_clamped_to_the_audio_the_service_produced() -> None:
    async with FakeOpenAIRealtime(transcripts=["hi"], replies=["Short."]) as fake:
        h = Harness(realtime(fake))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))
            utt = h.sink.of(AudioDone)[0].utterance_id
            await h.inject("events", PlayedPosition(utterance_id=utt, played=30.0, sent=30.0))
            await fake.wait_for(lambda: bool(fake.connections[0].truncations))

        await run_with(h, body)
    produced_ms = sum(len(f.data) for f in h.sink.of(AudioFrame)) // 48
    assert [ms for _, ms in fake.connections[0].truncations] == [produced_ms]
    assert fake.connections[0].errors == []


# ------------------------------------------------------------------ failures


async def test_dropped_socket_reconnects_and_resends_the_session_first() -> None:
    faults = [RealtimeFault("close_mid_response"), None]
    async with FakeOpenAIRealtime(
        transcripts=["hi", "again"], replies=["First answer.", "Second."], faults=faults
    ) as fake:
        h = Harness(realtime(fake))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: len(fake.connections) == 2 and bool(h.sink.of(AudioDone)))
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: len(h.sink.of(AudioDone)) == 2)

        await run_with(h, body)
    assert h.result.reason == "stopped"
    second = fake.connections[1]
    assert second.events[0] == "session.update"
    assert second.errors == []
    assert h.node.metrics.reconnects == 1


async def test_refused_key_ends_the_call_with_an_auth_error() -> None:
    async with FakeOpenAIRealtime(api_key="right-key") as fake:
        h = Harness(realtime(fake, api_key="wrong-key"))
        with anyio.fail_after(10):
            await h.run()
    assert h.result.reason == "error"
    assert isinstance(h.result.error.exc, ProviderAuthError)
    assert "wrong-key" not in str(h.result.error)


async def test_service_that_stays_down_ends_the_call_with_provider_unavailable() -> None:
    faults = [RealtimeFault("down")] * 5
    async with FakeOpenAIRealtime(faults=faults) as fake:
        h = Harness(realtime(fake))
        with anyio.fail_after(10):
            await h.run()
    assert h.result.reason == "error"
    assert isinstance(h.result.error.exc, ProviderUnavailable)
    assert fake.handshakes == 3  # first try + max_attempts retries


async def test_malformed_service_message_is_counted_and_skipped() -> None:
    async with FakeOpenAIRealtime(
        transcripts=["hi"], replies=["Fine."], faults=[RealtimeFault("malformed")]
    ) as fake:
        h = Harness(realtime(fake))

        async def body() -> None:
            await h.say(speech(300) + silence(700))
            await h.sink.until(lambda: bool(h.sink.of(AudioDone)))

        await run_with(h, body)
    assert h.node.bad_messages == 1


def test_wire_audio_is_base64_in_append() -> None:
    from voicegraph.nodes.realtime import messages as m

    text = m.encode(m.InputAudioAppend(audio=b"\x01\x02"))
    assert msgspec.json.decode(text) == {"type": "input_audio_buffer.append", "audio": "AQI="}
