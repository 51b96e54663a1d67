"""The browser softphone's protocol, nodes and server routes, with a Python client on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import msgspec
import numpy as np
import pytest
from e2ekit import interface, speech
from transport_kit import Collect, reader_graph, run_call, writer_graph

from voicegraph import AgentRuntime
from voicegraph.frames import (
    DTMF,
    AgentText,
    AudioFrame,
    Clear,
    Cleared,
    EndOfTurn,
    Hangup,
    MarkAck,
    PlaybackMark,
    PlayedPosition,
    StreamStarted,
    TimelineMark,
)
from voicegraph.graph import Graph
from voicegraph.node import Actor, Out
from voicegraph.testing.memsocket import socket_pair
from voicegraph.testing.server import echo_graph, serve_runtime
from voicegraph.transports.errors import CarrierFormatError, ProtocolError
from voicegraph.transports.softphone import (
    TOKEN_ENV,
    SoftphoneConfigError,
    SoftphoneOut,
    SoftphoneRefused,
    SoftphoneStart,
    accept_softphone,
    enable_softphone,
    softphone_nodes,
)
from voicegraph.wsio import SocketClosed, connect_websocket

TOKEN = "softphone-test-token-0123"
FRAME = np.arange(320, dtype=np.int16).tobytes()  # 20 ms at 16 kHz


def start_msg(token: str = TOKEN, rate: int = 16000) -> str:
    return json.dumps({"type": "start", "sampleRate": rate, "encoding": "pcm16", "token": token})


# ------------------------------------------------------------------ accept


@pytest.mark.anyio
async def test_accept_returns_the_call_id_and_pcm16_16k() -> None:
    server, page = socket_pair()
    await page.send(start_msg())
    start = await accept_softphone(server, "softphone-1", TOKEN)
    assert (start.call_id, start.media_format.encoding, start.media_format.sample_rate) == (
        "softphone-1",
        "pcm16",
        16000,
    )


@pytest.mark.anyio
async def test_accept_refuses_a_wrong_token() -> None:
    server, page = socket_pair()
    await page.send(start_msg(token="not-the-token-at-all"))
    with pytest.raises(SoftphoneRefused):
        await accept_softphone(server, "c", TOKEN)


@pytest.mark.anyio
async def test_accept_refuses_other_sample_rates_and_says_to_resample() -> None:
    server, page = socket_pair()
    await page.send(start_msg(rate=48000))
    with pytest.raises(ProtocolError, match="resample in the page"):
        await accept_softphone(server, "c", TOKEN)


@pytest.mark.anyio
async def test_accept_refuses_audio_before_start() -> None:
    server, page = socket_pair()
    await page.send(FRAME)
    with pytest.raises(ProtocolError, match="before 'start'"):
        await accept_softphone(server, "c", TOKEN)


@pytest.mark.anyio
async def test_accept_gives_up_when_no_start_arrives() -> None:
    from voicegraph.transports.softphone import SoftphoneOptions

    server, _page = socket_pair()
    with pytest.raises(ProtocolError, match="no 'start'"):
        await accept_softphone(server, "c", TOKEN, SoftphoneOptions(start_timeout=0.05))


# ------------------------------------------------------------------ SoftphoneIn


async def read(messages: list[str | bytes]) -> tuple[Collect, Any]:
    server, page = socket_pair(capacity=64)
    carrier_in, _ = softphone_nodes(server, SoftphoneStart(call_id="c1"))
    sink = Collect([p.name for p in carrier_in.outputs])
    for msg in messages:
        await page.send(msg)
    await page.close()
    await run_call(reader_graph(carrier_in, sink))
    return sink, carrier_in


@pytest.mark.anyio
async def test_binary_frames_become_pcm16_16k_audio_with_sample_clock_timestamps() -> None:
    sink, _ = await read([FRAME, FRAME])
    frames = sink.frames("audio")
    assert [(f.data, f.encoding, f.sample_rate) for f in frames] == [(FRAME, "pcm16", 16000)] * 2
    assert [f.timestamp for f in frames] == [0.0, 0.02]


@pytest.mark.anyio
async def test_stream_started_comes_first_on_events() -> None:
    sink, _ = await read([])
    assert isinstance(sink.frames("events")[0], StreamStarted)


@pytest.mark.anyio
async def test_played_marks_are_acknowledged_and_unplayed_ones_only_counted() -> None:
    sink, node = await read(
        [
            json.dumps({"type": "mark", "name": "vg0.1"}),
            json.dumps({"type": "mark", "name": "vg0.2", "played": False}),
            json.dumps({"type": "cleared"}),
        ]
    )
    events = sink.frames("events")[1:]
    assert events == [MarkAck(name="vg0.1"), Cleared()]
    assert (node.played_marks, node.unplayed_marks) == (1, 1)


@pytest.mark.anyio
async def test_dtmf_and_hangup_go_to_control() -> None:
    sink, _ = await read(
        [json.dumps({"type": "dtmf", "digit": "5"}), json.dumps({"type": "hangup"})]
    )
    assert sink.frames("control") == [DTMF(digit="5"), Hangup(reason="caller hung up")]


@pytest.mark.anyio
async def test_a_closed_socket_is_a_hangup() -> None:
    sink, _ = await read([FRAME])
    assert sink.frames("control") == [Hangup(reason="caller hung up")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (FRAME[:3], "whole 2-byte samples"),
        (b"", "empty"),
        ('{"type": "dtmf", "digit": "x"}', "invalid DTMF"),
        ('{"type": "teleport"}', "unknown type"),
        ("not json", "malformed JSON"),
        (start_msg(), "second 'start'"),
        ("[" + " " * 5000 + "]", "exceeds"),
    ],
)
async def test_bad_input_ends_the_call_with_a_protocol_error(message: Any, reason: str) -> None:
    server, page = socket_pair()
    carrier_in, _ = softphone_nodes(server, SoftphoneStart(call_id="c1"))
    await page.send(message)
    result = await run_call(reader_graph(carrier_in, Collect(["audio", "control", "events"])))
    assert result.reason == "error"
    assert isinstance(result.error.exc, ProtocolError)  # type: ignore[union-attr]
    assert reason in result.error.exc.reason  # type: ignore[union-attr]
    assert page.close_code == 1007


# ------------------------------------------------------------------ SoftphoneOut


async def write(frames: list[Any]) -> tuple[list[str | bytes], Any]:
    server, page = socket_pair(capacity=256)
    _, carrier_out = softphone_nodes(server, SoftphoneStart(call_id="c1"))
    result = await run_call(writer_graph(carrier_out, [*frames, Hangup(reason="done")]))
    got: list[str | bytes] = []
    with pytest.raises(SocketClosed):
        while True:
            got.append(await page.receive())
    return got, result


@pytest.mark.anyio
async def test_audio_goes_out_as_binary_and_marks_and_clears_as_json() -> None:
    audio = AudioFrame(data=FRAME, encoding="pcm16", sample_rate=16000)
    got, _ = await write([audio, PlaybackMark(name="vg0.1"), Clear()])
    assert got == [FRAME, '{"type":"mark","name":"vg0.1"}', '{"type":"clear"}']


@pytest.mark.anyio
async def test_large_audio_is_split_into_whole_sample_frames() -> None:
    data = bytes(40_000)
    got, _ = await write([AudioFrame(data=data, encoding="pcm16", sample_rate=16000)])
    assert [len(x) for x in got] == [16_000, 16_000, 8_000]


@pytest.mark.anyio
async def test_audio_in_another_format_fails_the_call_naming_both_formats() -> None:
    _, result = await write([AudioFrame(data=b"\xff" * 160, encoding="mulaw", sample_rate=8000)])
    assert isinstance(result.error.exc, CarrierFormatError)  # type: ignore[union-attr]
    assert "mulaw/8000" in str(result.error.exc)  # type: ignore[union-attr]


class Timeline(Actor):
    """Publishes one turn's timeline marks, then hangs up."""

    outputs = (Out("out"),)

    async def run(self) -> None:
        for i, stage in enumerate(("caller_speech_end", "stt_final", "first_audio_sent")):
            self.publish(TimelineMark(turn=1, stage=stage, time=10.0 + i * 0.25))
        self.publish(TimelineMark(turn=1, stage="first_mark_ack", time=11.0))
        await anyio.sleep(0.05)
        await self.send("out", Hangup())


