"""The audio path: G.711 codec, PCM16 helpers, streaming resampler, VAD and playout.

Names are imported lazily so that ``import voicegraph.nodes.audio`` does not load soxr,
webrtcvad or onnxruntime until a node that needs them is used.
"""

from __future__ import annotations

from voicegraph._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "AudioInputError": ".pcm",
    "check_audio": ".pcm",
    "float_to_pcm16": ".pcm",
    "pcm16_to_samples": ".pcm",
    "samples_to_pcm16": ".pcm",
    "swap_bytes": ".pcm",
    "CallRecorder": ".recorder",
    "Recording": ".recorder",
    "TrackRecorder": ".recorder",
    "write_stereo_wav": ".recorder",
    "MulawDecode": ".g711",
    "MulawEncode": ".g711",
    "ULAW_SILENCE": ".g711",
    "pcm16_to_ulaw": ".g711",
    "ulaw_to_pcm16": ".g711",
    "Resampler": ".resample",
    "StreamResampler": ".resample",
    "Analyser": ".analysers",
    "EnergyAnalyser": ".analysers",
    "WebRTCAnalyser": ".analysers",
    "SileroAnalyser": ".silero",
    "silero_model_path": ".silero",
    "SENSITIVITY": ".vad",
    "Sensitivity": ".vad",
    "VAD": ".vad",
    "VADOptions": ".vad",
    "VADProfile": ".vad",
    "Playout": ".playout",
    "PlayoutOptions": ".playout",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
