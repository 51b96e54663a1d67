"""Plivo Audio Streams wire messages: decoding at the boundary, tolerant where the docs disagree."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from voicegraph.frames import AudioFormat, AudioFrame
from voicegraph.testing.memsocket import socket_pair
from voicegraph.transports._wire import decode
from voicegraph.transports.errors import ProtocolError
from voicegraph.transports.plivo import messages as m
from voicegraph.transports.plivo.stream import (
    PlivoStart,
    PlivoStreamIn,
    content_type,
    parse_extra_headers,
)

INBOUND = msgspec.json.Decoder(m.Inbound)
LIMIT = 64 * 1024
SID = "87654321-4321-4321-4321-cba987654321"


def test_documented_examples_decode_into_their_structs() -> None:
    raws = [
        '{"event":"start","sequenceNumber":1,"start":{"callId":"c","streamId":"s","accountId":"MA",'
        '"tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},'
        '"extra_headers":"tenant=acme,callRef=abc123"}',
        '{"event":"media","sequenceNumber":42,"streamId":"s","media":{"track":"inbound",'
        '"timestamp":"1705312200000","chunk":41,"payload":"/////w=="},"extra_headers":"x=1"}',
        '{"event":"dtmf","sequenceNumber":50,"streamId":"s","dtmf":{"track":"inbound","digit":"5","timestamp":"1705312250000"}}',
        '{"event":"playedStream","sequenceNumber":75,"streamId":"s","name":"utt-7"}',
        '{"event":"clearedAudio","sequenceNumber":80,"streamId":"s"}',
    ]
    kinds = [type(decode(INBOUND, r, LIMIT, "event")) for r in raws]
    assert kinds == [m.Start, m.Media, m.Dtmf, m.PlayedStream, m.ClearedAudio]


def test_the_older_played_spelling_is_a_played_stream() -> None:
    msg = decode(INBOUND, '{"event":"played","name":"utt-1"}', LIMIT, "event")
    assert isinstance(msg, m.PlayedStream) and msg.name == "utt-1"


def test_a_stop_event_is_accepted_though_plivo_does_not_document_one() -> None:
    assert isinstance(decode(INBOUND, '{"event":"stop","streamId":"s"}', LIMIT, "event"), m.Stop)


def test_extra_headers_may_arrive_as_an_object() -> None:
    raw = '{"event":"start","start":{"callId":"c","streamId":"s","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000}},"extra_headers":{"a":"1"}}'
    assert parse_extra_headers(decode(INBOUND, raw, LIMIT, "event").extra_headers) == {"a": "1"}


def test_an_extra_header_without_equals_sign_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not key=value"):
        parse_extra_headers("a=1,broken")


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9]{0,8}", fullmatch=True),
        max_size=6,
    ),
    st.sampled_from([",", ";"]),
)
def test_extra_headers_parse_with_either_separator(headers: dict[str, str], sep: str) -> None:
    text = sep.join(f"{k}={v}" for k, v in headers.items())
    assert parse_extra_headers(text) == headers


def test_play_audio_checkpoint_and_clear_match_the_documented_shapes() -> None:
    enc = msgspec.json.encode
    play = m.PlayAudio(
        media=m.PlayAudioBody(contentType="audio/x-mulaw", sampleRate=8000, payload=b"\xff" * 4),
        streamId=SID,
    )
    assert json.loads(enc(play)) == {
        "event": "playAudio",
        "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "/////w=="},
        "streamId": SID,
    }
    assert json.loads(enc(m.CheckpointOut(streamId=SID, name="utt-7"))) == {
        "event": "checkpoint",
        "streamId": SID,
        "name": "utt-7",
    }
    assert json.loads(enc(m.ClearAudio(streamId=SID))) == {"event": "clearAudio", "streamId": SID}


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        (AudioFormat("pcm16", 16000), "audio/x-l16;rate=16000"),
        (AudioFormat("pcm16", 8000), "audio/x-l16;rate=8000"),
        (AudioFormat("mulaw", 8000), "audio/x-mulaw;rate=8000"),
    ],
)
def test_content_type_names_each_plivo_format(fmt: AudioFormat, text: str) -> None:
    assert content_type(fmt) == text


def test_content_type_refuses_a_format_plivo_does_not_carry() -> None:
    with pytest.raises(ValueError, match="pick one of those"):
        content_type(AudioFormat("mulaw", 16000))


# ------------------------------------------------------------------------------ fuzzing


def stream_in(fmt: AudioFormat = AudioFormat("pcm16", 16000)) -> PlivoStreamIn:
    return PlivoStreamIn(socket_pair()[0], PlivoStart("c", SID, "MA", fmt, {}))


def outcome(node: PlivoStreamIn, raw: str | bytes) -> str:
    """ "rejected", or "accepted" after checking every frame fits the port it leaves by."""
    try:
        out = list(node.translate(raw))
    except ProtocolError as exc:
        assert exc.reason
        return "rejected"
    ports = {p.name: p.types for p in node.outputs}
    assert all(isinstance(frame, ports[port]) for port, frame in out)
    return "accepted"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_input_is_accepted_or_rejected_with_a_reason(raw: bytes | str) -> None:
    assert outcome(stream_in(), raw) in ("accepted", "rejected")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["start", "media", "dtmf", "playedStream", "clearedAudio", "playAudio"]),
    st.dictionaries(
        st.sampled_from(["media", "dtmf", "name", "start", "streamId", "sequenceNumber"]),
        json_values,
        max_size=4,
    ),
)
def test_messages_with_any_fields_are_accepted_or_rejected(event: str, fields: dict) -> None:
    result = outcome(stream_in(), json.dumps({"event": event, **fields}))
    if event in ("start", "playAudio"):
        assert result == "rejected"  # a second start, or our own message echoed back


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=600))
def test_pcm_payloads_arrive_unchanged_when_whole_samples_and_are_refused_otherwise(
    payload: bytes,
) -> None:
    raw = json.dumps(
        {
            "event": "media",
            "media": {"payload": base64.b64encode(payload).decode(), "timestamp": "1"},
        }
    )
    if len(payload) % 2:
        assert outcome(stream_in(), raw) == "rejected"
    else:
        ((port, frame),) = stream_in().translate(raw)
        assert port == "audio" and isinstance(frame, AudioFrame) and frame.data == payload
