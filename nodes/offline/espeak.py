"""A small in-process binding of espeak-ng over ``ctypes``.

The library and its data come from the ``espeakng-loader`` wheel (extra ``offline``). espeak-ng
is GPL-3.0-or-later; loading it pulls GPL code into the process (see ``docs/offline.md``).

espeak-ng keeps its state in process globals and is not re-entrant: one voice, one set of
parameters, one synthesis callback for the whole process. So this module initialises the library
once, keeps the one ``ctypes`` callback referenced for the life of the process (a collected
callback would crash the next synthesis), and serialises every synthesis behind one lock. Each
:class:`EspeakSynth` applies its own voice and parameters under that lock, so several instances
with different voices can share the process safely.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from voicegraph.frames import Word

__all__ = [
    "EspeakError",
    "EspeakNotInstalled",
    "EspeakSynth",
    "Synthesis",
    "SAMPLE_RATE",
]

SAMPLE_RATE = 22050
"""espeak-ng's native output rate (Hz) for its standard voices."""

INSTALL_HINT = "install the offline extra: pip install 'voicegraph[offline]'"

# espeak_AUDIO_OUTPUT, espeak_PARAMETER, espeak_EVENT_TYPE and flag values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EE_OK, _EE_NOT_FOUND = 0, 2
_BUFFER_MS = 100


class EspeakNotInstalled(ImportError):
    """The ``espeakng-loader`` wheel (which ships espeak-ng) is not installed."""


class EspeakError(RuntimeError):
    """espeak-ng refused a request (unknown voice, bad parameter, failed synthesis)."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class Synthesis(msgspec.Struct, frozen=True):
    """The result of one synthesis: 16-bit mono samples at ``sample_rate`` and word timings.

    ``words`` hold the text of each word as written and its start/end in seconds from the start
    of ``audio``. ``stopped`` is true when synthesis was stopped early (``should_stop``)."""

    audio: np.ndarray[Any, np.dtype[np.int16]]
    sample_rate: int
    words: tuple[Word, ...]
    stopped: bool = False

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.audio) / self.sample_rate


class _Collector:
    """Receives the callback's output for the synthesis in progress (one at a time)."""

    __slots__ = ("chunks", "events", "should_stop", "stopped")

    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        self.chunks: list[bytes] = []
        self.events: list[tuple[int, int, int]] = []  # (text position, length, audio ms)
        self.should_stop = should_stop
        self.stopped = False


