"""Adaptive end of turn: how long a silence ends the caller's turn, judged from what they said.

A turn whose transcript ends a sentence (or answers the agent's question in a few words) ends
after a short silence; a plain clause after a longer one; a hesitation ("um") or a trailing
conjunction ("and", "to") after a long one. :data:`TURN_POLICIES` holds the windows per
sensitivity (documented in docs/turn-taking.md).

:class:`AdaptiveTurnDetector` applies a :class:`TurnPolicy`. Besides ``EndOfTurn`` it emits
:class:`EarlyTurn` as soon as the caller paused (the VAD's early ``SpeechPaused``) and the
transcript looks finished, so the agent can prepare the reply before the turn is confirmed
(:mod:`voicegraph.nodes.conversation.preemptive`), and :class:`TurnContinues` when the caller goes on after all.
While the agent is speaking, a transcript made only of acknowledgements ("mm-hmm", "okay") is a
:class:`Backchannel`, not a turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Literal

import anyio
import msgspec

from voicegraph.frames import (
    EndOfTurn,
    Frame,
    Kind,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from voicegraph.node import In, Out

from .turns import SilenceTurnLoop

__all__ = [
    "WORDS",
    "AdaptiveTurnDetector",
    "Backchannel",
    "EarlyTurn",
    "Ending",
    "TurnContinues",
    "TurnPolicy",
    "TURN_POLICIES",
    "turn_policy",
]

Ending = Literal["complete", "open", "hesitant"]


class EarlyTurn(Frame, frozen=True, kw_only=True):
    """The caller paused and ``text`` looks like a finished turn: prepare the reply, but play
    nothing until the ``EndOfTurn`` with the same text confirms it."""

    kind: ClassVar[Kind] = Kind.CONTROL
    text: str
    capture_time: float = 0.0
    stt_final_time: float = 0.0


class TurnContinues(Frame, frozen=True, kw_only=True):
    """The caller went on after an :class:`EarlyTurn`: drop the prepared reply."""

    kind: ClassVar[Kind] = Kind.CONTROL


class Backchannel(Frame, frozen=True, kw_only=True):
    """The caller acknowledged ("mm-hmm") while the agent spoke: no turn, no interruption."""

    kind: ClassVar[Kind] = Kind.CONTROL
    text: str


class _Words(msgspec.Struct, frozen=True):
    hesitations: frozenset[str]
    continuations: frozenset[str]
    backchannels: frozenset[str]


def _w(s: str) -> frozenset[str]:
    return frozenset(s.split("|"))


WORDS: dict[str, _Words] = {
    # Lower case, no punctuation. Backchannel entries may be several words ("uh huh").
    "en": _Words(
        _w("um|uh|er|erm|hmm|umm|uhm|ah|eh|like"),
        _w(
            "and|but|or|so|because|cause|then|if|that|which|who|to|the|a|an|of|for|with|"
            "my|your|our|at|in|on|from|about|is|was|i|we|would|could|can|will|also|plus"
        ),
        _w(
            "mm-hmm|mhm|mm|mmhmm|uh-huh|uh huh|yeah|yes|yep|ok|okay|right|sure|got it|i see|"
            "alright|all right|uh-hum|hm|ah|oh|cool|great|fine|perfect"
        ),
    ),
    "es": _Words(
        _w("eh|em|este|pues|mmm|bueno"),
        _w("y|pero|o|porque|que|para|de|con|el|la|los|las|un|una|a|en|mi|si"),
        _w("sí|si|vale|claro|ajá|aja|ya|bueno|de acuerdo|mhm|ok|okay|entiendo"),
    ),
    "fr": _Words(
        _w("euh|heu|bah|ben|hum|bon"),
        _w("et|mais|ou|donc|parce|que|qui|pour|de|du|des|le|la|les|un|une|à|avec|mon|si"),
        _w("oui|ouais|d'accord|ok|okay|mhm|ah|bien|entendu|voilà|exactement"),
    ),
    "de": _Words(
        _w("äh|ähm|öh|hm|hmm|also"),
        _w("und|aber|oder|weil|dass|denn|der|die|das|ein|eine|zu|mit|für|von|mein|wenn"),
        _w("ja|jawohl|okay|ok|genau|mhm|aha|gut|richtig|stimmt|alles klar"),
    ),
}
"""Per language (``"en"``, ``"es"``, ``"fr"``, ``"de"``): hesitations and continuations (a turn
ending in one is not over) and backchannels (acknowledgements that are not a turn)."""

_STRIP = ".,!?;:¡¿\"'()…-— "


def _norm(word: str) -> str:
    return word.strip(_STRIP).lower()


class TurnPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Silence windows (seconds since the caller's voice stopped) per transcript ending, and
    the word lists that classify the ending.

    ``complete``: the transcript ends a sentence (``.``, ``?``, ``!``) or answers the agent's
    question in at most ``short_answer`` words. ``open``: anything else. ``hesitant``: it ends
    in a hesitation, a continuation word, a comma or an ellipsis. ``pause``: the VAD's early
    pause (``SpeechPaused``) that finalizes the transcript and may start the reply early;
    ``preemptive``: whether to prepare replies early at all. ``backchannel_words``: at most this
    many words, all of them backchannels, make a backchannel."""

    complete: float = 0.35
    open: float = 0.6
    hesitant: float = 1.2
    pause: float = 0.08
    preemptive: bool = True
    language: str = "en"
    short_answer: int = 3
    backchannel_words: int = 3
    hesitations: frozenset[str] | None = None
    continuations: frozenset[str] | None = None
    backchannels: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.pause < self.complete <= self.open <= self.hesitant <= 10:
            raise ValueError(
                "TurnPolicy: need 0 < pause < complete <= open <= hesitant <= 10 seconds, got "
                f"pause={self.pause}, complete={self.complete}, open={self.open}, "
                f"hesitant={self.hesitant}"
            )
        if self.language not in WORDS and None in (
            self.hesitations,
            self.continuations,
            self.backchannels,
        ):
            raise ValueError(
                f"TurnPolicy: no word lists for language {self.language!r}; use one of "
                f"{sorted(WORDS)} or pass hesitations, continuations and backchannels"
            )

    def _words(self) -> _Words:
        base = WORDS.get(self.language) or WORDS["en"]
        return _Words(
            self.hesitations if self.hesitations is not None else base.hesitations,
            self.continuations if self.continuations is not None else base.continuations,
            self.backchannels if self.backchannels is not None else base.backchannels,
        )

    def ending(self, text: str, asked: bool = False) -> Ending:
        """How ``text`` ends: ``"complete"``, ``"open"`` or ``"hesitant"``. ``asked``: the
        agent's last heard words were a question (a short answer then completes the turn)."""
        t = text.strip()
        if not t:
            return "open"
        words = self._words()
        tokens = [_norm(w) for w in t.split()]
        tokens = [w for w in tokens if w]
        last = tokens[-1] if tokens else ""
        if t.endswith((",", "...", "…", "-", "—")) or last in words.hesitations:
            return "hesitant"
        if last in words.continuations:
            return "hesitant"
        if t.endswith((".", "?", "!")):
            return "complete"
        if asked and len(tokens) <= self.short_answer:
            return "complete"
        return "open"

    def window(self, text: str, asked: bool = False) -> float:
        """Seconds of silence after which ``text`` ends the turn."""
        return getattr(self, self.ending(text, asked))  # type: ignore[no-any-return]

    def is_backchannel(self, text: str) -> bool:
        """Whether ``text`` is only acknowledgements ("mm-hmm", "okay, right")."""
        bc = self._words().backchannels
        t = text.lower().replace(",", " ").replace(".", " ").replace("!", " ")
        tokens = [_norm(w) for w in t.split()]
        tokens = [w for w in tokens if w]
        if not tokens or len(tokens) > self.backchannel_words:
            return False
        i = 0
        while i < len(tokens):  # greedy: two-word entries first ("uh huh", "got it")
            if i + 1 < len(tokens) and f"{tokens[i]} {tokens[i + 1]}" in bc:
                i += 2
            elif tokens[i] in bc:
                i += 1
            else:
                return False
        return True


