"""The official deepgram-sdk as an independent judge of FakeDeepgram and of DeepgramSTT's handshake.

Every message the fake sends parses as the SDK's own listen v1 response type (Results,
UtteranceEnd, SpeechStarted, Metadata) with no field the SDK does not know, the SDK's own client
reads all of them, and the query DeepgramSTT sends is the one the SDK's ``listen.v1.connect``
builds for the same options. Everything runs on loopback: the SDK talks to the fake.
"""

from __future__ import annotations

import typing
from typing import Any

import pydantic
import pytest
from deepgram import AsyncDeepgramClient
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from test_deepgram import Caller, run_stt, silence, tone, wait_for

from voicegraph.nodes.stt.deepgram import DeepgramOptions
from voicegraph.testing.fake_deepgram import FakeDeepgram

# the SDK's client is built on websockets' legacy API, which warns on import; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:websockets.*is deprecated:DeprecationWarning")

SDK_TYPES: dict[str, type[pydantic.BaseModel]] = {
    "Results": ListenV1Results,
    "UtteranceEnd": ListenV1UtteranceEnd,
    "SpeechStarted": ListenV1SpeechStarted,
    "Metadata": ListenV1Metadata,
}


def sdk_client(fake: FakeDeepgram) -> AsyncDeepgramClient:
    """The SDK's async client, pointed at the fake instead of Deepgram."""
    env = DeepgramClientEnvironment(
        base=fake.http_url, production=fake.url, agent=fake.url, agent_rest=fake.http_url
    )
    return AsyncDeepgramClient(api_key=fake.api_key, environment=env)


async def sdk_session(fake: FakeDeepgram) -> list[Any]:
    """One SDK session covering every message kind: an utterance ended by silence
    (SpeechStarted, interim and final Results, UtteranceEnd), one cut by ``Finalize``, an empty
    ``Finalize``, then ``CloseStream`` (Metadata). Returns what the SDK's client yielded."""
    options = {"interim_results": "true", "vad_events": "true", "utterance_end_ms": 1000}
    got: list[Any] = []
    async with sdk_client(fake).listen.v1.connect(
        model="nova-3", encoding="mulaw", sample_rate=8000, endpointing=300, **options
    ) as sock:
        for frame in tone(1.0) + silence(2.0) + tone(0.6):
            await sock.send_media(frame)
        await sock.send_finalize()
        await sock.send_finalize()  # nothing buffered: an empty flush result
        await sock.send_close_stream()
        async for message in sock:
            got.append(message)
    return got


def unknown_fields(model: pydantic.BaseModel, where: str = "") -> list[str]:
    """Fields of ``model`` (and the models inside it) that the SDK type does not declare."""
    found = [f"{where}{name}" for name in model.model_extra or {}]
    for name, value in model:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, pydantic.BaseModel):
                found += unknown_fields(item, f"{where}{name}.")
    return found


def judged(fake: FakeDeepgram, kind: str) -> list[pydantic.BaseModel]:
    """The fake's ``kind`` messages validated by the SDK's type (pydantic raises on a missing
    or mistyped field)."""
    return [SDK_TYPES[kind].model_validate(m) for m in fake.sent if m["type"] == kind]


# ------------------------------------------------------------ the fake's messages


@pytest.mark.anyio
async def test_the_sdk_client_reads_every_message_the_fake_sends_as_its_own_type() -> None:
    async with FakeDeepgram(["hello there friend", "and more"]) as fake:
        got = await sdk_session(fake)
    # the SDK skips (with a warning) a message it cannot parse: one per sent message means none
    assert len(got) == len(fake.sent)
    for message, sent in zip(got, fake.sent, strict=True):
        assert isinstance(message, SDK_TYPES[sent["type"]])
    assert {m["type"] for m in fake.sent} == set(SDK_TYPES)


@pytest.mark.anyio
async def test_results_are_sdk_results_with_no_field_the_sdk_does_not_know() -> None:
    async with FakeDeepgram(["hello there friend", "and more"]) as fake:
        await sdk_session(fake)
    results = typing.cast(list[ListenV1Results], judged(fake, "Results"))
    assert [unknown_fields(r) for r in results] == [[] for _ in results]
    flags = {(r.is_final, r.speech_final, r.from_finalize) for r in results}
    # interim, endpointed final, and the finalize flushes (with words and empty) all judged
    assert flags == {(False, False, False), (True, True, False), (True, False, True)}
    assert results[-1].channel.alternatives[0].transcript == ""


