"""Carrier edge nodes over an in-memory socket: what they read, what they write, how they end."""

from __future__ import annotations

import base64
import json
import logging

import anyio
import pytest
from transport_kit import Collect, reader_graph, run_call, writer_graph

from voicegraph import (
    DTMF,
    AgentText,
    AudioFormat,
    AudioFrame,
    Call,
    Clear,
    Cleared,
    ErrorEvent,
    Graph,
    Hangup,
    MarkAck,
    PlaybackMark,
    StreamStarted,
)
from voicegraph.testing.memsocket import socket_pair
from voicegraph.transports import (
    CarrierFormatError,
    EndSession,
    Play,
    PlivoStreamOptions,
    ProtocolError,
    RelayInterrupt,
    SendDigits,
    SetLanguage,
    TwilioMediaOptions,
    accept_conversation_relay,
    accept_plivo_stream,
    accept_twilio_media,
    plivo_stream_nodes,
    relay_nodes,
    twilio_media_nodes,
)
from voicegraph.wsio import SocketClosed

SID = "MZ0123456789abcdef0123456789abcdef"
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "streamSid": SID,
    "start": {
        "streamSid": SID,
        "accountSid": "AC" + "0" * 32,
        "callSid": "CA" + "1" * 32,
        "tracks": ["inbound"],
        "customParameters": {"tenant": "acme", "callToken": "opaque-123"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def media(seq: int, payload: bytes, ts_ms: int) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": SID,
            "media": {
                "track": "inbound",
                "chunk": str(seq),
                "timestamp": str(ts_ms),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


async def send_all(sock, *messages) -> None:
    for msg in messages:
        await sock.send(msg if isinstance(msg, str) else json.dumps(msg))


async def drain(sock) -> list[dict]:
    out = []
    while True:
        try:
            raw = await sock.receive()
        except SocketClosed:
            return out
        assert isinstance(raw, str), "carriers want text frames"
        out.append(json.loads(raw))


async def twilio_started(**opts):
    server, client = socket_pair()
    await send_all(client, CONNECTED, START)
    start = await accept_twilio_media(server, TwilioMediaOptions(**opts))
    return server, client, start


# ---------------------------------------------------------------- Twilio Media Streams


@pytest.mark.anyio
async def test_twilio_accept_returns_identifiers_and_custom_parameters() -> None:
    _, _, start = await twilio_started()
    assert start.stream_sid == SID
    assert start.call_sid == "CA" + "1" * 32
    assert start.custom_parameters == {"tenant": "acme", "callToken": "opaque-123"}
    assert start.media_format == AudioFormat("mulaw", 8000)


@pytest.mark.anyio
async def test_twilio_accept_tolerates_a_missing_connected_message() -> None:
    server, client = socket_pair()
    await send_all(client, START)
    assert (await accept_twilio_media(server)).stream_sid == SID


@pytest.mark.anyio
async def test_twilio_accept_rejects_media_before_start() -> None:
    server, client = socket_pair()
    await send_all(client, CONNECTED, media(2, b"\xff" * 160, 0))
    with pytest.raises(ProtocolError, match="'media' received before 'start'"):
        await accept_twilio_media(server)


@pytest.mark.anyio
async def test_twilio_accept_gives_up_when_start_never_comes() -> None:
    server, client = socket_pair()
    await send_all(client, CONNECTED)
    with pytest.raises(ProtocolError, match="no 'start' within"):
        await accept_twilio_media(server, TwilioMediaOptions(start_timeout=0.05))


@pytest.mark.anyio
async def test_twilio_accept_rejects_a_format_other_than_mulaw_8k() -> None:
    server, client = socket_pair()
    bad = json.loads(json.dumps(START))
    bad["start"]["mediaFormat"]["sampleRate"] = 16000
    await send_all(client, bad)
    with pytest.raises(ProtocolError, match="unsupported media format"):
        await accept_twilio_media(server)


@pytest.mark.anyio
async def test_twilio_in_emits_stream_audio_dtmf_marks_then_hangup_on_stop() -> None:
    server, client, start = await twilio_started()
    cin, _ = twilio_media_nodes(server, start)
    sink = Collect(["audio", "control", "events"])
    await send_all(
        client,
        media(2, b"\x01" * 160, 0),
        media(3, b"\x02" * 160, 20),
        {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "5"}},
        {"event": "mark", "streamSid": SID, "mark": {"name": "utt-1"}},
        {"event": "stop", "streamSid": SID, "stop": {"accountSid": "AC", "callSid": "CA"}},
    )
    result = await run_call(reader_graph(cin, sink))
    assert result.reason == "completed"
    audio = sink.frames("audio")
    assert [(f.data[:1], f.timestamp, f.encoding, f.sample_rate) for f in audio] == [
        (b"\x01", 0.0, "mulaw", 8000),
        (b"\x02", 0.02, "mulaw", 8000),
    ]
    assert all(f.capture_time > 0 for f in audio)
    assert sink.frames("control") == [DTMF(digit="5"), Hangup(reason="caller hung up")]
    started, ack = sink.frames("events")
    assert isinstance(started, StreamStarted) and started.stream_id == SID
    assert dict(started.params)["tenant"] == "acme"
    assert ack == MarkAck(name="utt-1")


@pytest.mark.anyio
async def test_twilio_in_emits_hangup_when_the_socket_closes_without_stop() -> None:
    server, client, start = await twilio_started()
    cin, _ = twilio_media_nodes(server, start)
    sink = Collect(["audio", "control", "events"])
    await client.close()
    await run_call(reader_graph(cin, sink))
    assert sink.frames("control") == [Hangup(reason="socket closed")]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{not json", "malformed JSON"),
        ('{"event":"media"}', "invalid media"),
        ('{"event":"media","media":{"payload":"@@@"}}', "invalid media"),
        (media(2, b"", 0), "payload is empty"),
        (media(2, b"\xff" * 9000, 0), "exceeds the 8000-byte limit"),
        ('{"event":"dtmf","dtmf":{"digit":"55"}}', "invalid DTMF digit"),
        (json.dumps(START), "unexpected 'start' after 'start'"),
        ("x" * 70_000, "exceeds the 65536-byte limit"),
    ],
)
@pytest.mark.anyio
async def test_twilio_in_closes_the_stream_on_bad_input(message: str, reason: str) -> None:
    server, client, start = await twilio_started()
    cin, _ = twilio_media_nodes(server, start)
    sink = Collect(["audio", "control", "events"])
    await send_all(client, media(2, b"\xff" * 160, 0), message)
    result = await run_call(reader_graph(cin, sink))
    assert result.reason == "error"
    assert isinstance(result.error.exc, ProtocolError)
    assert reason in result.error.exc.reason
    assert client.close_code == 1007
    assert len(sink.frames("audio")) + cin.discarded == 1


@pytest.mark.anyio
async def test_twilio_in_logs_counts_and_skips_unknown_events_after_start() -> None:
    server, client, start = await twilio_started()
    cin, _ = twilio_media_nodes(server, start)
    sink = Collect(["audio", "control", "events"])
    surprise = '{"event":"surprise","streamSid":"MZ1","surprise":{"x":1}}'
    await send_all(client, surprise, media(2, b"\xff" * 160, 0), surprise)
    await client.close()
    logger = logging.getLogger(f"voicegraph.node.{type(cin).__name__}")
    recorder, level = Recorder(), logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.WARNING)  # whatever other tests set on "voicegraph"
    try:
        result = await run_call(reader_graph(cin, sink))
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
    assert result.reason == "completed" and client.close_code != 1007
    assert cin.unknown_events == 2
    assert len(sink.frames("audio")) == 1
    assert sum("unknown event 'surprise'" in m for m in recorder.messages) == 1


