"""DeepgramSTT against FakeDeepgram: normal flow, finalize, keep-alive, close, reconnect, auth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec
import numpy as np
import pytest
from fake_kit import ENGINES, refused_handshake

from voicegraph import (
    Actor,
    AudioFormat,
    AudioFrame,
    Call,
    EndOfTurn,
    Frame,
    Graph,
    In,
    Out,
    SpeechStarted,
    SpeechStopped,
    TimelineMark,
    Transcript,
)
from voicegraph.nodes.audio.g711 import pcm16_to_ulaw
from voicegraph.nodes.providers import (
    MissingSecret,
    ProviderAuthError,
    ProviderUnavailable,
    ReconnectPolicy,
    Secret,
)
from voicegraph.nodes.stt.deepgram import DeepgramOptions, DeepgramSTT, quiet_test
from voicegraph.testing.fake_deepgram import DeepgramFaults, FakeDeepgram
from voicegraph.testing.fakeserver import Engine
from voicegraph.wsio import SocketClosed, connect_websocket

KEY = "test-deepgram-key"
FAST = ReconnectPolicy(
    connect_timeout=2.0, max_attempts=3, initial_backoff=0.05, max_backoff=0.1, drain_timeout=2.0
)


def tone(seconds: float, amplitude: int = 8000) -> list[bytes]:
    """20 ms µ-law frames of a 440 Hz tone (by default loud enough to count as speech)."""
    n = int(8000 * seconds)
    t = np.arange(n) / 8000
    pcm = (amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    mu = pcm16_to_ulaw(pcm)
    return [mu[i : i + 160] for i in range(0, len(mu), 160)]


def silence(seconds: float) -> list[bytes]:
    return [b"\xff" * 160] * int(seconds * 50)


class Caller(Actor):
    """Sends scripted audio/VAD frames into the STT node."""

    outputs = (Out("audio", AudioFrame, SpeechStarted, SpeechStopped),)

    def __init__(self, script: Callable[[Caller], Awaitable[None]]) -> None:
        super().__init__()
        self.script = script

    async def run(self) -> None:
        await self.script(self)

    async def play(self, frames: list[bytes]) -> None:
        for f in frames:
            await self.send("audio", AudioFrame(data=f, encoding="mulaw", sample_rate=8000))

    async def vad(self, frame: Frame) -> None:
        await self.send("audio", frame)


class Collect(Actor):
    inputs = (In("in", Transcript, EndOfTurn),)

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def handle(self, port: str, frame: Frame) -> None:
        self.frames.append(frame)

    def finals(self) -> list[Transcript]:
        return [f for f in self.frames if isinstance(f, Transcript) and f.is_final]


async def run_stt(
    dg: FakeDeepgram,
    script: Callable[[Caller], Awaitable[None]],
    **opts: object,
) -> tuple[DeepgramSTT, Collect, object]:
    stt = DeepgramSTT(api_key=KEY, base_url=dg.url, reconnect=FAST, **opts)
    out = Collect()
    g = Graph("stt")
    g.add("caller", Caller(script))
    g.add("stt", stt)
    g.add("sink", out)
    # Tests push audio faster than real time; a deep lane keeps drop-oldest from kicking in.
    g.connect("caller", "stt", capacity=10_000)
    g.connect("stt", "sink")
    call = Call(g, "dg-test")
    events: list[Frame] = []
    call.subscribe(events.append)
    result = await call.run()
    out.events = events  # type: ignore[attr-defined]
    return stt, out, result


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        # Polling: the conditions are plain attributes of fakes and nodes, not events.
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.01)


# ------------------------------------------------------------ options


def test_missing_key_error_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(MissingSecret, match="DEEPGRAM_API_KEY"):
        DeepgramSTT()


def test_key_is_not_in_the_node_repr_or_options() -> None:
    stt = DeepgramSTT(api_key="dg-secret-123")
    assert "dg-secret-123" not in repr(stt) + repr(stt.options) + repr(vars(stt))


def test_mulaw_at_16k_is_refused_with_a_fix() -> None:
    with pytest.raises(ValueError, match="sample_rate=8000 or encoding='pcm16'"):
        DeepgramOptions(encoding="mulaw", sample_rate=16000)


def test_utterance_end_without_interim_results_is_refused() -> None:
    with pytest.raises(ValueError, match="interim_results"):
        DeepgramOptions(interim_results=False)


def test_audio_port_pins_the_configured_format() -> None:
    stt = DeepgramSTT(api_key=KEY, encoding="pcm16", sample_rate=16000)
    fmt = stt.input("audio").format
    assert fmt is not None and (fmt.encoding, fmt.sample_rate) == ("pcm16", 16000)


# ---------------------------------------------------------- normal flow


@pytest.mark.anyio
async def test_handshake_sends_token_and_options_as_query() -> None:
    async with FakeDeepgram(["hello"]) as dg:

        async def script(c: Caller) -> None:
            await c.play(silence(0.1))

        _, _, result = await run_stt(dg, script)
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    q = dg.queries[0]
    assert q["encoding"] == ["mulaw"] and q["sample_rate"] == ["8000"]
    assert q["interim_results"] == ["true"] and q["utterance_end_ms"] == ["1000"]
    assert q["endpointing"] == ["300"] and q["vad_events"] == ["true"]


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_speech_gives_interim_then_speech_final_transcript_with_word_timings(
    engine: Engine,
) -> None:
    async with FakeDeepgram(["Hello there, how are you?"], engine=engine) as dg:

        async def script(c: Caller) -> None:
            await c.play(silence(0.2) + tone(1.2) + silence(0.5))
            await wait_for(lambda: any(m.get("speech_final") for m in dg.sent))

        _, out, _ = await run_stt(dg, script)
    ts = [f for f in out.frames if isinstance(f, Transcript)]
    assert ts[0].is_final is False
    final = ts[-1]
    assert final.is_final and final.speech_final
    assert final.text == "Hello there, how are you?"
    assert [w.text for w in final.words] == ["Hello", "there,", "how", "are", "you?"]
    assert 0.15 <= final.words[0].start < final.words[-1].end <= 1.45


@pytest.mark.anyio
async def test_utterance_end_emits_one_end_of_turn_with_the_turn_text() -> None:
    async with FakeDeepgram(["book a table"]) as dg:

        async def script(c: Caller) -> None:
            await c.play(tone(0.6) + silence(1.5))
            await wait_for(lambda: any(m["type"] == "UtteranceEnd" for m in dg.sent))

        _, out, _ = await run_stt(dg, script)
    eot = [f for f in out.frames if isinstance(f, EndOfTurn)]
    assert eot == [EndOfTurn(text="book a table", reason="utterance_end")]


@pytest.mark.anyio
async def test_speech_stopped_sends_finalize_and_records_ttfb() -> None:
    async with FakeDeepgram(["yes please"]) as dg:

        async def script(c: Caller) -> None:
            await c.vad(SpeechStarted())
            await c.play(tone(0.6))
            await c.vad(SpeechStopped())
            await wait_for(lambda: any(m.get("from_finalize") for m in dg.sent))

        stt, out, _ = await run_stt(dg, script, endpointing=None)
    assert "Finalize" in dg.kinds()
    assert out.finals()[-1].text == "yes please"
    assert len(stt.metrics.ttfb) == 1
    marks = [e for e in out.events if isinstance(e, TimelineMark)]  # type: ignore[attr-defined]
    assert [m.stage for m in marks] == ["stt_final"]


@pytest.mark.anyio
async def test_keepalive_is_sent_while_the_caller_is_silent() -> None:
    async with FakeDeepgram() as dg:

        async def script(c: Caller) -> None:
            await c.play(silence(0.1))
            await wait_for(lambda: dg.kinds().count("KeepAlive") >= 2)

        _, _, result = await run_stt(dg, script, keepalive_interval=0.05)
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    kinds = dg.kinds()
    assert kinds.index("KeepAlive") > kinds.index("audio")


@pytest.mark.anyio
async def test_no_keepalive_while_speech_streams_frame_by_frame() -> None:
    """Speech sent frame by frame (on asyncio from the sender's call, without waking the
    node): each send moves the keep-alive deadline, so none is due."""
    async with FakeDeepgram() as dg:

        async def script(c: Caller) -> None:
            await c.play(silence(0.1))
            await c.vad(SpeechStarted())
            for frame in tone(0.6):
                await c.play([frame])
                await anyio.sleep(0.02)
            await c.vad(SpeechStopped())

        _, _, result = await run_stt(dg, script, keepalive_interval=0.1, audio_batch_speaking=0.0)
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    assert "KeepAlive" not in dg.kinds()
    assert sum(m.size for m in dg.received if m.kind == "audio") == 160 * 35


@pytest.mark.anyio
async def test_first_keepalive_before_any_audio_is_a_silence_frame() -> None:
    async with FakeDeepgram() as dg:

        async def script(c: Caller) -> None:
            await wait_for(lambda: dg.kinds().count("KeepAlive") >= 1)

        await run_stt(dg, script, keepalive_interval=0.05)
    kinds = dg.kinds()
    assert kinds[0] == "audio" and dg.received[0].size == 160


def audio_sizes(dg: FakeDeepgram) -> list[int]:
    return [m.size for m in dg.received if m.kind == "audio"]


@pytest.mark.anyio
async def test_between_turns_audio_goes_out_in_tenth_of_a_second_messages() -> None:
    async with FakeDeepgram() as dg:

        async def script(c: Caller) -> None:
            await c.play(silence(0.5))
            await wait_for(lambda: len(audio_sizes(dg)) >= 5)

        await run_stt(dg, script)
    assert audio_sizes(dg) == [800] * 5  # 5 x 100 ms of µ-law, not 25 x 20 ms


@pytest.mark.anyio
async def test_speech_goes_out_in_batches_and_the_first_quiet_frame_flushes() -> None:
    """While the caller speaks, loud audio goes out in 100 ms messages; the first quiet frame
    goes out at once with the batch before it, and each quiet frame after it on its own, so
    Deepgram's endpointing counts the silence as it comes."""
    async with FakeDeepgram() as dg:

        async def script(c: Caller) -> None:
            await c.vad(SpeechStarted())
            await c.play(tone(0.26))  # 13 frames: two full batches, three frames pending
            await c.play(silence(0.1))  # the VAD has not yet judged this a stop
            await c.vad(SpeechStopped())
            await wait_for(lambda: "Finalize" in dg.kinds())
            await c.play(silence(0.06))  # batched again: held until the end of input

        await run_stt(dg, script)
    kinds = dg.kinds()
    assert kinds[:8] == ["audio"] * 7 + ["Finalize"]
    assert audio_sizes(dg) == [800, 800, 480 + 160, 160, 160, 160, 160, 480]


