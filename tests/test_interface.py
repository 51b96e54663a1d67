"""CallInterface validation, credentials and per-call providers; stream tokens."""

from __future__ import annotations

import pytest

from voicegraph.frames import Frame
from voicegraph.interface import (
    CallInterface,
    IncompatibleOptionsError,
    InvalidOptionError,
    MissingCredentialsError,
)
from voicegraph.node import Actor
from voicegraph.server import AgentRuntime, AgentRuntimeError
from voicegraph.server.stream_token import StreamTokenError, StreamTokens

SID = "AC" + "f" * 32
SECRET = "very-secret-token-value"
TWILIO = {"account_sid": SID, "auth_token": SECRET}
PLIVO = {"auth_id": "MAXXXXXXXXXXXXXXXXXX", "auth_token": SECRET}


class FakeSTT(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.state: list[Frame] = []


def twilio(**kw: object) -> CallInterface:
    args: dict[str, object] = {"stt": FakeSTT, "tts": FakeSTT, **TWILIO, **kw}
    return CallInterface("twilio", "+15551234567", **args)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_carrier_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_valid_cascading_interface_builds() -> None:
    assert twilio().pipeline == "cascading"


def test_managed_on_plivo_is_incompatible() -> None:
    with pytest.raises(IncompatibleOptionsError, match="telephony='twilio'"):
        CallInterface("plivo", "+15551234567", pipeline="managed", **PLIVO)


def test_cascading_without_tts_says_what_is_missing() -> None:
    with pytest.raises(IncompatibleOptionsError, match="needs tts="):
        CallInterface("twilio", "+15551234567", stt=FakeSTT, **TWILIO)


def test_realtime_without_realtime_provider_is_incompatible() -> None:
    with pytest.raises(IncompatibleOptionsError, match="needs realtime="):
        CallInterface("twilio", "+15551234567", pipeline="realtime", **TWILIO)


def test_managed_with_stt_node_is_incompatible() -> None:
    with pytest.raises(IncompatibleOptionsError, match="remove stt="):
        CallInterface("twilio", "+15551234567", pipeline="managed", stt=FakeSTT, **TWILIO)


def test_managed_provider_names_outside_managed_are_incompatible() -> None:
    with pytest.raises(IncompatibleOptionsError, match="only to pipeline='managed'"):
        twilio(managed_tts_provider="Google")


def test_custom_graph_waives_provider_requirement() -> None:
    iface = CallInterface("twilio", "+15551234567", graph=lambda s: None, **TWILIO)  # type: ignore[arg-type,return-value]
    assert iface.new_stt() is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pipeline", "hybrid"),
        ("interruptible", "sometimes"),
        ("interrupt_sensitivity", "extreme"),
        ("language", "english"),
        ("max_call_duration_seconds", 0),
        ("webhook_path", "call/incoming"),
    ],
)
def test_unknown_or_malformed_option_is_rejected_naming_it(option: str, value: object) -> None:
    with pytest.raises(InvalidOptionError, match=option):
        twilio(**{option: value})


@pytest.mark.parametrize(
    "number", ["5551234567", "+0551234567", "+1 555 123 4567", "+1234567890123456"]
)
def test_malformed_phone_number_is_rejected(number: str) -> None:
    with pytest.raises(InvalidOptionError, match="E.164"):
        CallInterface("twilio", number, stt=FakeSTT, tts=FakeSTT, **TWILIO)


def test_unknown_telephony_is_rejected() -> None:
    with pytest.raises(InvalidOptionError, match="'twilio', 'plivo'"):
        CallInterface("vonage", "+15551234567", **TWILIO)


def test_unknown_managed_provider_lists_the_known_ones() -> None:
    with pytest.raises(InvalidOptionError, match="ElevenLabs"):
        CallInterface(
            "twilio", "+15551234567", pipeline="managed", managed_tts_provider="Polly", **TWILIO
        )


def test_managed_provider_names_are_normalised() -> None:
    iface = CallInterface(
        "twilio", "+15551234567", pipeline="managed", managed_stt_provider="deepgram", **TWILIO
    )
    assert iface.managed_stt_provider == "Deepgram"


def test_missing_twilio_token_names_the_env_var() -> None:
    with pytest.raises(MissingCredentialsError, match="TWILIO_AUTH_TOKEN"):
        CallInterface("twilio", "+15551234567", stt=FakeSTT, tts=FakeSTT, account_sid=SID)