class _Library:
    """The process-wide espeak-ng instance. Use through :func:`_library`."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EspeakNotInstalled(f"espeak-ng is not available; {INSTALL_HINT}") from exc
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise EspeakNotInstalled(
                f"the espeakng-loader wheel is broken ({exc}); reinstall it: {INSTALL_HINT}"
            ) from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data.encode(), 0)
        if rate <= 0:
            raise EspeakError(f"espeak-ng failed to initialise (code {rate}); {INSTALL_HINT}")
        self.lib = lib
        self.sample_rate = rate
        self.lock = threading.Lock()
        self.current: _Collector | None = None
        # Referenced from this long-lived object: ctypes frees the trampoline with the object.
        self.callback = _Callback(self._on_audio)
        lib.espeak_SetSynthCallback(self.callback)

    def _on_audio(self, wav: Any, numsamples: int, events: Any) -> int:
        col = self.current
        if col is None:
            return 1
        if numsamples > 0 and wav:
            col.chunks.append(ctypes.string_at(wav, numsamples * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                col.events.append((ev.text_position, ev.length, ev.audio_position))
            i += 1
        if col.should_stop is not None and col.should_stop():
            col.stopped = True
            return 1  # non-zero aborts the synthesis
        return 0


_lib: _Library | None = None
_lib_lock = threading.Lock()


def _library() -> _Library:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _Library()
        return _lib


class EspeakSynth:
    """Text to 16-bit mono PCM at :data:`SAMPLE_RATE` (22,050 Hz) with espeak-ng, in process.

    ``voice``: an espeak-ng voice name (``"en-us"``, ``"en-gb"``, ``"de"``...). ``rate_wpm``:
    speaking rate, 80-450 words per minute. ``pitch`` and ``pitch_range``: 0-100 (50 is the
    voice's default). ``volume``: 0-200 (100 is normal). ``word_gap_ms``: extra pause between
    words. ``max_chars`` bounds the text of one call.

    Calls block the calling thread while synthesising (typically a few per cent of the audio's
    duration) and are serialised process-wide; from async code run them with
    ``anyio.to_thread.run_sync``. Raises :class:`EspeakNotInstalled` if the wheel is missing and
    :class:`EspeakError` for an unknown voice.
    """

    def __init__(
        self,
        voice: str = "en-us",
        *,
        rate_wpm: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        word_gap_ms: int = 0,
        max_chars: int = 10_000,
    ) -> None:
        _check_range("rate_wpm", rate_wpm, 80, 450)
        _check_range("pitch", pitch, 0, 100)
        _check_range("pitch_range", pitch_range, 0, 100)
        _check_range("volume", volume, 0, 200)
        _check_range("word_gap_ms", word_gap_ms, 0, 1000)
        _check_range("max_chars", max_chars, 1, 1_000_000)
        if not voice or "\x00" in voice:
            raise EspeakError(f"voice must be a non-empty espeak-ng voice name, got {voice!r}")
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch
        self.pitch_range = pitch_range
        self.volume = volume
        self.word_gap_ms = word_gap_ms
        self.max_chars = max_chars
        self._lib = _library()
        self.sample_rate: int = self._lib.sample_rate
        with self._lib.lock:
            self._apply()  # fail now, not on the first sentence, if the voice is unknown

    def __repr__(self) -> str:
        return f"EspeakSynth(voice={self.voice!r}, rate_wpm={self.rate_wpm}, pitch={self.pitch})"

    def _apply(self) -> None:
        lib = self._lib.lib
        rc = lib.espeak_SetVoiceByName(self.voice.encode())
        if rc == _EE_NOT_FOUND:
            raise EspeakError(
                f"espeak-ng has no voice {self.voice!r}; use a voice name such as 'en-us', "
                "'en-gb' or 'de' (run 'espeak-ng --voices' for the list)"
            )
        if rc != _EE_OK:
            raise EspeakError(f"espeak-ng could not select voice {self.voice!r} (code {rc})")
        for param, value in (
            (_PARAM_RATE, self.rate_wpm),
            (_PARAM_PITCH, self.pitch),
            (_PARAM_RANGE, self.pitch_range),
            (_PARAM_VOLUME, self.volume),
            (_PARAM_WORDGAP, self.word_gap_ms // 10),  # espeak-ng counts units of 10 ms
        ):
            rc = lib.espeak_SetParameter(param, value, 0)
            if rc != _EE_OK:
                raise EspeakError(f"espeak-ng rejected parameter {param}={value} (code {rc})")

    def synthesize(self, text: str) -> np.ndarray[Any, np.dtype[np.int16]]:
        """Speak ``text``; return int16 samples at :attr:`sample_rate` (empty for empty text)."""
        return self.synthesize_words(text).audio

    def synthesize_words(
        self, text: str, should_stop: Callable[[], bool] | None = None
    ) -> Synthesis:
        """Speak ``text``; return the audio and the timing of each word.

        ``should_stop`` is polled from espeak-ng's callback (every ~100 ms of audio); when it
        returns true, synthesis stops and the audio so far is returned with ``stopped=True``.
        Raises ``ValueError`` if ``text`` is longer than ``max_chars``."""
        if len(text) > self.max_chars:
            raise ValueError(
                f"text of {len(text)} characters exceeds max_chars={self.max_chars}; "
                "split it into sentences or raise max_chars"
            )
        clean = text.replace("\x00", " ")
        if not clean.strip():
            return Synthesis(np.zeros(0, np.int16), self.sample_rate, ())
        raw = clean.encode("utf-8")
        buf = ctypes.create_string_buffer(raw)
        col = _Collector(should_stop)
        lib = self._lib
        with lib.lock:
            self._apply()
            lib.current = col
            try:
                rc = lib.lib.espeak_Synth(
                    buf, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
                )
                lib.lib.espeak_Synchronize()
            finally:
                lib.current = None
        if rc != _EE_OK and not col.stopped:
            raise EspeakError(f"espeak-ng failed to synthesise (code {rc})")
        audio = np.frombuffer(b"".join(col.chunks), dtype=np.int16)
        return Synthesis(
            audio,
            self.sample_rate,
            _words(clean, col.events, len(audio) / self.sample_rate),
            col.stopped,
        )


def _words(text: str, events: list[tuple[int, int, int]], total: float) -> tuple[Word, ...]:
    """Word timings from espeak-ng's word events: each word lasts until the next one starts."""
    out: list[Word] = []
    for i, (pos, length, ms) in enumerate(events):
        start = min(ms / 1000.0, total)
        end = min(events[i + 1][2] / 1000.0, total) if i + 1 < len(events) else total
        word = text[pos - 1 : pos - 1 + length] if pos > 0 else ""
        out.append(Word(word, start, max(start, end)))
    return tuple(out)


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