@pytest.mark.anyio
async def test_audio_batch_speaking_0_sends_each_frame_and_speech_stopped_flushes() -> None:
    async with FakeDeepgram() as dg:

        async def script(c: Caller) -> None:
            await c.vad(SpeechStarted())
            await c.play(tone(0.1))  # one message per frame while speaking
            await c.vad(SpeechStopped())
            await wait_for(lambda: "Finalize" in dg.kinds())
            await c.play(silence(0.06))  # batched again: held until the end of input

        await run_stt(dg, script, audio_batch_speaking=0.0)
    kinds = dg.kinds()
    assert kinds[:6] == ["audio"] * 5 + ["Finalize"]
    assert audio_sizes(dg) == [160] * 5 + [480]


@pytest.mark.anyio
async def test_a_line_noisier_than_quiet_level_is_batched_until_the_vad_stops() -> None:
    """Noise above ``quiet_level`` never looks quiet: the batch runs on until the VAD's
    SpeechStopped flushes it (nothing is lost or reordered)."""
    async with FakeDeepgram() as dg:

        async def script(c: Caller) -> None:
            await c.vad(SpeechStarted())
            await c.play(tone(0.12))
            await c.play(tone(0.04, amplitude=300))  # -40.8 dBFS: line noise at -50
            await c.vad(SpeechStopped())
            await wait_for(lambda: "Finalize" in dg.kinds())

        await run_stt(dg, script, quiet_level=-50.0)
    kinds = dg.kinds()
    assert kinds[:3] == ["audio", "audio", "Finalize"]
    assert audio_sizes(dg) == [800, 160 + 320]


