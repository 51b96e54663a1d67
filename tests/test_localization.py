"""``CallInterface(language=..., voice=...)`` reaches every provider that takes them, or the
interface refuses a combination that cannot be honoured, at construction."""

from __future__ import annotations

import anyio
import pytest
from e2ekit import TOKEN, interface, served, speech

from voicegraph import Agent
from voicegraph.interface import IncompatibleOptionsError
from voicegraph.localization import localize
from voicegraph.nodes import CartesiaTTS, DeepgramSTT, EspeakTTS, PocketsphinxSTT
from voicegraph.nodes.llm import OpenAIChatLLM
from voicegraph.nodes.realtime import OpenAIRealtime
from voicegraph.testing.fake_cartesia import FakeCartesia
from voicegraph.testing.fake_chat import FakeChatCompletions
from voicegraph.testing.fake_deepgram import FakeDeepgram
from voicegraph.testing.twilio_caller import TwilioCaller

VOICE = "694f9389-aac1-45b6-b726-9d9369183238"


@pytest.mark.anyio
async def test_cascading_language_and_voice_reach_deepgram_and_cartesia() -> None:
    dg, tts = FakeDeepgram(["hola"]), FakeCartesia(realtime=4.0)
    async with dg, tts, FakeChatCompletions(["Hola, bienvenido."]) as chat:
        iface = interface(
            "twilio",
            pipeline="cascading",
            language="es-ES",
            voice=VOICE,
            agent=Agent("x", llm=OpenAIChatLLM(api_key=chat.api_key, base_url=chat.base_url)),
            stt=DeepgramSTT(api_key=dg.api_key, base_url=dg.url),
            tts=CartesiaTTS(api_key=tts.api_key, base_url=tts.url),
        )
        async with served(iface) as (url, _):
            async with TwilioCaller(url, TOKEN, public_url="http://127.0.0.1").dial() as call:
                await call.send_silence(0.5)
                await call.send_audio(speech("hola", 8000), sample_rate=8000)
                with anyio.fail_after(15):
                    while not tts.requests():
                        await call.send_silence(0.2)
    assert dg.queries[0]["language"] == ["es-ES"]
    request = tts.requests()[0]
    assert (request.language, request.voice_id) == ("es", VOICE)


def test_realtime_language_and_voice_reach_the_session() -> None:
    node = localize(OpenAIRealtime(api_key="k"), "es-ES", "marin")
    session = node.session()
    assert session.audio.input.transcription.language == "es"  # type: ignore[union-attr]
    assert session.audio.output.voice == "marin"  # type: ignore[union-attr]


def test_espeak_speaks_the_interface_language() -> None:
    assert localize(EspeakTTS(), "es-ES", None).options.voice == "es"
    assert localize(EspeakTTS(), "en-GB", None).options.voice == "en"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"tts": CartesiaTTS(api_key="k"), "voice": "alloy"}, "not a Cartesia voice id"),
        ({"stt": DeepgramSTT(api_key="k", language="fr"), "language": "es-ES"}, "disagrees"),
        ({"stt": PocketsphinxSTT(), "language": "es-ES"}, "built-in model is English"),
    ],
)
def test_an_impossible_cascading_combination_is_refused_at_construction(
    kw: dict[str, object], match: str
) -> None:
    kw = {"stt": PocketsphinxSTT(), "tts": EspeakTTS(), **kw}
    with pytest.raises(IncompatibleOptionsError, match=match):
        interface("twilio", pipeline="cascading", agent=Agent("x"), **kw)


def test_a_voice_the_realtime_model_lacks_is_refused_at_construction() -> None:
    with pytest.raises(IncompatibleOptionsError, match="not a voice of the realtime model"):
        interface(
            "twilio",
            pipeline="realtime",
            agent=Agent("x"),
            realtime=OpenAIRealtime(api_key="k"),
            voice=VOICE,
        )
