"""Twilio wire messages (Media Streams and ConversationRelay): decoding at the boundary."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from voicegraph.testing.memsocket import socket_pair
from voicegraph.transports._wire import decode
from voicegraph.transports.errors import ProtocolError
from voicegraph.transports.twilio import messages as m
from voicegraph.transports.twilio.media import TWILIO_FORMAT, TwilioMediaIn, TwilioStart
from voicegraph.transports.twilio.relay import RelayIn, RelaySession

MEDIA = msgspec.json.Decoder(m.MediaInbound)
RELAY = msgspec.json.Decoder(m.RelayInbound)
LIMIT = 64 * 1024

# the protocol file's examples, verbatim
CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
START = (
    '{"event":"start","sequenceNumber":"1","streamSid":"MZ0123456789abcdef0123456789abcdef",'
    '"start":{"streamSid":"MZ0123456789abcdef0123456789abcdef","accountSid":"AC00000000000000000000000000000000",'
    '"callSid":"CA11111111111111111111111111111111","tracks":["inbound"],'
    '"customParameters":{"tenant":"acme","callToken":"opaque-123"},'
    '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}'
)
MEDIA_MSG = (
    '{"event":"media","sequenceNumber":"2","streamSid":"MZ0123",'
    '"media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"/////w=="}}'
)
DTMF = '{"event":"dtmf","sequenceNumber":"40","streamSid":"MZ0123","dtmf":{"track":"inbound_track","digit":"1"}}'
MARK = '{"event":"mark","sequenceNumber":"41","streamSid":"MZ0123","mark":{"name":"utt-7"}}'
STOP = '{"event":"stop","sequenceNumber":"42","streamSid":"MZ0123","stop":{"accountSid":"AC000","callSid":"CA111"}}'


def test_media_streams_examples_decode_into_their_structs() -> None:
    kinds = [
        type(decode(MEDIA, raw, LIMIT, "event"))
        for raw in (CONNECTED, START, MEDIA_MSG, DTMF, MARK, STOP)
    ]
    assert kinds == [m.Connected, m.Start, m.Media, m.Dtmf, m.Mark, m.Stop]


def test_start_keeps_custom_parameters_and_media_format() -> None:
    start = decode(MEDIA, START, LIMIT, "event")
    assert start.start.customParameters == {"tenant": "acme", "callToken": "opaque-123"}
    assert (start.start.mediaFormat.encoding, start.start.mediaFormat.sampleRate) == (
        "audio/x-mulaw",
        8000,
    )


def test_media_payload_is_base64_decoded_at_the_boundary() -> None:
    assert decode(MEDIA, MEDIA_MSG, LIMIT, "event").media.payload == b"\xff\xff\xff\xff"


def test_counters_are_accepted_as_numbers_as_well_as_strings() -> None:
    raw = '{"event":"media","sequenceNumber":2,"media":{"chunk":1,"timestamp":20,"payload":"AA=="}}'
    assert decode(MEDIA, raw, LIMIT, "event").media.timestamp == 20


def test_invalid_base64_is_a_protocol_error() -> None:
    raw = '{"event":"media","media":{"payload":"not base64!"}}'
    with pytest.raises(ProtocolError, match="invalid media.*base64"):
        decode(MEDIA, raw, LIMIT, "event")


def test_an_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="exceeds the 100-byte limit"):
        decode(MEDIA, "{" * 101, 100, "event")


def test_an_unknown_event_is_named_in_the_error() -> None:
    with pytest.raises(ProtocolError, match="unknown event 'start2'"):
        decode(MEDIA, '{"event":"start2"}', LIMIT, "event")


def test_outbound_messages_match_the_documented_shapes() -> None:
    enc = msgspec.json.encode
    assert json.loads(
        enc(m.OutMedia(streamSid="MZ1", media=m.OutMediaBody(b"\xff\xff\xff\xff")))
    ) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": "/////w=="},
    }
    assert json.loads(enc(m.Mark(streamSid="MZ1", mark=m.MarkBody("utt-7")))) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "utt-7"},
    }
    assert json.loads(enc(m.Clear(streamSid="MZ1"))) == {"event": "clear", "streamSid": "MZ1"}


# ------------------------------------------------------------------- ConversationRelay


def test_relay_setup_reads_the_from_field() -> None:
    raw = '{"type":"setup","sessionId":"VX1","callSid":"CA1","from":"+18005550100","to":"+1800","customParameters":{"a":"b"}}'
    setup = decode(RELAY, raw, LIMIT, "type")
    assert (setup.from_, setup.customParameters) == ("+18005550100", {"a": "b"})


def test_relay_interrupt_duration_may_be_fractional() -> None:
    raw = '{"type":"interrupt","utteranceUntilInterrupt":"Our hours","durationUntilInterruptMs":1460.5}'
    assert decode(RELAY, raw, LIMIT, "type").durationUntilInterruptMs == 1460.5


def test_relay_text_always_states_last_and_omits_unset_options() -> None:
    assert json.loads(msgspec.json.encode(m.RelayText(token="Hello ", last=False))) == {
        "type": "text",
        "token": "Hello ",
        "last": False,
    }


def test_relay_end_carries_handoff_data_as_a_string() -> None:
    raw = msgspec.json.encode(m.RelayEnd(handoffData='{"reason":"x"}'))
    assert json.loads(raw) == {"type": "end", "handoffData": '{"reason":"x"}'}


# ------------------------------------------------------------------------------ fuzzing

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


def outcome(node, raw: str | bytes) -> str:
    """ "rejected", or "accepted" after checking every frame fits the port it leaves by."""
    try:
        out = list(node.translate(raw))
    except ProtocolError as exc:
        assert exc.reason
        return "rejected"
    ports = {p.name: p.types for p in node.outputs}
    assert all(isinstance(frame, ports[port]) for port, frame in out)
    return "accepted"


def _media_in() -> TwilioMediaIn:
    start = TwilioStart("MZ1", "CA1", "AC1", {}, TWILIO_FORMAT)
    return TwilioMediaIn(socket_pair()[0], start)


def _relay_in() -> RelayIn:
    return RelayIn(socket_pair()[0], RelaySession("VX1", "CA1", "AC1", "", "", "", {}))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_input_is_accepted_or_rejected_with_a_reason(raw: bytes | str) -> None:
    for node in (_media_in(), _relay_in()):
        assert outcome(node, raw) in ("accepted", "rejected")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", "x"]),
    st.dictionaries(
        st.sampled_from(["media", "dtmf", "mark", "stop", "start", "streamSid"]),
        json_values,
        max_size=4,
    ),
)
def test_media_stream_messages_with_any_fields_are_accepted_or_rejected(
    event: str, fields: dict
) -> None:
    raw = json.dumps({"event": event, **fields})
    result = outcome(_media_in(), raw)
    if event in ("connected", "clear", "x"):
        assert result == "rejected"


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["setup", "prompt", "dtmf", "interrupt", "error", "speaker-events"]),
    st.dictionaries(
        st.sampled_from(
            [
                "voicePrompt",
                "last",
                "digit",
                "utteranceUntilInterrupt",
                "durationUntilInterruptMs",
                "description",
            ]
        ),
        json_values,
        max_size=4,
    ),
)
def test_relay_messages_with_any_fields_are_accepted_or_rejected(kind: str, fields: dict) -> None:
    raw = json.dumps({"type": kind, **fields})
    result = outcome(_relay_in(), raw)
    if kind in ("setup", "speaker-events"):
        # a second setup is an error; unknown (debug) types are skipped
        assert result == ("rejected" if kind == "setup" else "accepted")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_any_valid_mulaw_payload_arrives_unchanged(payload: bytes) -> None:
    import base64

    raw = json.dumps(
        {
            "event": "media",
            "media": {"payload": base64.b64encode(payload).decode(), "timestamp": "40"},
        }
    )
    ((port, frame),) = _media_in().translate(raw)
    assert (port, frame.data, frame.timestamp) == ("audio", payload, 0.04)
