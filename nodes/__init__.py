"""The node library (installed as ``voicegraph.nodes``).

Public node classes are imported lazily on first use (``from voicegraph.nodes import X``), so
importing one provider does not import them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voicegraph._lazy import lazy_exports

# name -> submodule that defines it; each provider adds its own public names here.
_LAZY: dict[str, str] = {
    "AudioConverter": ".convert",
    "make_converter": ".convert",
    "AudioInputError": ".audio.pcm",
    "MulawDecode": ".audio.g711",
    "MulawEncode": ".audio.g711",
    "pcm16_to_ulaw": ".audio.g711",
    "ulaw_to_pcm16": ".audio.g711",
    "Resampler": ".audio.resample",
    "VAD": ".audio.vad",
    "VADOptions": ".audio.vad",
    "SENSITIVITY": ".audio.vad",
    "EnergyAnalyser": ".audio.analysers",
    "WebRTCAnalyser": ".audio.analysers",
    "SileroAnalyser": ".audio.silero",
    "CallRecorder": ".audio.recorder",
    "Recording": ".audio.recorder",
    "Playout": ".audio.playout",
    "PlayoutOptions": ".audio.playout",
    "EspeakTTS": ".offline.espeak_tts",
    "EspeakTTSOptions": ".offline.espeak_tts",
    "PocketsphinxSTT": ".offline.pocketsphinx_stt",
    "PocketsphinxSTTOptions": ".offline.pocketsphinx_stt",
    "OpenAIChatLLM": ".llm",
    "OpenAIRealtime": ".realtime",
    "DeepgramSTT": ".stt.deepgram",
    "DeepgramOptions": ".stt.deepgram",
    "CartesiaTTS": ".tts.cartesia",
    "CartesiaOptions": ".tts.cartesia",
    "ProviderUnavailable": ".providers.errors",
    "ReconnectPolicy": ".providers.reconnect",
}

if TYPE_CHECKING:  # editors and type checkers see the lazy names' real types
    from .audio.analysers import EnergyAnalyser as EnergyAnalyser, WebRTCAnalyser as WebRTCAnalyser
    from .audio.g711 import (
        MulawDecode as MulawDecode,
        MulawEncode as MulawEncode,
        pcm16_to_ulaw as pcm16_to_ulaw,
        ulaw_to_pcm16 as ulaw_to_pcm16,
    )
    from .audio.pcm import AudioInputError as AudioInputError
    from .audio.playout import Playout as Playout, PlayoutOptions as PlayoutOptions
    from .audio.recorder import CallRecorder as CallRecorder, Recording as Recording
    from .audio.resample import Resampler as Resampler
    from .audio.silero import SileroAnalyser as SileroAnalyser
    from .audio.vad import SENSITIVITY as SENSITIVITY, VAD as VAD, VADOptions as VADOptions
    from .convert import AudioConverter as AudioConverter, make_converter as make_converter
    from .llm import OpenAIChatLLM as OpenAIChatLLM
    from .offline.espeak_tts import EspeakTTS as EspeakTTS, EspeakTTSOptions as EspeakTTSOptions
    from .offline.pocketsphinx_stt import (
        PocketsphinxSTT as PocketsphinxSTT,
        PocketsphinxSTTOptions as PocketsphinxSTTOptions,
    )
    from .providers.errors import ProviderUnavailable as ProviderUnavailable
    from .providers.reconnect import ReconnectPolicy as ReconnectPolicy
    from .realtime import OpenAIRealtime as OpenAIRealtime
    from .stt.deepgram import DeepgramOptions as DeepgramOptions, DeepgramSTT as DeepgramSTT
    from .tts.cartesia import CartesiaOptions as CartesiaOptions, CartesiaTTS as CartesiaTTS


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