@pytest.mark.anyio
async def test_speech_started_and_utterance_end_are_the_sdk_types() -> None:
    async with FakeDeepgram(["hello there friend", "and more"]) as fake:
        await sdk_session(fake)
    started = typing.cast(list[ListenV1SpeechStarted], judged(fake, "SpeechStarted"))
    ends = typing.cast(list[ListenV1UtteranceEnd], judged(fake, "UtteranceEnd"))
    assert len(started) == 2 and len(ends) == 1
    assert [unknown_fields(m) for m in [*started, *ends]] == [[], [], []]
    assert ends[0].last_word_end == pytest.approx(1.0)


@pytest.mark.anyio
async def test_metadata_is_the_sdk_metadata_type() -> None:
    async with FakeDeepgram(["hello there friend", "and more"]) as fake:
        await sdk_session(fake)
    [metadata] = typing.cast(list[ListenV1Metadata], judged(fake, "Metadata"))
    assert unknown_fields(metadata) == []
    assert metadata.duration == pytest.approx(3.6) and metadata.channels == 1


# ------------------------------------------------------------ DeepgramSTT's query


def sdk_options(o: DeepgramOptions) -> dict[str, Any]:
    """``o`` in the SDK's own terms: its ``listen.v1.connect`` keywords (``connect`` raises
    ``TypeError`` on any other), flags as the ``"true"``/``"false"`` its types declare,
    numbers as numbers."""

    def flag(v: bool) -> str:
        return "true" if v else "false"

    kw: dict[str, Any] = {
        "model": o.model,
        "language": o.language,
        "encoding": "mulaw" if o.encoding == "mulaw" else "linear16",
        "sample_rate": o.sample_rate,
        "channels": 1,
        "interim_results": flag(o.interim_results),
        "endpointing": "false" if o.endpointing is None else o.endpointing,
        "vad_events": flag(o.vad_events),
        "smart_format": flag(o.smart_format),
        "punctuate": flag(o.punctuate),
    }
    if o.utterance_end_ms is not None:
        kw["utterance_end_ms"] = o.utterance_end_ms
    kw.update(o.extra)
    return kw


OPTIONS = [
    DeepgramOptions(),
    DeepgramOptions(
        encoding="pcm16",
        sample_rate=16000,
        language="es",
        model="nova-2-phonecall",
        interim_results=False,
        utterance_end_ms=None,
        endpointing=None,
        vad_events=False,
        smart_format=False,
        extra=(("keyterm", "voicegraph"),),
    ),
]


async def our_query(fake: FakeDeepgram, options: DeepgramOptions) -> dict[str, list[str]]:
    """The query DeepgramSTT sent on its handshake to ``fake``, as the fake read it."""
    opts = {f: getattr(options, f) for f in options.__struct_fields__ if f != "base_url"}

    async def script(c: Caller) -> None:
        await wait_for(lambda: len(fake.queries) == 1)  # the handshake is all we need

    _, _, result = await run_stt(fake, script, **opts)
    assert result.reason == "completed", result.error  # type: ignore[attr-defined]
    return fake.queries[-1]


@pytest.mark.anyio
@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "pcm16-spanish-no-interims"])
async def test_our_client_sends_the_query_the_sdk_builds_for_the_same_options(
    options: DeepgramOptions,
) -> None:
    async with FakeDeepgram() as fake:
        ours = await our_query(fake, options)
        async with sdk_client(fake).listen.v1.connect(**sdk_options(options)) as sock:
            await sock.send_close_stream()
            async for _ in sock:
                pass
        sdk = fake.queries[-1]
    assert ours == sdk


def test_our_encodings_and_flags_are_values_the_sdk_types_declare() -> None:
    from deepgram.types.listen_v1encoding import ListenV1Encoding
    from deepgram.types.listen_v1interim_results import ListenV1InterimResults

    encodings = typing.get_args(typing.get_args(ListenV1Encoding)[0])
    flags = typing.get_args(typing.get_args(ListenV1InterimResults)[0])
    for options in OPTIONS:
        kw = sdk_options(options)
        assert kw["encoding"] in encodings
        for name in ("interim_results", "vad_events", "smart_format", "punctuate"):
            assert kw[name] in flags