@pytest.mark.anyio
async def test_each_acknowledged_turn_sends_its_latency_to_the_page() -> None:
    server, page = socket_pair()
    _, carrier_out = softphone_nodes(server, SoftphoneStart(call_id="c1"))
    g = Graph()
    g.add("timeline", Timeline())
    g.add("carrier_out", carrier_out)
    g.connect("timeline", "carrier_out")
    await run_call(g)
    msg = json.loads(await page.receive())
    assert msg == {
        "type": "event",
        "event": {
            "kind": "latency",
            "turn": 1,
            "ms": {
                "stt_final": 250.0,
                "first_audio_sent": 500.0,
                "voice_to_voice": 500.0,
                "first_mark_ack": 1000.0,
            },
        },
    }


@pytest.mark.anyio
async def test_display_events_beyond_the_bound_drop_the_oldest_and_are_counted() -> None:
    from voicegraph.transports.softphone import SoftphoneOptions, TranscriptTap

    server, _page = socket_pair()
    out = SoftphoneOut(server, SoftphoneStart(call_id="c1"), SoftphoneOptions(max_events=2))
    tap = TranscriptTap(out)
    for text in ("one", "two", "three"):
        tap.process("in", EndOfTurn(text=text))
    assert [e.event.text for e in out._events] == ["two", "three"]  # type: ignore[union-attr]
    assert out.dropped_events == 1