@pytest.mark.parametrize(
    ("encoding", "level", "quiet"),
    [
        ("mulaw", 300, True),  # -40.8 dBFS peak
        ("mulaw", 400, False),  # -38.3 dBFS
        ("pcm16", 300, True),
        ("pcm16", 400, False),
    ],
)
def test_quiet_test_compares_the_frame_with_quiet_level(
    encoding: str, level: int, quiet: bool
) -> None:
    t = np.arange(160) / 8000
    pcm = (level * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()
    data = pcm16_to_ulaw(pcm) if encoding == "mulaw" else pcm
    test = quiet_test(AudioFormat(encoding, 8000), -40.0)  # type: ignore[arg-type]
    assert test(data) is quiet
    # one click (under 1 ms of loud samples) does not make a quiet frame loud
    if encoding == "pcm16":  # a stray byte is not a sample, and never raises
        assert test(pcm + b"\x7f") is quiet
    click = np.zeros(160, "<i2")
    click[:7] = 9000
    pcm = click.tobytes()
    assert test(pcm16_to_ulaw(pcm) if encoding == "mulaw" else pcm) is True


@pytest.mark.anyio
async def test_audio_batch_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="audio_batch"):
        DeepgramOptions(audio_batch=2.0)
    with pytest.raises(ValueError, match="quiet_level"):
        DeepgramOptions(quiet_level=3.0)