def test_missing_plivo_auth_id_names_the_env_var() -> None:
    with pytest.raises(MissingCredentialsError, match="PLIVO_AUTH_ID"):
        CallInterface("plivo", "+15551234567", stt=FakeSTT, tts=FakeSTT, auth_token=SECRET)


def test_credentials_fall_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLIVO_AUTH_ID", "MAXXXXXXXXXXXXXXXXXX")
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", SECRET)
    iface = CallInterface("plivo", "+15551234567", stt=FakeSTT, tts=FakeSTT)
    assert iface.account_id == "MAXXXXXXXXXXXXXXXXXX" and iface.auth_token == SECRET


def test_secret_never_appears_in_repr_or_errors() -> None:
    iface = twilio()
    assert SECRET not in repr(iface) and SECRET not in str(vars(iface))
    with pytest.raises(InvalidOptionError) as info:
        twilio(account_sid="nope")
    assert SECRET not in str(info.value)


def test_factory_provider_gives_a_new_node_per_call() -> None:
    iface = twilio()
    a, b = iface.new_stt(), iface.new_stt()
    assert isinstance(a, FakeSTT) and a is not b


def test_template_provider_is_copied_with_fresh_counters() -> None:
    template = FakeSTT()
    template.stats.frames_in = 5
    copy = twilio(stt=template).new_stt()
    assert copy is not template and copy.stats.frames_in == 0


def test_template_with_clone_method_uses_it() -> None:
    class Clonable(FakeSTT):
        def clone(self) -> Clonable:
            made = Clonable()
            made.state.append(Frame())
            return made

    assert twilio(stt=Clonable()).new_stt().state == [Frame()]


def test_runtime_refuses_two_interfaces_on_one_number() -> None:
    with pytest.raises(AgentRuntimeError, match="each phone number"):
        AgentRuntime([twilio(), twilio()], public_url="https://agent.example.com")


def test_runtime_requires_public_url_or_trusted_forwarded_headers() -> None:
    with pytest.raises(AgentRuntimeError, match="public_url="):
        AgentRuntime([twilio()])


def test_runtime_refuses_twilio_and_plivo_on_one_path() -> None:
    plivo = CallInterface("plivo", "+15557654321", stt=FakeSTT, tts=FakeSTT, **PLIVO)
    with pytest.raises(AgentRuntimeError, match="Twilio and Plivo"):
        AgentRuntime([twilio(), plivo], public_url="https://agent.example.com")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_stream_token_is_accepted_once_for_its_call() -> None:
    tokens = StreamTokens(b"k" * 32)
    token = tokens.mint("CA1", "line")
    tokens.check(token, "CA1", "line")
    with pytest.raises(StreamTokenError, match="already used"):
        tokens.check(token, "CA1", "line")


def test_stream_token_for_other_call_or_line_is_refused() -> None:
    tokens = StreamTokens(b"k" * 32)
    token = tokens.mint("CA1", "line")
    with pytest.raises(StreamTokenError, match="not valid"):
        tokens.check(token, "CA2", "line")
    with pytest.raises(StreamTokenError, match="not valid"):
        tokens.check(token, "CA1", "other")


def test_expired_stream_token_is_refused() -> None:
    clock = Clock()
    tokens = StreamTokens(b"k" * 32, ttl=10, clock=clock)
    token = tokens.mint("CA1")
    clock.now += 11
    with pytest.raises(StreamTokenError, match="expired"):
        tokens.check(token, "CA1")


def test_token_from_another_secret_is_refused() -> None:
    token = StreamTokens(b"a" * 32).mint("CA1")
    with pytest.raises(StreamTokenError, match="not valid"):
        StreamTokens(b"b" * 32).check(token, "CA1")


def test_stream_token_is_plivo_extra_header_safe() -> None:
    token = StreamTokens(b"k" * 32).mint("e4e6b1d4-0000-4000-8000-000000000001")
    assert token.isalnum() and len(token) <= 512


def test_used_token_memory_is_bounded() -> None:
    tokens = StreamTokens(b"k" * 32, max_used=3)
    for n in range(5):
        tokens.check(tokens.mint(f"CA{n}"), f"CA{n}")
    assert tokens.evicted == 2