# ------------------------------------------------------------------ served


class Script:
    """A scripted agent: books a table when it hears "table"."""

    def __init__(self) -> None:
        self.turns: list[str] = []

    async def respond(self, turn: Any) -> AsyncIterator[str]:
        self.turns.append(turn.text)
        yield "Booked a table for two." if "table" in turn.text else "Sorry?"


@asynccontextmanager
async def mounted(iface: Any = None, **kw: Any) -> AsyncIterator[tuple[str, Any, list[Any]]]:
    seen: list[Any] = []
    iface = iface or interface("twilio", graph=echo_graph)
    runtime = AgentRuntime(
        [iface], public_url="http://127.0.0.1", on_call=lambda *a: seen.append(a), **kw
    )
    phone = enable_softphone(runtime, iface, token=TOKEN)
    async with serve_runtime(runtime) as base:
        yield base, phone, seen


def ws_url(base: str) -> str:
    return "ws" + base[4:] + "/softphone/ws"


@pytest.mark.anyio
async def test_the_page_is_served_with_its_scripts_under_the_mount_path() -> None:
    async with mounted() as (base, _, _), httpx.AsyncClient() as client:
        page = await client.get(base + "/softphone")
        js = await client.get(base + "/softphone/softphone.js")
        worklet = await client.get(base + "/softphone/worklet.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/softphone/softphone.js">' in page.text
    assert "content-security-policy" in page.headers
    assert js.status_code == 200 and "startCall" in js.text
    assert worklet.status_code == 200 and "registerProcessor" in worklet.text


@pytest.mark.anyio
async def test_other_routes_still_reach_the_runtime() -> None:
    async with mounted() as (base, _, _), httpx.AsyncClient() as client:
        resp = await client.post(base + "/call/incoming", data={"To": "+1"})
    assert resp.status_code == 403  # the webhook's signature check, not the softphone


@pytest.mark.anyio
async def test_the_page_accepts_only_get() -> None:
    async with mounted() as (base, _, _), httpx.AsyncClient() as client:
        resp = await client.post(base + "/softphone")
    assert resp.status_code == 405


@pytest.mark.anyio
async def test_a_call_echoes_audio_through_the_interface_graph() -> None:
    async with mounted() as (base, _, seen), connect_websocket(ws_url(base)) as ws:
        await ws.send(start_msg())
        started = json.loads(await ws.receive())
        await ws.send(FRAME)
        echoed = await ws.receive()
        await ws.send(json.dumps({"type": "hangup"}))
    assert started["type"] == "started" and started["callId"].startswith("softphone-")
    assert echoed == FRAME
    call, session, _ = seen[0]
    assert (session.carrier, session.call_id) == ("softphone", started["callId"])


@pytest.mark.anyio
async def test_marks_sent_to_the_page_come_back_as_mark_acks() -> None:
    async with mounted() as (base, _, seen), connect_websocket(ws_url(base)) as ws:
        await ws.send(start_msg())
        await ws.receive()  # started
        await ws.send(json.dumps({"type": "dtmf", "digit": "D"}))  # EchoNode sends mark dtmf-D
        mark = json.loads(await ws.receive())
        call = seen[0][0]
        with anyio.fail_after(5):
            waiter = call.wait_event(lambda e: isinstance(e, MarkAck), timeout=5)
            await ws.send(json.dumps({"type": "mark", "name": mark["name"]}))
            ack = await waiter
    assert mark == {"type": "mark", "name": "dtmf-D"}
    assert ack == MarkAck(name="dtmf-D")


@pytest.mark.anyio
async def test_a_wrong_token_closes_the_socket_as_unauthorised() -> None:
    async with mounted() as (base, phone, _), connect_websocket(ws_url(base)) as ws:
        await ws.send(start_msg(token="a-guessed-token-0000"))
        with pytest.raises(SocketClosed) as err:
            await ws.receive()
    assert err.value.code == 1008
    assert phone.calls == 0


@pytest.mark.anyio
async def test_a_cross_origin_handshake_is_refused() -> None:
    async with mounted() as (base, _, _):
        with pytest.raises(SocketClosed) as err:
            async with connect_websocket(ws_url(base), {"Origin": "https://evil.example"}):
                pass
    assert err.value.code == 403


@pytest.mark.anyio
async def test_a_same_origin_handshake_is_accepted() -> None:
    async with mounted() as (base, _, _):
        host = base.split("://")[1]
        async with connect_websocket(ws_url(base), {"Origin": f"http://{host}"}) as ws:
            await ws.send(start_msg())
            assert json.loads(await ws.receive())["type"] == "started"


@pytest.mark.anyio
async def test_calls_beyond_max_calls_are_refused() -> None:
    async with (
        mounted(max_calls=1) as (base, _, _),
        connect_websocket(ws_url(base)) as ws,
    ):
        await ws.send(start_msg())
        await ws.receive()
        with pytest.raises(SocketClosed) as err:
            async with connect_websocket(ws_url(base)):
                pass
    assert err.value.code == 503


@pytest.mark.anyio
async def test_a_cascading_call_answers_the_spoken_request_and_shows_it() -> None:
    from voicegraph.nodes import (
        EspeakTTS,
        EspeakTTSOptions,
        PocketsphinxSTT,
        PocketsphinxSTTOptions as SttOpts,
    )

    agent = Script()
    iface = interface(
        "twilio",
        stt=lambda: PocketsphinxSTT(SttOpts(phrases=("i would like to book a table for two",))),
        tts=lambda: EspeakTTS(EspeakTTSOptions(encoding="pcm16", sample_rate=16000)),
        agent=agent,
    )
    request = speech("I would like to book a table for two").tobytes()
    silence = bytes(640)
    events: list[dict[str, Any]] = []
    audio = 0
    latency_shown = anyio.Event()
    async with mounted(iface) as (base, _, seen), connect_websocket(ws_url(base)) as ws:
        await ws.send(start_msg())
        await ws.receive()  # started

        async def page() -> None:
            nonlocal audio
            while True:
                msg = await ws.receive()
                if isinstance(msg, bytes):
                    audio += len(msg)
                elif (parsed := json.loads(msg))["type"] == "mark":
                    # a page that plays instantly: every mark is reached at once
                    await ws.send(json.dumps({"type": "mark", "name": parsed["name"]}))
                else:
                    events.append(parsed)
                    if parsed["event"]["kind"] == "latency":
                        latency_shown.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(page)
            for chunk in [silence] * 25 + [
                request[i : i + 640] for i in range(0, len(request), 640)
            ]:
                await ws.send(chunk)
                await anyio.sleep(0.02)
            call = seen[0][0]
            heard = call.wait_event(lambda e: isinstance(e, PlayedPosition) and e.complete, 20)
            async with anyio.create_task_group() as talk:

                async def trailing_silence() -> None:
                    for _ in range(150):
                        await ws.send(silence)
                        await anyio.sleep(0.02)

                talk.start_soon(trailing_silence)
                played = await heard
                talk.cancel_scope.cancel()
            with anyio.move_on_after(5):
                await latency_shown.wait()
            tg.cancel_scope.cancel()
    assert any("table" in t for t in agent.turns)
    assert isinstance(played, PlayedPosition) and played.played == played.sent > 0
    assert audio > 0
    shown = [(e["event"].get("role"), e["event"].get("text")) for e in events]
    assert ("caller", "i would like to book a table for two") in shown
    assert ("agent", "Booked a table for two.") in shown
    latency = next(e["event"] for e in events if e["event"]["kind"] == "latency")
    assert latency["ms"]["first_mark_ack"] > 0


# ------------------------------------------------------------------ configuration


def test_page_url_carries_the_token_in_the_fragment_and_repr_hides_it() -> None:
    iface = interface("twilio", graph=echo_graph)
    phone = enable_softphone(
        AgentRuntime([iface], public_url="http://127.0.0.1"), iface, token=TOKEN
    )
    assert (
        phone.page_url("http://127.0.0.1:8000/") == f"http://127.0.0.1:8000/softphone#token={TOKEN}"
    )
    assert TOKEN not in repr(phone)


def test_the_token_comes_from_the_environment_when_not_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment-123")
    iface = interface("twilio", graph=echo_graph)
    phone = enable_softphone(AgentRuntime([iface], public_url="http://127.0.0.1"), iface)
    assert phone.page_url("").endswith("#token=from-the-environment-123")


def test_without_a_token_a_random_one_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    iface = interface("twilio", graph=echo_graph)
    urls = {
        enable_softphone(AgentRuntime([iface], public_url="http://127.0.0.1"), iface).page_url("")
        for _ in range(2)
    }
    assert len(urls) == 2 and all(len(u.partition("#token=")[2]) >= 16 for u in urls)


def test_a_managed_interface_is_refused_with_advice() -> None:
    iface = interface("twilio", pipeline="managed", agent=Script())
    with pytest.raises(SoftphoneConfigError, match="pipeline='cascading' or 'realtime'"):
        enable_softphone(AgentRuntime([iface], public_url="http://127.0.0.1"), iface, token=TOKEN)


@pytest.mark.parametrize("token", ["short", "has spaces in it here", "x" * 200])
def test_a_malformed_token_is_refused_without_echoing_it(token: str) -> None:
    iface = interface("twilio", graph=echo_graph)
    with pytest.raises(SoftphoneConfigError) as err:
        enable_softphone(AgentRuntime([iface], public_url="http://127.0.0.1"), iface, token=token)
    assert token not in str(err.value)


@pytest.mark.parametrize("path", ["softphone", "/soft phone", "/", "/softphone/"])
def test_a_malformed_path_is_refused(path: str) -> None:
    iface = interface("twilio", graph=echo_graph)
    with pytest.raises(SoftphoneConfigError, match="absolute URL path"):
        enable_softphone(
            AgentRuntime([iface], public_url="http://127.0.0.1"), iface, path=path, token=TOKEN
        )


def test_a_path_the_runtime_already_serves_is_refused() -> None:
    iface = interface("twilio", graph=echo_graph)
    with pytest.raises(SoftphoneConfigError, match="already a webhook or stream path"):
        enable_softphone(
            AgentRuntime([iface], public_url="http://127.0.0.1"),
            iface,
            path="/call/stream",
            token=TOKEN,
        )


def test_display_events_encode_as_the_documented_json() -> None:
    from voicegraph.transports.softphone import messages as m

    ev = m.EventOut(event=m.TranscriptEvent(role="agent", text="Hi", final=False, utterance=2))
    assert json.loads(msgspec.json.encode(ev)) == {
        "type": "event",
        "event": {
            "kind": "transcript",
            "role": "agent",
            "text": "Hi",
            "final": False,
            "utterance": 2,
        },
    }


def test_the_transcript_tap_reads_caller_turns_and_agent_text() -> None:
    from voicegraph.transports.softphone import TranscriptTap

    server, _ = socket_pair()
    out = SoftphoneOut(server, SoftphoneStart(call_id="c1"))
    tap = TranscriptTap(out)
    tap.process("in", EndOfTurn(text="hello"))
    tap.process("in", AgentText(text="Hi there", utterance_id=1, last=True))
    assert [(e.event.role, e.event.text, e.event.final) for e in out._events] == [  # type: ignore[union-attr]
        ("caller", "hello", True),
        ("agent", "Hi there", True),
    ]


def test_a_realtime_graph_gets_the_transcript_tap_on_the_model_events() -> None:
    from voicegraph.nodes.realtime import OpenAIRealtime
    from voicegraph.presets import realtime
    from voicegraph.transports.softphone import SOFTPHONE_FORMAT, tap_transcript

    server, _ = socket_pair()
    carrier_in, carrier_out = softphone_nodes(server, SoftphoneStart(call_id="c1"))
    g = realtime(
        carrier_in=carrier_in,
        carrier_out=carrier_out,
        carrier_format=SOFTPHONE_FORMAT,
        model=OpenAIRealtime(api_key="k"),
    )
    tap_transcript(g, carrier_out)
    g.validate()
    assert [(e.src, e.src_port) for e in g.edges if e.dst == "softphone_transcript"] == [
        ("model", "events")
    ]
