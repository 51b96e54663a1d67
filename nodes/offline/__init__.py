"""Offline providers: espeak-ng TTS and pocketsphinx STT, in process (extra ``offline``).

Importing this package imports neither library; each loads when its class is first used.
"""