@pytest.mark.anyio
async def test_end_of_input_sends_close_stream_and_gets_remaining_results() -> None:
    async with FakeDeepgram(["last words"]) as dg:

        async def script(c: Caller) -> None:
            await c.play(tone(0.5))

        _, out, result = await run_stt(dg, script, endpointing=None)
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    assert dg.kinds()[-1] == "CloseStream"
    assert dg.close_codes == [(1000, "")]
    assert out.finals()[-1].text == "last words"


# --------------------------------------------------------------- faults


@pytest.mark.anyio
async def test_mid_stream_close_reconnects_and_keeps_transcribing_in_caller_time() -> None:
    faults = DeepgramFaults(close_after_audio=0.5)
    async with FakeDeepgram(["first", "second"], faults=faults) as dg:

        async def script(c: Caller) -> None:
            await c.play(silence(0.6))
            await wait_for(lambda: dg.connections == 2)
            await c.play(tone(0.6) + silence(0.4))
            await wait_for(lambda: any(m.get("speech_final") for m in dg.sent))

        stt, out, result = await run_stt(dg, script)
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    assert stt.metrics.reconnects == 1
    final = out.finals()[-1]
    assert final.text == "first"  # the fake's first segment is on the second connection
    assert final.start >= 0.5  # offset by the audio of the first connection


