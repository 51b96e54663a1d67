"""The node library (installed as ``voicegraph.nodes``).

Public node classes are imported lazily on first use (``from voicegraph.nodes import X``), so
importing one provider does not import them all.
"""

from __future__ import annotations

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
    "ProviderUnavailable": ".providers.base",
    "ReconnectPolicy": ".providers.base",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
