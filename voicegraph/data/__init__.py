"""Data shipped with voicegraph: apology.wav, the pre-rendered "technical difficulties" message
(espeak-ng output, 8 kHz PCM16 mono) played when a provider stays down."""