@pytest.mark.anyio
async def test_audio_beyond_the_outage_buffer_is_counted_as_dropped_and_the_rest_sent() -> None:
    faults = DeepgramFaults(close_after_audio=0.1)
    policy = ReconnectPolicy(
        initial_backoff=0.2, max_backoff=0.2, jitter=0.0, max_attempts=3, buffer_messages=5
    )
    async with FakeDeepgram(faults=faults) as dg:
        # one message per 20 ms frame, so the buffer's count is of frames
        stt = DeepgramSTT(api_key=KEY, base_url=dg.url, reconnect=policy, audio_batch=0.0)

        async def script(c: Caller) -> None:
            await c.play(silence(0.1))
            await wait_for(lambda: not stt.connected and dg.close_codes != [])
            await c.play(silence(0.2))  # 10 frames while down; the buffer holds 5
            await wait_for(lambda: dg.connections == 2 and len(dg.kinds(2)) >= 5)

        g = Graph("stt")
        g.add("caller", Caller(script))
        g.add("stt", stt)
        g.add("sink", Collect())
        g.connect("caller", "stt", capacity=10_000)
        g.connect("stt", "sink")
        result = await Call(g, "dg-test").run()
    assert result.reason == "completed", result.error
    assert stt.metrics.dropped_messages == 5 and stt.metrics.dropped_bytes == 5 * 160
    assert dg.kinds(2)[:5] == ["audio"] * 5


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_wrong_key_ends_the_call_with_an_auth_error(engine: Engine) -> None:
    async with FakeDeepgram(api_key="the-right-one", engine=engine) as dg:

        async def script(c: Caller) -> None:
            await anyio.sleep(5)

        _, _, result = await run_stt(dg, script)
    err = result.error  # type: ignore[attr-defined]
    assert err is not None and isinstance(err.exc, ProviderAuthError)
    assert KEY not in str(err)
    assert dg.handshakes == 1


@pytest.mark.anyio
async def test_service_that_stays_down_raises_provider_unavailable() -> None:
    async with FakeDeepgram(faults=DeepgramFaults(fail_connects=100)) as dg:

        async def script(c: Caller) -> None:
            await c.play(silence(0.1))
            await anyio.sleep(5)

        stt, _, result = await run_stt(dg, script)
    err = result.error  # type: ignore[attr-defined]
    assert err is not None and isinstance(err.exc, ProviderUnavailable)
    assert dg.handshakes == 1 + FAST.max_attempts


@pytest.mark.anyio
async def test_malformed_provider_message_is_skipped_and_counted() -> None:
    async with FakeDeepgram(["still fine"], faults=DeepgramFaults(malformed_first=True)) as dg:

        async def script(c: Caller) -> None:
            await c.play(tone(0.5) + silence(0.4))
            await wait_for(lambda: any(m.get("speech_final") for m in dg.sent))

        stt, out, _ = await run_stt(dg, script)
    assert stt.malformed == 1
    assert out.finals()[-1].text == "still fine"


# ------------------------------------------------- the fake's own checks