TURN_POLICIES: dict[str, TurnPolicy] = {
    # high: answers quickest; low: most patient. Measured on the scripted scenarios of
    # `python -m benchmarks voice` (docs/turn-taking.md).
    "low": TurnPolicy(complete=0.5, open=0.8, hesitant=1.5, pause=0.12),
    "medium": TurnPolicy(complete=0.35, open=0.6, hesitant=1.2, pause=0.08),
    "high": TurnPolicy(complete=0.25, open=0.45, hesitant=1.0, pause=0.06),
}
"""Sensitivity -> the default :class:`TurnPolicy`."""


def turn_policy(sensitivity: str = "medium", **overrides: object) -> TurnPolicy:
    """The policy of ``sensitivity`` with ``overrides`` (e.g. ``preemptive=False``)."""
    if sensitivity not in TURN_POLICIES:
        raise ValueError(f"sensitivity must be low, medium or high, not {sensitivity!r}")
    base = TURN_POLICIES[sensitivity]
    return msgspec.structs.replace(base, **overrides) if overrides else base


class AdaptiveTurnDetector(SilenceTurnLoop):
    """Ends the caller's turn after a silence whose length depends on the transcript.

    Inputs ``stt`` (Transcript, EndOfTurn) and ``vad`` (speech started/stopped, early
    paused/resumed). Output ``out``: ``EndOfTurn``; ``EarlyTurn`` / ``TurnContinues`` when
    ``policy.preemptive``; ``Backchannel`` when ``agent_speaking()`` and the caller only
    acknowledged. ``asked()`` tells whether the agent's last words were a question.

    The turn ends at the first of: the silence since the voice stopped reaching the policy's
    window for the transcript so far; the STT's endpoint (``speech_final``) on a transcript that
    is not hesitant; the STT's ``EndOfTurn`` (Deepgram UtteranceEnd). ``vad_stop_lag`` is how
    long after the voice stopped the VAD says ``SpeechStopped`` (its ``min_silence``), used
    when no early pause preceded it. The loop, with its silence deadline, is
    :class:`~.turns.SilenceTurnLoop`'s, shared with the fixed-rule :class:`~.turns.TurnDetector`."""

    inputs = (
        In("stt", Transcript, EndOfTurn),
        # SpeechPaused / SpeechResumed are subclasses of these two
        In("vad", SpeechStarted, SpeechStopped, required=False),
    )
    outputs = (Out("out", EndOfTurn, EarlyTurn, TurnContinues, Backchannel),)

    def __init__(
        self,
        policy: TurnPolicy | None = None,
        *,
        asked: Callable[[], bool] | None = None,
        agent_speaking: Callable[[], bool] | None = None,
        vad_stop_lag: float = 0.5,
    ) -> None:
        super().__init__()
        self.policy = policy or TURN_POLICIES["medium"]
        self.asked = asked or (lambda: False)
        self.agent_speaking = agent_speaking or (lambda: False)
        self.vad_stop_lag = vad_stop_lag
        self.early_turns = 0
        """EarlyTurn frames sent (each starts a prepared reply)."""
        self.withdrawn = 0
        """EarlyTurn frames withdrawn by TurnContinues or a changed transcript."""
        self._finals: list[str] = []
        self._interim = ""
        self._silent_since: float | None = None  # monotonic time the caller's voice stopped
        self._endpoint = False  # the STT said speech_final for the text so far
        self._final_time = 0.0
        self._stop_time = 0.0
        self._deadline = None
        self._early: str | None = None
        self._agent_was_speaking = False

    async def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, Transcript):
            text = frame.text.strip()
            if not frame.is_final:
                self._interim = text
                if text and not self._finals and self.agent_speaking():
                    self._agent_was_speaking = True
                return
            self._interim = ""
            if text:
                self._finals.append(text)
                self._final_time = time.monotonic()
                if self.agent_speaking():
                    self._agent_was_speaking = True
            self._endpoint = self._endpoint or frame.speech_final
            await self._evaluate()
        elif isinstance(frame, EndOfTurn):
            self._endpoint = True
            if self._finals:
                await self._emit(frame.reason or "stt")
        elif isinstance(frame, (SpeechStarted, SpeechResumed)):
            self._silent_since, self._deadline, self._endpoint = None, None, False
            if self.agent_speaking():
                self._agent_was_speaking = True
            await self._withdraw()
        elif isinstance(frame, SpeechPaused):
            self._stop_time = frame.capture_time or time.monotonic()
            self._silent_since = self._stop_time - frame.silence
            await self._evaluate()
        elif isinstance(frame, SpeechStopped):
            if self._silent_since is None:
                self._stop_time = frame.capture_time or time.monotonic()
                self._silent_since = self._stop_time - self.vad_stop_lag
            await self._evaluate()

    def _text(self) -> str:
        return " ".join(self._finals)

    async def _evaluate(self) -> None:
        text = self._text()
        if not text:
            return
        if self._agent_was_speaking and self.policy.is_backchannel(text):
            # An acknowledgement over the agent's speech: record it, end no turn.
            self._reset()
            await self.send("out", Backchannel(text=text))
            return
        if self._silent_since is None and not self._endpoint:
            return  # still speaking
        ending = self.policy.ending(text, self.asked())
        if self._endpoint and ending != "hesitant":
            await self._emit("speech_final")
            return
        if self._silent_since is not None:
            left = self._silent_since + self.policy.window(text, self.asked()) - time.monotonic()
        else:  # an STT endpoint on a hesitant transcript, without a VAD: wait the window
            left = self.policy.hesitant
        if left <= 0:
            await self._emit("vad_silence")
            return
        self._deadline = anyio.current_time() + left
        if self.policy.preemptive and ending != "hesitant" and self._early != text:
            await self._withdraw()
            self._early = text
            self.early_turns += 1
            await self.send(
                "out",
                EarlyTurn(text=text, capture_time=self._stop_time, stt_final_time=self._final_time),
            )

    async def _withdraw(self) -> None:
        if self._early is not None:
            self._early = None
            self.withdrawn += 1
            await self.send("out", TurnContinues())

    def _reset(self) -> None:
        self._finals, self._interim, self._deadline = [], "", None
        self._endpoint, self._early, self._agent_was_speaking = False, None, False

    async def _emit(self, reason: str) -> None:
        text = self._text()
        if not text:
            return
        if self._agent_was_speaking and self.policy.is_backchannel(text):
            self._reset()
            await self.send("out", Backchannel(text=text))
            return
        end = self._stop_time or self._final_time or time.monotonic()
        final_time = self._final_time
        self._reset()
        self._silent_since, self._stop_time = None, 0.0
        await self.send(
            "out", EndOfTurn(text=text, reason=reason, capture_time=end, stt_final_time=final_time)
        )
