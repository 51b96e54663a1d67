"""The three presets: topology, and whole calls over loopback (server, simulated caller, fakes).

One call per mode and carrier runs on both backends (asyncio and Trio).

Each end-to-end call: a greeting, two turns with a tool call, and a barge-in in the middle of a
long agent sentence; checks what the caller heard, what was sent to cancel, the heard-only
history and the timeline's order.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from e2ekit import TOKEN, interface, served, speech
from enginekit import BOTH_BACKENDS

from voicegraph import Agent, AudioFormat, Graph, PlayedPosition, tool
from voicegraph.nodes.llm import OpenAIChatLLM
from voicegraph.nodes.realtime import OpenAIRealtime
from voicegraph.presets import cascading, realtime
from voicegraph.testing.fake_chat import ChatReply, FakeChatCompletions, ScriptedToolCall
from voicegraph.testing.fake_openai_realtime import FakeOpenAIRealtime, RealtimeReply
from voicegraph.testing.memsocket import socket_pair
from voicegraph.testing.plivo_caller import PlivoCaller
from voicegraph.testing.relay_caller import RelayCaller
from voicegraph.testing.twilio_caller import TwilioCaller

BOOKINGS: list[tuple[int, str]] = []


@tool
def book_table(party: int, time: str) -> dict[str, object]:
    """Book a table.

    Args:
        party: Number of guests.
        time: Time like 19:00.
    """
    BOOKINGS.append((party, time))
    return {"booked": True, "party": party, "time": time}


LONG = (
    "We have a lovely terrace, a quiet room at the back, and a long table by the window that "
    "seats up to twelve people, and tonight the chef is cooking a seven course tasting menu."
)


# ------------------------------------------------------------------ topology


def _carrier_nodes(carrier: str):  # type: ignore[no-untyped-def]
    from voicegraph.transports.plivo.stream import PlivoStart, plivo_stream_nodes
    from voicegraph.transports.twilio.media import TwilioStart, twilio_media_nodes

    sock, _ = socket_pair()
    if carrier == "twilio":
        start = TwilioStart(
            stream_sid="MZ1",
            call_sid="CA1",
            account_sid="AC1",
            custom_parameters={},
            media_format=AudioFormat("mulaw", 8000),
        )
        return twilio_media_nodes(sock, start), AudioFormat("mulaw", 8000)
    start = PlivoStart(
        call_id="c1",
        stream_id="s1",
        account_id="MA1",
        extra_headers={},
        media_format=AudioFormat("pcm16", 16000),
    )
    return plivo_stream_nodes(sock, start), AudioFormat("pcm16", 16000)


@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
def test_cascading_topology_avoids_needless_conversion(carrier: str) -> None:
    from voicegraph.nodes import (
        EspeakTTS,
        EspeakTTSOptions,
        PocketsphinxSTT,
        PocketsphinxSTTOptions,
    )

    (cin, cout), fmt = _carrier_nodes(carrier)
    g = cascading(
        carrier_in=cin,
        carrier_out=cout,
        carrier_format=fmt,
        stt=PocketsphinxSTT(PocketsphinxSTTOptions(sample_rate=16000)),
        tts=EspeakTTS(EspeakTTSOptions(encoding=fmt.encoding, sample_rate=fmt.sample_rate)),
        agent=Agent("x"),
    )
    g.validate()
    names = set(g.nodes)
    assert {
        "carrier_in",
        "vad",
        "stt",
        "turns",
        "barge_in",
        "agent",
        "tts",
        "playout",
        "carrier_out",
    } <= names
    # Twilio's µ-law is decoded once for the VAD and converted only on the edge to a 16 kHz STT;
    # Plivo's 16 kHz PCM needs no conversion at all.
    assert ("decode" in names) is (carrier == "twilio")
    assert ("carrier_in_to_stt_convert" in names) is (carrier == "twilio")
    order = [e.dst for e in g.edges if e.src == "barge_in"]
    assert order == ["playout", "tts", "agent"]  # clear first, then TTS, then the LLM
    assert g.to_mermaid().count("-.->") == 2  # feedback: playout -> agent, tts word times -> agent


@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
def test_realtime_topology_passes_twilio_audio_through(carrier: str) -> None:
    (cin, cout), fmt = _carrier_nodes(carrier)
    model_fmt = fmt if carrier == "twilio" else AudioFormat("pcm16", 24000)
    model = OpenAIRealtime(api_key="k", audio_format=model_fmt)
    g = realtime(carrier_in=cin, carrier_out=cout, carrier_format=fmt, model=model)
    g.validate()
    assert any(n.endswith("_convert") for n in g.nodes) is (carrier == "plivo")


def test_a_preset_can_be_taken_apart() -> None:
    from voicegraph.nodes import EspeakTTS, PocketsphinxSTT, PocketsphinxSTTOptions
    from voicegraph.nodes.audio import VAD, EnergyAnalyser

    (cin, cout), fmt = _carrier_nodes("plivo")
    g: Graph = cascading(
        carrier_in=cin,
        carrier_out=cout,
        carrier_format=fmt,
        stt=PocketsphinxSTT(),
        tts=EspeakTTS(),
        agent=Agent("x"),
    )
    g.replace("vad", VAD(EnergyAnalyser(), sensitivity="low"))
    g.replace("stt", PocketsphinxSTT(PocketsphinxSTTOptions(phrases=("yes", "no"))))
    g.validate()
    assert isinstance(g["vad"], VAD) and g["vad"].profile.min_speech == 0.30


def test_playout_options_reach_the_presets_playout() -> None:
    from voicegraph.nodes.audio.playout import PlayoutOptions

    (cin, cout), fmt = _carrier_nodes("twilio")
    model = OpenAIRealtime(api_key="k", audio_format=fmt)
    opts = PlayoutOptions(chunk=0.1, lead=0.2, mark_interval=0.1)
    g = realtime(
        carrier_in=cin, carrier_out=cout, carrier_format=fmt, model=model, playout_options=opts
    )
    assert g["playout"].options == opts


# ------------------------------------------------------------------ managed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", BOTH_BACKENDS)
async def test_managed_call_with_tool_and_interruption() -> None:
    BOOKINGS.clear()
    replies = [
        ChatReply(
            tool_calls=(ScriptedToolCall("book_table", '{"party": 2, "time": "19:00"}', "c1"),)
        ),
        "Booked a table for two at seven.",
        LONG,
        "Of course, four people then.",
    ]
    async with FakeChatCompletions(replies) as chat:
        agent = Agent(
            "You take bookings.",
            llm=OpenAIChatLLM(api_key=chat.api_key, base_url=chat.base_url),
            tools=[book_table],
        )
        iface = interface(
            "twilio",
            pipeline="managed",
            agent=agent,
            greeting="Hello, Luigi's.",
            interruptible="any",
        )
        async with served(iface) as (url, seen):
            async with RelayCaller(
                url, TOKEN, to=iface.phone_number, public_url="http://127.0.0.1"
            ).dial() as call:
                assert call.attributes["welcomeGreeting"] == "Hello, Luigi's."
                await call.say("a table for two at seven please")
                assert await call.wait_for_reply() == "Booked a table for two at seven."
                await call.say("tell me about the rooms")
                await call.wait_for_reply()
                await call.interrupt("We have a lovely terrace,", 1800)
                await call.say("make it four people")
                assert await call.wait_for_reply() == "Of course, four people then."
            node = seen[0][0].graph["agent"]
    assert BOOKINGS == [(2, "19:00")]
    history = node.llm_history()
    assert {"role": "assistant", "content": "We have a lovely terrace,"} in history
    assert not any(m.get("content") == LONG for m in history)
    tool_msgs = [m for m in history if m["role"] == "tool"]
    assert json.loads(tool_msgs[0]["content"])["booked"] is True


# ------------------------------------------------------------------ realtime


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", BOTH_BACKENDS)
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_realtime_call_with_tool_and_barge_in_truncates_to_what_was_heard(
    carrier: str,
) -> None:
    BOOKINGS.clear()
    fake = FakeOpenAIRealtime(
        transcripts=["a table for two at seven", "tell me about the rooms", "wait"],
        replies=[
            RealtimeReply(tool="book_table", arguments='{"party": 2, "time": "19:00"}'),
            "Booked for two at seven.",
            LONG,
            "Yes?",
        ],
        speed=4.0,
    )
    async with fake:
        template = OpenAIRealtime(api_key="test-key", base_url=fake.url)
        agent = Agent("You take bookings.", tools=[book_table])
        iface = interface(
            carrier, pipeline="realtime", realtime=template, agent=agent, greeting="Hello, Luigi's."
        )
        async with served(iface) as (url, seen):
            caller_cls = TwilioCaller if carrier == "twilio" else PlivoCaller
            caller = caller_cls(
                url,
                TOKEN,
                public_url="http://127.0.0.1",
                **({"to": "14155550199"} if carrier == "plivo" else {}),
            )
            rate = 8000 if carrier == "twilio" else 16000
            async with caller.dial() as call:
                await call.wait_for_audio(0.5, timeout=10)  # the greeting
                await call.send_silence(0.6)
                await call.send_audio(speech("a table for two at seven", rate), sample_rate=rate)
                await call.send_silence(1.5)
                await fake.wait_for(lambda: bool(BOOKINGS), timeout=10)
                await call.send_audio(speech("tell me about the rooms", rate), sample_rate=rate)
                await call.send_silence(2.5)  # the long answer starts playing
                await call.send_audio(speech("wait", rate), sample_rate=rate)  # barge in
                await call.send_silence(1.0)
                conn = fake.connections[-1]
                await fake.wait_for(lambda: bool(conn.truncations), timeout=10)
            graph = seen[0][0].graph
            events = list(seen[0][0].recent_events)
    assert BOOKINGS == [(2, "19:00")]
    assert call.clears >= 1
    item, audio_end_ms = conn.truncations[-1]
    long_ms = len(LONG) * 60
    assert 0 < audio_end_ms < long_ms
    # the model was truncated exactly at what the carrier acknowledged as played
    cut_positions = [e for e in events if isinstance(e, PlayedPosition) and not e.complete]
    assert any(abs(p.played * 1000 - audio_end_ms) <= 1 for p in cut_positions), (
        cut_positions,
        audio_end_ms,
    )
    assert audio_end_ms / 1000 <= call.heard_seconds
    transcript = graph["supervisor"].transcript
    long_entry = next(e for e in transcript if e.get("full") == LONG)
    assert long_entry.get("interrupted") is True
    assert LONG.startswith(long_entry["content"]) and len(long_entry["content"]) < len(LONG)


# ------------------------------------------------------------------ provider down


@pytest.mark.anyio
async def test_a_provider_that_stays_down_gets_an_apology_then_a_hang_up() -> None:
    from voicegraph.nodes.providers.base import ReconnectPolicy
    from voicegraph.testing.fake_openai_realtime import RealtimeFault
    from voicegraph.testing.fake_rest import FakeCarrierREST

    fake = FakeOpenAIRealtime(faults=[RealtimeFault(kind="down")] * 10)
    async with fake, FakeCarrierREST("twilio", "AC" + "0" * 32, TOKEN) as rest:
        template = OpenAIRealtime(
            api_key="test-key",
            base_url=fake.url,
            reconnect=ReconnectPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02),
        )
        iface = interface(
            "twilio",
            pipeline="realtime",
            realtime=template,
            agent=Agent("x"),
            api_base_url=rest.base_url,
        )
        async with served(iface) as (url, seen):
            caller = TwilioCaller(url, TOKEN, public_url="http://127.0.0.1", playback_rate=4.0)
            async with caller.dial() as call:
                assert await rest.wait_for_hangup(call.call_sid, timeout=20)
            result_call = seen[0][0]
    # the whole pre-rendered apology (about 5.5 s) reached the caller before the hang-up
    assert call.heard_seconds > 5.0
    assert len(rest.requests) == 1
    assert [e.stage for e in result_call.recent_events if hasattr(e, "stage")].count(
        "first_mark_ack"
    ) == 1


# ------------------------------------------------------------------ cascading

ROOMS = (
    "We have a lovely terrace. There is a quiet room at the back. "
    "The long table by the window seats twelve. Tonight the chef cooks a tasting menu."
)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", BOTH_BACKENDS)
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_cascading_call_with_tool_and_barge_in_keeps_only_heard_text(carrier: str) -> None:
    from voicegraph.nodes import CartesiaTTS, DeepgramSTT
    from voicegraph.testing.fake_cartesia import FakeCartesia
    from voicegraph.testing.fake_deepgram import FakeDeepgram
    from voicegraph.timeline import STAGES

    BOOKINGS.clear()
    fmt = AudioFormat("mulaw", 8000) if carrier == "twilio" else AudioFormat("pcm16", 16000)
    replies = [
        ChatReply(
            tool_calls=(ScriptedToolCall("book_table", '{"party": 2, "time": "19:00"}', "c1"),)
        ),
        "Booked for two at seven.",
        ROOMS,
        "Yes, go ahead.",
    ]
    dg = FakeDeepgram(["a table for two at seven", "tell me about the rooms", "wait a moment"])
    tts_fake = FakeCartesia(realtime=4.0)
    async with dg, tts_fake, FakeChatCompletions(replies, tokens_per_second=12) as chat:
        agent = Agent(
            "You take bookings.",
            llm=OpenAIChatLLM(api_key=chat.api_key, base_url=chat.base_url),
            tools=[book_table],
        )
        iface = interface(
            carrier,
            pipeline="cascading",
            agent=agent,
            greeting="Hello, Luigi's.",
            stt=lambda: DeepgramSTT(
                api_key=dg.api_key,
                base_url=dg.url,
                encoding=fmt.encoding,
                sample_rate=fmt.sample_rate,
            ),
            tts=lambda: CartesiaTTS(
                api_key=tts_fake.api_key,
                base_url=tts_fake.url,
                encoding=fmt.encoding,
                sample_rate=fmt.sample_rate,
            ),
        )
        async with served(iface) as (url, seen):
            caller_cls = TwilioCaller if carrier == "twilio" else PlivoCaller
            caller = caller_cls(
                url,
                TOKEN,
                public_url="http://127.0.0.1",
                **({"to": "14155550199"} if carrier == "plivo" else {}),
            )
            rate = fmt.sample_rate
            async with caller.dial() as call:
                await call.wait_for_audio(0.3, timeout=10)  # the greeting
                await call.send_silence(1.0)
                await call.send_audio(speech("a table for two at seven", rate), sample_rate=rate)
                await call.send_silence(2.0)
                await chat.wait_idle()
                heard_after_booking = call.heard_seconds
                await call.send_audio(speech("tell me about the rooms", rate), sample_rate=rate)
                await call.send_silence(1.2)
                await call.wait_for_audio(
                    heard_after_booking + 1.0, timeout=10
                )  # the long answer plays
                clears_before = call.clears
                await call.send_audio(speech("wait a moment", rate), sample_rate=rate)  # barge in
                await call.send_silence(1.0)
                agent_node = seen[0][0].graph["agent"]
                with anyio.fail_after(10):  # the answer to the barge-in is played and heard
                    while not any(
                        m.get("content") == "Yes, go ahead." for m in agent_node.llm_history()
                    ):
                        await call.send_silence(0.2)
            timeline = seen[0][2]
    assert BOOKINGS == [(2, "19:00")]
    assert call.clears > clears_before  # the carrier's buffer was cleared
    assert tts_fake.requests("cancel"), "the TTS context of the interrupted reply was cancelled"
    history = agent_node.llm_history()
    said = [m["content"] for m in history if m["role"] == "assistant"]
    rooms = [c for c in said if c and ROOMS.startswith(c)]
    assert rooms and len(rooms[0]) < len(ROOMS), "the history keeps only the heard prefix"
    assert said[-1] == "Yes, go ahead."
    first = next(
        r
        for r in timeline.turns
        if "first_mark_ack" in r.stages and "agent_first_token" in r.stages
    )
    times = [first.stages[s] for s in STAGES if s in first.stages and s != "stt_final"]
    assert times == sorted(times), first.stages


def test_provider_templates_give_each_call_independent_nodes() -> None:
    from voicegraph.nodes import CartesiaTTS, DeepgramSTT, EspeakTTS, PocketsphinxSTT

    iface = interface(
        "twilio",
        pipeline="cascading",
        agent=Agent("x"),
        stt=DeepgramSTT(api_key="k", endpointing=200),
        tts=CartesiaTTS(api_key="k", voice_id="11111111-2222-3333-4444-555555555555"),
    )
    a, b = iface.new_stt(), iface.new_stt()
    assert a is not b and a.options == b.options and a.options.endpointing == 200
    assert a._buffer is not b._buffer and a.metrics is not b.metrics
    assert iface.new_tts().options.voice_id == "11111111-2222-3333-4444-555555555555"
    for template in (EspeakTTS(), PocketsphinxSTT(), OpenAIRealtime(api_key="k", voice="ash")):
        copy = template.clone()
        assert (
            type(copy) is type(template)
            and copy is not template
            and copy.options == template.options
        )


@pytest.mark.anyio
async def test_max_duration_goodbye_is_heard_before_the_rest_hang_up() -> None:
    from voicegraph import PlayedPosition
    from voicegraph.nodes import EspeakTTS, EspeakTTSOptions, PocketsphinxSTT
    from voicegraph.server.goodbye import GOODBYE_UTTERANCE
    from voicegraph.testing.fake_rest import FakeCarrierREST
    from voicegraph.wsio import SocketClosed

    class Silent:
        async def respond(self, turn):  # type: ignore[no-untyped-def]
            yield "Okay."

    async with FakeCarrierREST("plivo", "MA" + "X" * 18, TOKEN) as rest:
        iface = interface(
            "plivo",
            pipeline="cascading",
            agent=Silent(),
            max_call_duration_seconds=1.0,
            goodbye="Our time is up. Goodbye.",
            api_base_url=rest.base_url,
            stt=PocketsphinxSTT,
            tts=lambda: EspeakTTS(EspeakTTSOptions(encoding="pcm16", sample_rate=16000)),
        )
        async with served(iface) as (url, seen):
            caller = PlivoCaller(url, TOKEN, public_url="http://127.0.0.1", to="14155550199")
            async with caller.dial() as call:
                with anyio.fail_after(20):
                    while not rest.requests:
                        try:
                            await call.send_silence(0.2)
                        except SocketClosed:  # the server ended the call after the hang-up
                            break
            events = list(seen[0][0].recent_events)
    played = [
        e for e in events if isinstance(e, PlayedPosition) and e.utterance_id == GOODBYE_UTTERANCE
    ]
    assert played and played[0].complete, (
        "the goodbye was acknowledged as played before the hang-up"
    )
    # (playout reports positions rounded to the microsecond)
    assert call.heard_seconds + 1e-6 >= played[0].played > 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_transfer_call_transfers_the_call_once_the_agent_was_heard(carrier: str) -> None:
    from voicegraph.nodes import CartesiaTTS, DeepgramSTT
    from voicegraph.testing.fake_cartesia import FakeCartesia
    from voicegraph.testing.fake_deepgram import FakeDeepgram
    from voicegraph.testing.fake_rest import FakeCarrierREST

    replies = [
        ChatReply(
            text="Transferring you now.",
            tool_calls=(ScriptedToolCall("transfer_call", '{"number": "+15557654321"}', "t1"),),
        ),
        "One moment.",
    ]
    fmt = AudioFormat("mulaw", 8000) if carrier == "twilio" else AudioFormat("pcm16", 16000)
    account = "AC" + "0" * 32 if carrier == "twilio" else "MA" + "X" * 18
    dg, tts_fake = FakeDeepgram(["a human please"]), FakeCartesia(realtime=4.0)
    async with (
        dg,
        tts_fake,
        FakeChatCompletions(replies) as chat,
        FakeCarrierREST(carrier, account, TOKEN) as rest,
    ):
        iface = interface(
            carrier,
            pipeline="cascading",
            api_base_url=rest.base_url,
            agent=Agent("x", llm=OpenAIChatLLM(api_key=chat.api_key, base_url=chat.base_url)),
            stt=lambda: DeepgramSTT(
                api_key=dg.api_key,
                base_url=dg.url,
                encoding=fmt.encoding,
                sample_rate=fmt.sample_rate,
            ),
            tts=lambda: CartesiaTTS(
                api_key=tts_fake.api_key,
                base_url=tts_fake.url,
                encoding=fmt.encoding,
                sample_rate=fmt.sample_rate,
            ),
        )
        async with served(iface) as (url, _):
            rest.runtime_url = url  # Plivo fetches the transfer document from the runtime
            if carrier == "twilio":
                caller: Any = TwilioCaller(url, TOKEN, public_url="http://127.0.0.1")
            else:
                caller = PlivoCaller(url, TOKEN, public_url="http://127.0.0.1", to="14155550199")
            async with caller.dial() as call:
                await call.send_silence(0.5)
                rate = fmt.sample_rate
                await call.send_audio(speech("a human please", rate), sample_rate=rate)
                with anyio.fail_after(15):
                    while not rest.transfers:
                        await call.send_silence(0.2)
    call_id = call.call_sid if carrier == "twilio" else call.call_uuid
    assert rest.transfers == [(call_id, "+15557654321")]
    assert [t.function.name for t in chat.requests[0].tools] == ["end_call", "transfer_call"]
    assert call.heard_seconds > 1.0  # "Transferring you now. One moment." was played first


@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
@pytest.mark.parametrize("can_transfer", [True, False])
def test_the_transfer_tool_is_offered_only_where_the_session_can_transfer(
    carrier: str, can_transfer: bool
) -> None:
    from voicegraph.agent import CallControl
    from voicegraph.nodes import EspeakTTS, PocketsphinxSTT
    from voicegraph.presets import build_for_session
    from voicegraph.session import CallSession

    async def transfer(number: str) -> None:
        raise AssertionError("not called in this test")

    (cin, cout), fmt = _carrier_nodes(carrier)
    iface = interface(
        carrier, pipeline="cascading", agent=Agent("x"), stt=PocketsphinxSTT, tts=EspeakTTS
    )
    session = CallSession(
        call_id="c",
        carrier=carrier,
        mode="cascading",
        stream_id="s",
        carrier_in=cin,
        carrier_out=cout,
        audio_format=fmt,
        interface=iface,
        transfer=transfer if can_transfer else None,
    )
    node = build_for_session(session)["agent"]
    tools = Agent("x").tools_for(CallControl(can_transfer=node.transfer is not None))  # type: ignore[attr-defined]
    expected = ["end_call", "transfer_call"] if can_transfer else ["end_call"]
    assert [t.name for t in tools] == expected


@pytest.mark.parametrize("interruptible", ["none", "dtmf", "speech", "any"])
@pytest.mark.parametrize("sensitivity", ["low", "medium", "high"])
def test_interface_interruption_settings_reach_the_vad_and_barge_in(
    interruptible: str, sensitivity: str
) -> None:
    from voicegraph.nodes import EspeakTTS, PocketsphinxSTT
    from voicegraph.nodes.audio import SENSITIVITY
    from voicegraph.nodes.conversation.barge_in import BARGE_IN_MIN_WORDS
    from voicegraph.presets import build_for_session
    from voicegraph.session import CallSession

    (cin, cout), fmt = _carrier_nodes("twilio")
    iface = interface(
        "twilio",
        pipeline="cascading",
        agent=Agent("x"),
        stt=PocketsphinxSTT,
        tts=EspeakTTS,
        interruptible=interruptible,
        interrupt_sensitivity=sensitivity,
    )
    g = build_for_session(
        CallSession(
            call_id="c",
            carrier="twilio",
            mode="cascading",
            stream_id="s",
            carrier_in=cin,
            carrier_out=cout,
            audio_format=fmt,
            interface=iface,
        )
    )
    assert g["vad"].profile == SENSITIVITY[sensitivity]  # type: ignore[attr-defined]
    assert g["barge_in"].interruptible == interruptible  # type: ignore[attr-defined]
    assert g["barge_in"].min_words == BARGE_IN_MIN_WORDS[sensitivity]  # type: ignore[attr-defined]