async def raw(dg: FakeDeepgram, query: str = "encoding=mulaw&sample_rate=8000"):  # type: ignore[no-untyped-def]
    return connect_websocket(f"{dg.url}/v1/listen?{query}", {"Authorization": f"token {KEY}"})


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_closes_with_data_0000_on_unknown_control_message(engine: Engine) -> None:
    async with FakeDeepgram(engine=engine) as dg:
        async with await raw(dg) as ws:
            await ws.send('{"type":"Flush"}')
            with pytest.raises(SocketClosed) as info:
                await ws.receive()
    assert (info.value.code, info.value.reason) == (1008, "DATA-0000")


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_closes_with_data_0000_on_empty_binary_frame(engine: Engine) -> None:
    async with FakeDeepgram(engine=engine) as dg:
        async with await raw(dg) as ws:
            await ws.send(b"")
            with pytest.raises(SocketClosed) as info:
                await ws.receive()
    assert info.value.code == 1008


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_closes_idle_stream_with_net_0001_despite_keepalive_before_audio(
    engine: Engine,
) -> None:
    async with FakeDeepgram(idle_timeout=0.2, engine=engine) as dg:
        async with await raw(dg) as ws:
            await ws.send('{"type":"KeepAlive"}')
            await anyio.sleep(0.1)
            await ws.send('{"type":"KeepAlive"}')
            with pytest.raises(SocketClosed) as info:
                await ws.receive()
    assert info.value.code == 1011 and info.value.reason.startswith("NET-0001")


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_raw_audio_without_sample_rate(engine: Engine) -> None:
    async with FakeDeepgram(engine=engine) as dg:
        with pytest.raises(SocketClosed) as info:
            async with await raw(dg, "encoding=mulaw"):
                pass
    assert info.value.code == 400


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_a_wrong_key_with_401_dg_error_and_request_id(engine: Engine) -> None:
    async with FakeDeepgram(engine=engine) as dg:
        got = await refused_handshake(
            dg.url, "/v1/listen?encoding=mulaw&sample_rate=8000", {"Authorization": "token nope"}
        )
    assert (got.status, got.body) == (401, b"Invalid credentials.")
    assert got.headers["dg-error"] == "Invalid credentials."
    assert len(got.headers["dg-request-id"]) == 36
    assert got.headers["content-type"] == "text/plain"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_a_bad_parameter_with_400_naming_it(engine: Engine) -> None:
    async with FakeDeepgram(engine=engine) as dg:
        got = await refused_handshake(
            dg.url,
            "/v1/listen?encoding=mulaw&sample_rate=8000&interim_results=yes",
            {"Authorization": f"token {KEY}"},
        )
    error = "interim_results must be true or false, got 'yes'"
    assert (got.status, got.headers["dg-error"], got.body) == (400, error, error.encode())


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_while_down_with_503_then_accepts(engine: Engine) -> None:
    async with FakeDeepgram(faults=DeepgramFaults(fail_connects=1), engine=engine) as dg:
        got = await refused_handshake(
            dg.url, "/v1/listen?encoding=mulaw&sample_rate=8000", {"Authorization": f"token {KEY}"}
        )
        async with await raw(dg) as ws:
            await ws.send('{"type":"CloseStream"}')
            metadata = await ws.receive()
    assert (got.status, got.headers["dg-error"], got.body) == (503, "unavailable", b"unavailable")
    assert '"type":"Metadata"' in str(metadata)
    assert (dg.handshakes, dg.connections) == (2, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_refuses_another_path_with_404(engine: Engine) -> None:
    async with FakeDeepgram(engine=engine) as dg:
        got = await refused_handshake(dg.url, "/v1/speak", {"Authorization": f"token {KEY}"})
    assert (got.status, got.body) == (404, b"not found") and "dg-request-id" in got.headers


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_fake_answers_speech_then_silence_with_a_speech_final_result(engine: Engine) -> None:
    async with FakeDeepgram(["hello there"], engine=engine) as dg:
        async with await raw(dg, "encoding=mulaw&sample_rate=8000&endpointing=300") as ws:
            for frame in tone(0.6) + silence(0.4):
                await ws.send(frame)
            result = msgspec.json.decode(await ws.receive())
            await ws.send('{"type":"CloseStream"}')
            with pytest.raises(SocketClosed) as info:
                while True:
                    await ws.receive()
    assert result["type"] == "Results" and result["speech_final"] is True
    assert result["channel"]["alternatives"][0]["transcript"] == "hello there"
    assert info.value.code == 1000 and dg.close_codes == [(1000, "")]


async def heard(size: int) -> list[dict[str, object]]:
    """What the fake sends for a fixed recording streamed in ``size``-byte messages (request
    ids left out: they differ per connection)."""
    query = "encoding=mulaw&sample_rate=8000&interim_results=true&vad_events=true"
    audio = b"".join(tone(0.8) + silence(1.5) + tone(0.5) + silence(0.2) + tone(0.3))
    async with FakeDeepgram(["one two three four", "five six", "seven"]) as dg:
        async with await raw(dg, query + "&utterance_end_ms=1000&endpointing=300") as ws:
            for i in range(0, len(audio), size):
                await ws.send(audio[i : i + size])
            await ws.send('{"type":"CloseStream"}')
            with pytest.raises(SocketClosed):
                while True:
                    await ws.receive()
    return [{k: v for k, v in m.items() if k not in ("metadata", "request_id")} for m in dg.sent]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [800, 333, 4000])
async def test_fake_hears_the_same_whatever_the_size_of_the_audio_messages(size: int) -> None:
    by_frame = await heard(160)
    assert [m["type"] for m in by_frame].count("Results") >= 4
    assert await heard(size) == by_frame


def test_secret_type_is_shared_with_the_base() -> None:
    assert isinstance(DeepgramSTT(api_key=Secret("k"))._key, Secret)
