"""Scenarios: one script of a conversation, run in text mode or as a real call.

    script = (
        Scenario("booking")
        .say("a table for two at seven", expect=lambda r: r.assert_tool_called("book_table"))
        .pause(0.5)
        .say("tell me about the rooms", interrupt_after=4)
        .press("1")
        .say("that's all", expect=lambda r: r.assert_ended())
    )
    result = await script.run_text(agent)              # milliseconds, no audio
    result = await script.run_call(app)                # through a served app and the fakes
    rate = await script.pass_rate(lambda: script.run_text(make_agent()), runs=10)

Each step is a caller line (``say``), a pause, key presses (``press``) or a hang-up. A line's
``expect`` checks the agent's reply (a :class:`~voicegraph.testing.TextReply`: text, heard
text, tool calls, call-control decision) with its ``assert_*`` helpers; a failed check fails
that turn, not the run. ``interrupt_after=N``: the caller barges in after hearing N words.
A result lists every turn (reply, pass/fail, latency); :meth:`Scenario.pass_rate` repeats a
run, for models whose answers vary.

In a call (:meth:`Scenario.run_call`), lines reach the agent the way the app's line hears
them: ConversationRelay ``prompt`` s in managed mode; audio for the media-stream presets -- a
speech-like signal whose words come from the fake STT's script, which must list the lines in
order (:meth:`Scenario.lines` gives them). A reply is read from the call's agent node, so tool
calls and decisions are as in text mode; latency is the caller's wait from the end of their
line to the first reply text (managed) or audio (media streams).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from voicegraph.dialogue import Dialogue

from .speech import speech_like
from .textmode import TextReply, TextSession, tool_calls_of

__all__ = ["PassRate", "Scenario", "ScenarioResult", "Step", "TurnResult"]

Check = Callable[[TextReply], Any]


class Step(msgspec.Struct, frozen=True):
    """One scripted caller action: ``kind`` is ``say``, ``press``, ``pause`` or ``hang_up``."""

    kind: str
    text: str = ""
    seconds: float = 0.0
    interrupt_after: int | None = None
    expect: Check | None = None


class TurnResult(msgspec.Struct):
    """The outcome of one caller turn: the reply (``None`` if none came), whether its check
    passed, the failure message, and the latency in seconds (see module docs)."""

    index: int
    caller: str
    reply: TextReply | None
    passed: bool
    error: str = ""
    latency: float | None = None


class ScenarioResult(msgspec.Struct):
    """A run: its turns, whether every check passed, and the run's wall-clock seconds."""

    name: str
    mode: str
    turns: list[TurnResult]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.turns)

    @property
    def failures(self) -> list[TurnResult]:
        return [t for t in self.turns if not t.passed]

    def report(self) -> str:
        """One line per turn: pass/fail, latency, caller, reply (and the failure)."""
        lines = [f"{self.name} ({self.mode}): {'passed' if self.passed else 'FAILED'}"]
        for t in self.turns:
            ms = f"{t.latency * 1000:7.1f} ms" if t.latency is not None else "      - ms"
            said = t.reply.text if t.reply is not None else "(no reply)"
            mark = "ok  " if t.passed else "FAIL"
            lines.append(f"  {mark} {ms}  {t.caller!r} -> {said!r} {t.error}".rstrip())
        return "\n".join(lines)


class PassRate(msgspec.Struct):
    """Repeated runs of a scenario: ``passed`` of ``runs`` (``rate`` in 0..1) and the runs."""

    runs: int
    passed: int
    results: list[ScenarioResult]

    @property
    def rate(self) -> float:
        return self.passed / self.runs if self.runs else 0.0


