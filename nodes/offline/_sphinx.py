"""The synchronous half of PocketsphinxSTT: one pocketsphinx decoder, endpointing, results.

Not thread-safe: the node calls one method at a time, each from a worker thread.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import deque
from typing import Any

from voicegraph.frames import Transcript, Word

__all__ = [
    "MODEL_RATE",
    "Recognizer",
    "SphinxConfigError",
    "SphinxNotInstalled",
    "phrases_grammar",
]

MODEL_RATE = 16000
"""Sample rate of the acoustic model in the pocketsphinx wheel."""

_FRAMES_PER_SECOND = 100  # pocketsphinx's default feature frame rate (-frate)
_INSTALL_HINT = "install the offline extra: pip install 'voicegraph[offline]'"
# JSGF tokens that are syntax, not words: rule names, weights, tags, keywords, operators.
_JSGF_NOISE = re.compile(
    r"<[^>]*>|/[^/]*/|\{[^}]*\}|#JSGF[^;]*;|\b(grammar|public|import)\b|[^\w'\s-]"
)


class SphinxConfigError(ValueError):
    """PocketsphinxSTT cannot be set up as asked (bad option, grammar or keyphrase)."""


class SphinxNotInstalled(ImportError):
    """The ``pocketsphinx`` wheel is not installed."""


class Recognizer:
    """Feeds 16-bit audio to a pocketsphinx decoder and returns :class:`Transcript` s.

    ``options`` is a :class:`~voicegraph.nodes.offline.pocketsphinx_stt.PocketsphinxSTTOptions`.
    Every method returns the transcripts it produced (often none)."""

    def __init__(self, options: Any) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise SphinxNotInstalled(f"pocketsphinx is not available; {_INSTALL_HINT}") from exc
        o = self.options = options
        kwargs: dict[str, Any] = {"samprate": MODEL_RATE, "loglevel": "FATAL"}
        if o.model_dir:
            kwargs["hmm"] = o.model_dir
        if o.dictionary:
            kwargs["dict"] = o.dictionary
        if o.grammar is not None or o.keyphrases or o.phrases:
            kwargs["lm"] = None  # a grammar or keyphrase search replaces the language model
        try:
            self._dec = pocketsphinx.Decoder(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise SphinxConfigError(
                f"pocketsphinx could not load its model ({exc}); check model_dir and dictionary"
            ) from exc
        if o.phrases:
            self._use_grammar(phrases_grammar(o.phrases))
        elif o.grammar is not None:
            self._use_grammar(o.grammar)
        elif o.keyphrases:
            self._use_keyphrases(o.keyphrases, o.keyphrase_threshold)
        self._resampler: Any = None
        if o.sample_rate != MODEL_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(o.sample_rate, MODEL_RATE, 1, dtype="int16")
        self._endpointer: Any = (
            pocketsphinx.Endpointer(sample_rate=MODEL_RATE) if o.endpointing == "internal" else None
        )
        self._ep_buf = bytearray()
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._preroll_max = MODEL_RATE * o.preroll_ms // 1000 * 2
        self._max_utt_samples = int(o.max_utterance_seconds * MODEL_RATE)
        self._interval_samples = int(o.interim_interval * MODEL_RATE)
        self._stream_samples = 0
        self._in_utt = False
        self._utt_start = 0.0
        self._utt_samples = 0
        self._last_interim = ""
        self._interim_at = 0

    # --------------------------------------------------------------- set-up

    def _missing(self, words: list[str]) -> list[str]:
        return sorted({w for w in words if self._dec.lookup_word(w.lower()) is None})

    def _use_grammar(self, grammar: str) -> None:
        try:
            self._dec.add_jsgf_string("grammar", grammar)
        except (ValueError, RuntimeError):
            missing = self._missing(_JSGF_NOISE.sub(" ", grammar).split())
            if missing:
                raise SphinxConfigError(
                    f"grammar uses words the pronunciation dictionary lacks: {missing}; "
                    "spell them as dictionary words or add them to a custom dictionary"
                ) from None
            raise SphinxConfigError(
                "grammar is not valid JSGF; it needs a '#JSGF V1.0;' header, a "
                "'grammar name;' line and at least one 'public <rule> = ...;'"
            ) from None
        self._dec.activate_search("grammar")

    def _use_keyphrases(self, phrases: tuple[str, ...], threshold: float) -> None:
        missing = self._missing([w for p in phrases for w in p.split()])
        if missing or not all(p.strip() for p in phrases):
            raise SphinxConfigError(
                f"keyphrases must be non-empty and use dictionary words; unknown: {missing}"
            )
        # pocketsphinx reads a keyphrase list only from a file: "phrase /threshold/" per line.
        fd, path = tempfile.mkstemp(suffix=".kws", text=True)
        try:
            with os.fdopen(fd, "w") as f:
                for p in phrases:
                    f.write(f"{' '.join(p.lower().split())} /{threshold:g}/\n")
            self._dec.add_kws("keyphrases", path)
        finally:
            os.unlink(path)
        self._dec.activate_search("keyphrases")

    # ------------------------------------------------------------- feeding

    def audio(self, pcm: bytes) -> list[Transcript]:
        """Take PCM16 audio at the input rate; return interim and final results."""
        if self._resampler is not None:
            import numpy as np

            pcm = self._resampler.resample_chunk(np.frombuffer(pcm, "<i2")).tobytes()
        return self._feed(pcm)

    def _feed(self, pcm: bytes) -> list[Transcript]:
        out: list[Transcript] = []
        if not pcm:  # the resampler holds back its first few milliseconds
            return out
        if self._endpointer is None:
            self._stream_samples += len(pcm) // 2
            if self._in_utt:
                self._decode(pcm, out)
            elif self._preroll_max:
                self._preroll.append(pcm)
                self._preroll_bytes += len(pcm)
                while self._preroll_bytes - len(self._preroll[0]) >= self._preroll_max:
                    self._preroll_bytes -= len(self._preroll.popleft())
            return out
        ep, buf = self._endpointer, self._ep_buf
        buf += pcm
        size = ep.frame_bytes
        while len(buf) >= size:
            frame = bytes(buf[:size])
            del buf[:size]
            self._stream_samples += size // 2
            speech = ep.process(frame)
            if speech is not None:
                if not self._in_utt:
                    self._begin(ep.speech_start)
                self._decode(speech, out)
                if not ep.in_speech and self._in_utt:
                    out.extend(self._end())
        self._interim(out)
        return out

    def speech_started(self) -> list[Transcript]:
        """An upstream VAD heard speech start (``endpointing="external"`` only)."""
        if self._endpointer is not None or self._in_utt:
            return []
        held = b"".join(self._preroll)
        self._preroll.clear()
        self._preroll_bytes = 0
        self._begin((self._stream_samples - len(held) // 2) / MODEL_RATE)
        out: list[Transcript] = []
        if held:
            self._decode(held, out)
        return out

    def speech_stopped(self) -> list[Transcript]:
        """An upstream VAD heard speech end: finalise (``endpointing="external"`` only)."""
        if self._endpointer is not None or not self._in_utt:
            return []
        return self._end()

    def finish(self) -> list[Transcript]:
        """End of the stream: flush everything and finalise an open utterance."""
        out: list[Transcript] = []
        if self._resampler is not None:
            import numpy as np

            tail = self._resampler.resample_chunk(np.zeros(0, np.int16), last=True).tobytes()
            out.extend(self._feed(tail))
        if self._endpointer is not None and self._in_utt:
            speech = self._endpointer.end_stream(bytes(self._ep_buf))
            self._ep_buf.clear()
            if speech:
                self._decode(speech, out)
        if self._in_utt:
            out.extend(self._end())
        return out

    # ------------------------------------------------------------ decoding

    def _begin(self, start: float) -> None:
        self._dec.start_utt()
        self._in_utt = True
        self._utt_start = max(0.0, start)
        self._utt_samples = 0
        self._last_interim = ""
        self._interim_at = 0

    def _decode(self, pcm: bytes, out: list[Transcript]) -> None:
        self._dec.process_raw(pcm, False, False)
        self._utt_samples += len(pcm) // 2
        if self._utt_samples >= self._max_utt_samples:
            # Too long for one utterance: finalise it and carry on in a fresh one.
            start = self._utt_start + self._utt_samples / MODEL_RATE
            out.extend(self._end())
            self._begin(start)
        elif self._endpointer is None:
            self._interim(out)

    def _interim(self, out: list[Transcript]) -> None:
        if not self._in_utt or self._utt_samples - self._interim_at < self._interval_samples:
            return
        self._interim_at = self._utt_samples
        hyp = self._dec.hyp()
        text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
        if text and text != self._last_interim:
            self._last_interim = text
            out.append(
                Transcript(
                    text=text,
                    start=self._utt_start,
                    end=self._utt_start + self._utt_samples / MODEL_RATE,
                )
            )

    def _end(self) -> list[Transcript]:
        self._dec.end_utt()
        self._in_utt = False
        hyp = self._dec.hyp()
        text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
        if not text:
            return []
        t0 = self._utt_start
        words = tuple(
            Word(
                _base_word(seg.word),
                t0 + seg.start_frame / _FRAMES_PER_SECOND,
                t0 + (seg.end_frame + 1) / _FRAMES_PER_SECOND,
            )
            for seg in self._dec.seg() or ()
            if not _is_filler(seg.word)
        )
        return [
            Transcript(
                text=text,
                is_final=True,
                speech_final=True,
                words=words,
                start=t0,
                end=t0 + self._utt_samples / MODEL_RATE,
            )
        ]


def phrases_grammar(phrases: tuple[str, ...]) -> str:
    """A JSGF grammar accepting one or more of ``phrases`` in a row (command-style input)."""
    cleaned = [" ".join(re.sub(r"[^\w' -]", " ", p.lower()).split()) for p in phrases]
    if not all(cleaned):
        raise SphinxConfigError(f"phrases must each contain a word, got {list(phrases)!r}")
    return "#JSGF V1.0;\ngrammar phrases;\npublic <say> = (" + " | ".join(cleaned) + ")+;\n"


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "[", "+")) or not word


def _base_word(word: str) -> str:
    """``"read(2)"`` (an alternative pronunciation) -> ``"read"``."""
    word = word.strip()  # keyphrase segments carry a trailing space
    cut = word.find("(")
    return word[:cut] if cut > 0 else word