class Recorder(logging.Handler):
    """Keeps the messages of the records it handles (whatever the logging set-up)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.anyio
async def test_twilio_in_keeps_reading_the_socket_while_the_graph_is_stuck() -> None:
    server, client = socket_pair(capacity=1)
    await send_all(client, START)
    start = await accept_twilio_media(server)
    cin, _ = twilio_media_nodes(server, start, TwilioMediaOptions(backlog=4))
    gate = anyio.Event()
    sink = Collect(["audio", "control", "events"], gate=gate)
    graph = reader_graph(cin, sink)

    async def caller() -> None:
        # capacity=1: every send waits until the reader took the previous message
        for i in range(50):
            await client.send(media(i + 2, bytes([i]) * 160, i * 20))
        gate.set()
        await client.close()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await Call(graph).run()
    assert cin.dropped_audio > 0
    audio = sink.frames("audio")
    assert len(audio) + cin.dropped_audio == 50
    assert audio[-1].data[:1] == bytes([49])


@pytest.mark.anyio
async def test_twilio_out_sends_media_marks_and_clear_then_closes_on_hangup() -> None:
    server, client, start = await twilio_started()
    _, cout = twilio_media_nodes(server, start)
    frames = [
        AudioFrame(data=b"\xff" * 160, encoding="mulaw", sample_rate=8000),
        PlaybackMark(name="m1"),
        Clear(),
        Hangup(reason="bye"),
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_call, writer_graph(cout, frames))
        sent = await drain(client)
    assert sent == [
        {
            "event": "media",
            "streamSid": SID,
            "media": {"payload": base64.b64encode(b"\xff" * 160).decode()},
        },
        {"event": "mark", "streamSid": SID, "mark": {"name": "m1"}},
        {"event": "clear", "streamSid": SID},
    ]
    assert client.close_code == 1000


@pytest.mark.anyio
async def test_twilio_out_splits_audio_larger_than_max_payload() -> None:
    server, client, start = await twilio_started(max_payload=100)
    _, cout = twilio_media_nodes(server, start, TwilioMediaOptions(max_payload=100))
    data = bytes(range(250))
    frames = [AudioFrame(data=data, encoding="mulaw", sample_rate=8000), Hangup()]
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_call, writer_graph(cout, frames))
        sent = await drain(client)
    chunks = [base64.b64decode(m["media"]["payload"]) for m in sent]
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert b"".join(chunks) == data


@pytest.mark.anyio
async def test_twilio_out_refuses_audio_in_another_format() -> None:
    server, _, start = await twilio_started()
    _, cout = twilio_media_nodes(server, start)
    pcm = AudioFrame(data=bytes(320), encoding="pcm16", sample_rate=8000)
    result = await run_call(writer_graph(cout, [pcm]))
    assert isinstance(result.error.exc, CarrierFormatError)
    assert "mulaw/8000" in str(result.error.exc)


@pytest.mark.anyio
async def test_twilio_echo_graph_returns_caller_audio_to_the_caller() -> None:
    server, client, start = await twilio_started()
    cin, cout = twilio_media_nodes(server, start)
    g = Graph("echo")
    g.add("carrier_in", cin)
    g.add("carrier_out", cout)
    g.connect("carrier_in.audio", "carrier_out.in", policy="drop_oldest")
    g.connect("carrier_in.control", "carrier_out.in", types=(Hangup,), policy="drop_oldest")
    await send_all(client, media(2, b"\x10" * 160, 0), media(3, b"\x20" * 160, 20))
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_call, g)
        echoed = [await client.receive() for _ in range(2)]
        await send_all(client, {"event": "stop", "streamSid": SID, "stop": {}})
    payloads = [base64.b64decode(json.loads(e)["media"]["payload"]) for e in echoed]
    assert payloads == [b"\x10" * 160, b"\x20" * 160]


# ------------------------------------------------------------------ ConversationRelay

SETUP = {
    "type": "setup",
    "sessionId": "VX" + "0" * 32,
    "accountSid": "AC" + "0" * 32,
    "parentCallSid": "",
    "callSid": "CA" + "0" * 32,
    "from": "+18005550100",
    "to": "+18005550101",
    "forwardedFrom": "",
    "callType": "PSTN",
    "callerName": "",
    "direction": "inbound",
    "callStatus": "RINGING",
    "customParameters": {"tenant": "acme"},
}


async def relay_started():
    server, client = socket_pair()
    await send_all(client, SETUP)
    return server, client, await accept_conversation_relay(server)


@pytest.mark.anyio
async def test_relay_accept_reads_setup() -> None:
    _, _, session = await relay_started()
    assert session.from_number == "+18005550100"
    assert session.custom_parameters == {"tenant": "acme"}
    assert session.session_id == "VX" + "0" * 32


@pytest.mark.anyio
async def test_relay_accept_rejects_a_prompt_before_setup() -> None:
    server, client = socket_pair()
    await send_all(client, {"type": "prompt", "voicePrompt": "hi", "last": True})
    with pytest.raises(ProtocolError, match="'prompt' received before 'setup'"):
        await accept_conversation_relay(server)


@pytest.mark.anyio
async def test_relay_in_joins_prompt_fragments_into_one_transcript_per_turn() -> None:
    server, client, session = await relay_started()
    cin, _ = relay_nodes(server, session)
    sink = Collect(["text", "control", "events"])
    await send_all(
        client,
        {"type": "prompt", "voicePrompt": "What are ", "lang": "en-US", "last": False},
        {"type": "prompt", "voicePrompt": "your hours?", "lang": "en-US", "last": True},
        {"type": "prompt", "voicePrompt": "Thanks", "lang": "en-US", "last": True},
    )
    await client.close()
    await run_call(reader_graph(cin, sink))
    assert [(t.text, t.is_final) for t in sink.frames("text")] == [
        ("What are your hours?", True),
        ("Thanks", True),
    ]


@pytest.mark.anyio
async def test_relay_in_turns_interrupt_into_an_interrupt_that_says_what_was_heard() -> None:
    server, client, session = await relay_started()
    cin, _ = relay_nodes(server, session)
    sink = Collect(["text", "control", "events"])
    await send_all(
        client,
        {
            "type": "interrupt",
            "utteranceUntilInterrupt": "Our opening hours are nine to",
            "durationUntilInterruptMs": 1460.5,
        },
        {"type": "dtmf", "digit": "1"},
    )
    await client.close()
    await run_call(reader_graph(cin, sink))
    interrupt, digit, hangup = sink.frames("control")
    assert isinstance(interrupt, RelayInterrupt)
    assert (interrupt.heard, interrupt.heard_ms) == ("Our opening hours are nine to", 1460.5)
    assert digit == DTMF(digit="1")
    assert hangup == Hangup(reason="caller hung up")


@pytest.mark.anyio
async def test_relay_in_reports_twilio_errors_without_ending_the_session() -> None:
    server, client, session = await relay_started()
    cin, _ = relay_nodes(server, session)
    sink = Collect(["text", "control", "events"])
    await send_all(
        client,
        {"type": "error", "description": "Invalid message received"},
        {"type": "prompt", "voicePrompt": "still here", "last": True},
    )
    await client.close()
    await run_call(reader_graph(cin, sink))
    events = sink.frames("events")
    assert isinstance(events[0], StreamStarted)
    assert isinstance(events[1], ErrorEvent) and events[1].message == "Invalid message received"
    assert [t.text for t in sink.frames("text")] == ["still here"]


@pytest.mark.anyio
async def test_relay_in_skips_unknown_message_types() -> None:
    server, client, session = await relay_started()
    cin, _ = relay_nodes(server, session)
    sink = Collect(["text", "control", "events"])
    await send_all(
        client,
        {"type": "tokens-played", "whatever": 1},
        {"type": "prompt", "voicePrompt": "hello", "last": True},
    )
    await client.close()
    result = await run_call(reader_graph(cin, sink))
    assert result.reason == "completed"
    assert cin.ignored == 1
    assert [t.text for t in sink.frames("text")] == ["hello"]


@pytest.mark.anyio
async def test_relay_in_closes_the_stream_on_a_malformed_known_message() -> None:
    server, client, session = await relay_started()
    cin, _ = relay_nodes(server, session)
    sink = Collect(["text", "control", "events"])
    await send_all(client, {"type": "prompt", "last": True})
    result = await run_call(reader_graph(cin, sink))
    assert isinstance(result.error.exc, ProtocolError)
    assert "voicePrompt" in result.error.exc.reason


@pytest.mark.anyio
async def test_relay_out_streams_tokens_commands_and_ends_the_session() -> None:
    server, client, session = await relay_started()
    _, cout = relay_nodes(server, session)
    frames = [
        AgentText(text="Hello ", utterance_id=1),
        AgentText(text="world!", utterance_id=1, last=True),
        Play(source="https://cdn.example.com/hold.mp3"),
        SendDigits(digits="9w1#"),
        SetLanguage(tts="es-ES"),
        AgentText(text="Bye.", utterance_id=2, last=True, end_call=True),
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_call, writer_graph(cout, frames))
        sent = [json.loads(await client.receive()) for _ in range(7)]
    assert sent == [
        {"type": "text", "token": "Hello ", "last": False},
        {"type": "text", "token": "world!", "last": True},
        {"type": "play", "source": "https://cdn.example.com/hold.mp3"},
        {"type": "sendDigits", "digits": "9w1#"},
        {"type": "language", "ttsLanguage": "es-ES"},
        {"type": "text", "token": "Bye.", "last": True},
        {"type": "end"},
    ]


@pytest.mark.anyio
async def test_relay_out_hands_off_with_end_session_data() -> None:
    server, client, session = await relay_started()
    _, cout = relay_nodes(server, session)
    frames = [EndSession(handoff_data='{"reason":"person"}'), Hangup(reason="handoff")]
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_call, writer_graph(cout, frames))
        sent = await drain(client)
    assert sent == [{"type": "end", "handoffData": '{"reason":"person"}'}]
    assert client.close_code == 1000


@pytest.mark.anyio
async def test_relay_out_refuses_digits_twilio_cannot_send() -> None:
    server, _, session = await relay_started()
    _, cout = relay_nodes(server, session)
    result = await run_call(writer_graph(cout, [SendDigits(digits="12x")]))
    assert isinstance(result.error.exc, ValueError)
    assert "use only 0-9" in str(result.error.exc)


# ---------------------------------------------------------------------- Plivo

PLIVO_SID = "87654321-4321-4321-4321-cba987654321"


def plivo_start(encoding: str = "audio/x-l16", rate: int = 16000, extra: str = "a=1,b=2") -> dict:
    return {
        "event": "start",
        "sequenceNumber": 1,
        "start": {
            "callId": "12345678-1234-1234-1234-123456789abc",
            "streamId": PLIVO_SID,
            "accountId": "MAXXXXXXXXXXXXXXXXXX",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": encoding, "sampleRate": rate},
        },
        "extra_headers": extra,
    }


def plivo_media(seq: int, payload: bytes, epoch_ms: int) -> dict:
    return {
        "event": "media",
        "sequenceNumber": seq,
        "streamId": PLIVO_SID,
        "media": {
            "track": "inbound",
            "timestamp": str(epoch_ms),
            "chunk": seq - 1,
            "payload": base64.b64encode(payload).decode(),
        },
        "extra_headers": "a=1,b=2",
    }


async def plivo_started(**kw):
    server, client = socket_pair()
    await send_all(client, plivo_start(**kw))
    return server, client, await accept_plivo_stream(server)


@pytest.mark.parametrize("extra", ["tenant=acme,callRef=abc123", "tenant=acme;callRef=abc123"])
@pytest.mark.anyio
async def test_plivo_accept_parses_extra_headers_with_either_separator(extra: str) -> None:
    _, _, start = await plivo_started(extra=extra)
    assert start.extra_headers == {"tenant": "acme", "callRef": "abc123"}
    assert start.stream_id == PLIVO_SID
    assert start.media_format == AudioFormat("pcm16", 16000)


@pytest.mark.parametrize(
    ("encoding", "rate", "fmt"),
    [
        ("audio/x-mulaw", 8000, AudioFormat("mulaw", 8000)),
        ("audio/x-l16", 8000, AudioFormat("pcm16", 8000)),
        ("audio/x-l16;rate=16000", 0, AudioFormat("pcm16", 16000)),
    ],
)
@pytest.mark.anyio
async def test_plivo_accept_reads_each_supported_format(
    encoding: str, rate: int, fmt: AudioFormat
) -> None:
    _, _, start = await plivo_started(encoding=encoding, rate=rate)
    assert start.media_format == fmt


@pytest.mark.anyio
async def test_plivo_accept_rejects_media_before_start() -> None:
    server, client = socket_pair()
    await send_all(client, plivo_media(2, bytes(640), 1705312200000))
    with pytest.raises(ProtocolError, match="'media' received before 'start'"):
        await accept_plivo_stream(server)


@pytest.mark.anyio
async def test_plivo_in_emits_audio_with_stream_relative_time_and_acks() -> None:
    server, client, start = await plivo_started()
    cin, _ = plivo_stream_nodes(server, start)
    sink = Collect(["audio", "control", "events"])
    await send_all(
        client,
        plivo_media(2, b"\x01\x00" * 320, 1705312200000),
        plivo_media(3, b"\x02\x00" * 320, 1705312200020),
        {
            "event": "dtmf",
            "sequenceNumber": 4,
            "streamId": PLIVO_SID,
            "dtmf": {"track": "inbound", "digit": "#", "timestamp": "1705312200030"},
        },
        {"event": "playedStream", "sequenceNumber": 5, "streamId": PLIVO_SID, "name": "utt-7"},
        {"event": "played", "sequenceNumber": 6, "streamId": PLIVO_SID, "name": "utt-8"},
        {"event": "clearedAudio", "sequenceNumber": 7, "streamId": PLIVO_SID},
    )
    await client.close()
    await run_call(reader_graph(cin, sink))
    audio = sink.frames("audio")
    assert [(f.timestamp, f.encoding, f.sample_rate, len(f.data)) for f in audio] == [
        (0.0, "pcm16", 16000, 640),
        (0.02, "pcm16", 16000, 640),
    ]
    assert sink.frames("control") == [
        DTMF(digit="#", timestamp=0.03),
        Hangup(reason="caller hung up"),
    ]
    assert sink.frames("events")[1:] == [MarkAck(name="utt-7"), MarkAck(name="utt-8"), Cleared()]


@pytest.mark.anyio
async def test_plivo_in_skips_unknown_events_but_not_malformed_known_ones() -> None:
    server, client, start = await plivo_started()
    cin, _ = plivo_stream_nodes(server, start)
    await send_all(
        client,
        '{"event":"speechStarted","streamId":"s"}',
        plivo_media(2, bytes(640), 1705312200000),
        '{"event":"dtmf"}',
    )
    result = await run_call(reader_graph(cin, Collect(["audio", "control", "events"])))
    assert cin.unknown_events == 1
    assert isinstance(result.error.exc, ProtocolError)
    assert client.close_code == 1007


@pytest.mark.anyio
async def test_plivo_in_closes_the_stream_on_odd_length_pcm() -> None:
    server, client, start = await plivo_started()
    cin, _ = plivo_stream_nodes(server, start)
    await send_all(client, plivo_media(2, bytes(641), 1705312200000))
    result = await run_call(reader_graph(cin, Collect(["audio", "control", "events"])))
    assert isinstance(result.error.exc, ProtocolError)
    assert "not whole 2-byte samples" in result.error.exc.reason


@pytest.mark.anyio
async def test_plivo_out_sends_play_audio_checkpoint_and_clear() -> None:
    server, client, start = await plivo_started()
    _, cout = plivo_stream_nodes(server, start, PlivoStreamOptions(max_payload=1001))
    pcm = bytes(range(256)) * 6
    frames = [
        AudioFrame(data=pcm, encoding="pcm16", sample_rate=16000),
        PlaybackMark(name="utt-1"),
        Clear(),
        Hangup(),
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_call, writer_graph(cout, frames))
        sent = await drain(client)
    plays = [m for m in sent if m["event"] == "playAudio"]
    assert {(p["media"]["contentType"], p["media"]["sampleRate"]) for p in plays} == {
        ("audio/x-l16", 16000)
    }
    chunks = [base64.b64decode(p["media"]["payload"]) for p in plays]
    assert [len(c) for c in chunks] == [1000, 536]
    assert b"".join(chunks) == pcm
    assert sent[len(plays) :] == [
        {"event": "checkpoint", "streamId": PLIVO_SID, "name": "utt-1"},
        {"event": "clearAudio", "streamId": PLIVO_SID},
    ]