class Scenario:
    """A scripted conversation (see module docs). Builder methods return the scenario."""

    MAX_STEPS = 500

    def __init__(self, name: str = "scenario") -> None:
        self.name = name
        self.steps: list[Step] = []

    def _add(self, step: Step) -> Scenario:
        if len(self.steps) >= self.MAX_STEPS:
            raise ValueError(f"a scenario holds at most {self.MAX_STEPS} steps")
        self.steps.append(step)
        return self

    def say(
        self, text: str, *, expect: Check | None = None, interrupt_after: int | None = None
    ) -> Scenario:
        """The caller says ``text``; ``expect(reply)`` checks the answer."""
        if not text.strip():
            raise ValueError("say() needs some text")
        if interrupt_after is not None and interrupt_after < 0:
            raise ValueError("interrupt_after must be >= 0 words")
        return self._add(Step("say", text, interrupt_after=interrupt_after, expect=expect))

    def press(self, digits: str, *, expect: Check | None = None) -> Scenario:
        """The caller presses keys; ``expect(reply)`` checks the answer to the keypad turn.
        (In a media-stream call each digit is its own turn and only the last one is checked.)"""
        if not digits or any(d not in "0123456789*#ABCD" for d in digits):
            raise ValueError(f"DTMF digits {digits!r}: use 0-9, *, # or A-D")
        return self._add(Step("press", digits, expect=expect))

    def pause(self, seconds: float) -> Scenario:
        """The caller stays quiet for ``seconds`` (instant in text mode)."""
        if not 0 <= seconds <= 600:
            raise ValueError("pause seconds must be between 0 and 600")
        return self._add(Step("pause", seconds=seconds))

    def hang_up(self) -> Scenario:
        """The caller hangs up; later steps do not run."""
        return self._add(Step("hang_up"))

    def lines(self) -> list[str]:
        """The caller's lines in order: the fake STT's transcripts for a call."""
        return [s.text for s in self.steps if s.kind == "say"]

    # ------------------------------------------------------------------ text mode

    async def run_text(self, agent: Any, **session_options: Any) -> ScenarioResult:
        """Run in text mode against ``agent`` (options go to :class:`TextSession`)."""
        start = time.perf_counter()
        turns: list[TurnResult] = []
        async with TextSession(agent, **session_options) as s:
            for step in self.steps:
                if step.kind == "hang_up" or s.ended or s.transferred_to:
                    break
                if step.kind == "pause":
                    continue
                if step.kind == "say":
                    reply = await s.say(step.text, interrupt_after=step.interrupt_after)
                else:
                    reply = await s.press(step.text)
                turns.append(_judge(len(turns) + 1, step, reply, reply.seconds))
        return ScenarioResult(self.name, "text", turns, time.perf_counter() - start)

    # ------------------------------------------------------------------- a call

    async def run_call(
        self,
        app: Any,
        *,
        line: Any = None,
        playback_rate: float = 4.0,
        reply_timeout: float = 15.0,
        seconds_per_char: float = 0.06,
    ) -> ScenarioResult:
        """Run as a call to a served app (:func:`~voicegraph.testing.serve_app`), through the
        simulated caller that fits ``line`` (default: the app's only line).

        ``playback_rate``: how much faster than real time the caller plays what it hears.
        ``seconds_per_char``: the fake TTS's audio per character, to tell when the caller
        has heard ``interrupt_after`` words. Raises ``TimeoutError`` when a reply does not
        come within ``reply_timeout`` seconds."""
        from .callrun import run_call

        start = time.perf_counter()
        turns = await run_call(
            self, app, line, playback_rate, reply_timeout, seconds_per_char, _judge
        )
        mode = f"call:{(line or app.line()).pipeline}/{(line or app.line()).telephony}"
        return ScenarioResult(self.name, mode, turns, time.perf_counter() - start)

    # -------------------------------------------------------------- repeated runs

    @staticmethod
    async def pass_rate(run: Callable[[], Awaitable[ScenarioResult]], runs: int = 10) -> PassRate:
        """Await ``run()`` ``runs`` times, one after another; count the runs that passed."""
        if not 1 <= runs <= 1000:
            raise ValueError("runs must be between 1 and 1000")
        results = [await run() for _ in range(runs)]
        return PassRate(runs, sum(r.passed for r in results), results)


def _judge(index: int, step: Step, reply: TextReply | None, latency: float | None) -> TurnResult:
    caller = step.text if step.kind == "say" else f"[keypad] {step.text}"
    if reply is None:
        return TurnResult(index, caller, None, False, "no reply", latency)
    if step.expect is not None:
        try:
            step.expect(reply)
        except AssertionError as exc:
            return TurnResult(index, caller, reply, False, str(exc), latency)
    return TurnResult(index, caller, reply, True, "", latency)


def reply_from_dialogue(d: Dialogue, uid: int, caller: str, latency: float) -> TextReply:
    """A :class:`TextReply` for utterance ``uid`` of a call's dialogue (its tool messages are
    the ones between the caller's message and the reply's slot)."""
    u = d.utterances[uid]
    at = next((i for i, m in enumerate(d.history) if m is u.slot), len(d.history))
    start = at
    while start > 0 and d.history[start - 1].get("role") in ("assistant", "tool"):
        start -= 1
    control = u.control
    transferred = control.transfer_to if control is not None else None
    ended = control is not None and control.ending is not None and not u.interrupted
    return TextReply(
        turn=d.turns,
        caller=caller,
        text=u.text,
        heard=u.heard,
        interrupted=u.interrupted,
        tool_calls=tool_calls_of(d.history[start:at]),
        ended=ended and not transferred,
        transferred_to=None if u.interrupted else transferred,
        seconds=latency,
    )


def speech_for(text: str, rate: int) -> Any:
    """Caller audio for a line: a speech-like signal about as long as the words would be."""
    return speech_like(max(0.4, 0.07 * len(text)), rate)
