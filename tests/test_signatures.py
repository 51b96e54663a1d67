"""Carrier signatures: the published vectors (protocol files) and tampering."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from voicegraph.server.signatures import (
    compute_plivo_v3_signature,
    compute_twilio_signature,
    twilio_body_sha256,
    validate_plivo_v3_signature,
    validate_twilio_json_signature,
    validate_twilio_signature,
)

B_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
B_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
P1 = {
    "CallUUID": "e4e6b1d4-0000-4000-8000-000000000001",
    "From": "14155550100",
    "To": "14155550199",
    "Direction": "inbound",
    "CallStatus": "ringing",
}
NONCE = "12345678901234567890"


def test_twilio_docs_example_vector() -> None:
    params = {
        "Digits": "1234",
        "To": "+18005551212",
        "From": "+14158675310",
        "Caller": "+14158675310",
        "CallSid": "CA1234567890ABCDE",
    }
    url = "https://example.com/myapp.php?foo=1&bar=2"
    assert compute_twilio_signature(url, params, "12345") == "L/OH5YylLD5NRKLltdqwSvS0BnU="


def test_twilio_sdk_vector() -> None:
    assert compute_twilio_signature(B_URL, B_PARAMS, "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ("https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    ],
)
def test_twilio_validator_accepts_port_variants(url: str, signature: str) -> None:
    assert validate_twilio_signature(url, B_PARAMS, signature, "12345")


def test_twilio_repeated_keys_are_deduplicated_and_sorted() -> None:
    params = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert compute_twilio_signature(B_URL, params, "12345") == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_twilio_json_body_vector() -> None:
    body = b'{"property": "value", "boolean": true}'
    url = B_URL + "&bodySHA256=" + twilio_body_sha256(body)
    assert validate_twilio_json_signature(url, body, "a9nBmqA0ju/hNViExpshrM61xv4=", "12345")
    assert not validate_twilio_json_signature(
        url, body + b" ", "a9nBmqA0ju/hNViExpshrM61xv4=", "12345"
    )


def test_twilio_websocket_handshake_vectors_with_and_without_trailing_slash() -> None:
    assert (
        compute_twilio_signature("wss://example.com/media", None, "12345")
        == "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
    )
    assert validate_twilio_signature(
        "wss://example.com/media", None, "T+WBXwUXC0/CyoZ1DA+p9ilZORs=", "12345"
    )


def test_twilio_realistic_webhook_vector() -> None:
    params = {
        "AccountSid": "AC00000000000000000000000000000000",
        "ApiVersion": "2010-04-01",
        "CallSid": "CA11111111111111111111111111111111",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "+14155550100",
        "To": "+14155550199",
    }
    sig = compute_twilio_signature(
        "https://agent.example.com/voice/inbound", params, "test_auth_token_0123456789abcdef"
    )
    assert sig == "81RL9K0yeDhoMi5A/MpwcQVqEJU="


def test_twilio_tampered_parameter_fails() -> None:
    tampered = {**B_PARAMS, "To": "+18005551213"}
    assert not validate_twilio_signature(B_URL, tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "12345")


def test_twilio_wrong_token_fails() -> None:
    assert not validate_twilio_signature(B_URL, B_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "54321")


def test_twilio_missing_signature_fails() -> None:
    assert not validate_twilio_signature(B_URL, B_PARAMS, None, "12345")


@pytest.mark.parametrize(
    ("method", "url", "params", "signature"),
    [
        ("POST", "https://example.com/answer", P1, "/1XMTNHuUItdUZTPObQSnn2YQtcHTGM52jaRd66SXjU="),
        (
            "POST",
            "https://example.com/answer?tenant=acme&b=2",
            {
                "CallUUID": "e4e6b1d4-0000-4000-8000-000000000001",
                "From": "14155550100",
                "To": "14155550199",
            },
            "xbPmLM1LSKlDIV8p/lt8cijFXErUANeaK9Y0cQAqGpM=",
        ),
        (
            "GET",
            "https://example.com/answer?tenant=acme",
            {"CallUUID": "abc", "From": "14155550100"},
            "DtC3VUpqwyqwzvtTQeDcVeliebj8qlhHBIbG4Z56go8=",
        ),
        ("GET", "wss://example.com/stream", None, "ErNcawsy2am/i5KaFy5zMxiy1fyW/hIedTV3Q0s8XRw="),
        (
            "POST",
            "https://example.com/answer",
            None,
            "k2DmGg3hj3mlksbzKIiasjQkkJKUtUnMuS5a1YTtDBA=",
        ),
    ],
)
def test_plivo_v3_vectors(
    method: str, url: str, params: dict[str, str] | None, signature: str
) -> None:
    assert compute_plivo_v3_signature(method, url, params, NONCE, "MY_AUTH_TOKEN") == signature


def test_plivo_header_with_several_signatures_validates_if_any_matches() -> None:
    header = "bogus=,/1XMTNHuUItdUZTPObQSnn2YQtcHTGM52jaRd66SXjU="
    assert validate_plivo_v3_signature(
        "POST", "https://example.com/answer", P1, NONCE, header, "MY_AUTH_TOKEN"
    )


def test_plivo_tampered_parameter_fails() -> None:
    tampered = {**P1, "To": "14155550198"}
    sig = "/1XMTNHuUItdUZTPObQSnn2YQtcHTGM52jaRd66SXjU="
    assert not validate_plivo_v3_signature(
        "POST", "https://example.com/answer", tampered, NONCE, sig, "MY_AUTH_TOKEN"
    )


def test_plivo_other_nonce_fails() -> None:
    sig = "/1XMTNHuUItdUZTPObQSnn2YQtcHTGM52jaRd66SXjU="
    assert not validate_plivo_v3_signature(
        "POST", "https://example.com/answer", P1, "1", sig, "MY_AUTH_TOKEN"
    )


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=6),
    st.text(min_size=1, max_size=16),
)
def test_twilio_signature_round_trips_for_any_parameters(
    params: dict[str, str], token: str
) -> None:
    sig = compute_twilio_signature("https://agent.example.com/call", params, token)
    assert validate_twilio_signature("https://agent.example.com/call", params, sig, token)
