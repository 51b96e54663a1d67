"""The dialogue: one conversation's history, kept true to what the caller heard.

What a turn means does not depend on audio, so it lives here once and is shared by the call's
:class:`~voicegraph.nodes.conversation.agent.AgentNode` and by text mode
(:class:`~voicegraph.testing.TextSession`):

* :class:`Dialogue` -- the history in OpenAI chat format. Each agent reply has a slot whose
  content is what the caller *heard* of it (filled in by :meth:`Dialogue.resolve`); tool-call
  messages go in before the slot, heard or not, because they happened.
* :func:`agent_reply` -- runs ``agent.respond(turn)`` and turns an agent failure into an
  apology, so a broken turn never ends the call.
* :func:`call_decision` -- what the turn's :class:`~voicegraph.agent.CallControl` asks of the
  call once its reply was heard: transfer, hang up, or nothing.
* :func:`heard_prefix` -- the words of a reply inside the played audio.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio

from .agent import CallControl, Responder, Turn
from .frames import Word

__all__ = [
    "APOLOGY",
    "Decision",
    "Dialogue",
    "Utterance",
    "agent_reply",
    "call_decision",
    "first_words",
    "heard_prefix",
    "prefix_of",
]

APOLOGY = " Sorry, something went wrong on my side."
"""What the agent says instead when ``respond`` raised."""

MAX_UTTERANCES = 64
"""Utterances remembered for late playback reports; older resolved ones are forgotten."""


def heard_prefix(
    text: str, words: list[Word], played: float, sent: float, chars_per_second: float = 14.0
) -> str:
    """The prefix of ``text`` the caller heard, given ``played`` seconds acknowledged.

    With word timestamps, the words whose end lies within the played audio; otherwise the played
    share of the utterance's audio (estimated from ``sent`` and the text length), cut back to a
    word boundary."""
    if played <= 0 or not text:
        return ""
    if words:
        n = sum(1 for w in words if w.end <= played + 1e-6)
    else:
        total = max(sent, len(text) / chars_per_second)
        if played >= total:
            return text
        n = len(text[: int(len(text) * played / total)].split())
        if n and not text[: int(len(text) * played / total)].endswith((" ", ".", ",", "!", "?")):
            n -= 1  # the last word was cut in the middle
    return first_words(text, n)


def first_words(text: str, n: int) -> str:
    """The first ``n`` words of ``text``, exactly as written (spacing and punctuation kept)."""
    tokens = text.split()
    if n >= len(tokens):
        return text
    if n <= 0:
        return ""
    pos = 0
    for tok in tokens[:n]:
        pos = text.index(tok, pos) + len(tok)
    return text[:pos]


def prefix_of(text: str, heard: str) -> str:
    """The prefix of ``text`` matching what a carrier reported as heard (it may normalise)."""
    heard = heard.strip()
    if not heard or text.startswith(heard):
        return heard
    return first_words(text, len(heard.split()))


@dataclass
class Utterance:
    """One thing the agent said (a greeting or a reply) and how much of it was heard."""

    uid: int
    parts: list[str] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    slot: dict[str, Any] | None = None
    control: CallControl | None = None
    done: bool = False
    interrupted: bool = False
    resolved: bool = False
    gate: anyio.Event | None = None  # closed while a preemptive reply waits for its turn
    heard: str = ""
    settled: anyio.Event = field(default_factory=anyio.Event)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()


class Dialogue:
    """The history of one conversation and its agent utterances (see module docs).

    ``max_history``: messages the model sees at most (twice that is kept). ``can_transfer``:
    whether the connection can transfer calls (offers ``transfer_call`` to the agent)."""

    def __init__(self, max_history: int = 200, *, can_transfer: bool = False) -> None:
        self.max_history = max_history
        self.can_transfer = can_transfer
        self.history: list[dict[str, Any]] = []
        self.turns = 0
        self.utterances: dict[int, Utterance] = {}
        self._next_uid = 0

    @property
    def last_uid(self) -> int:
        """The id of the newest utterance (0 before the first)."""
        return self._next_uid

    def llm_history(self) -> list[dict[str, Any]]:
        """History for the model: resolved messages only, empty assistant slots dropped."""
        out = []
        for m in self.history:
            if m.get("role") == "assistant" and "_utterance" in m:
                if m.get("content"):
                    out.append({"role": "assistant", "content": m["content"]})
            elif m.get("backchannel"):
                out.append({"role": "user", "content": m["content"]})
            else:
                out.append(m)
        return out[-self.max_history :]

    def resolve(self, u: Utterance, heard: str, override: bool = False) -> None:
        """Record that the caller heard ``heard`` of ``u`` (first report wins unless
        ``override``: a carrier's own report of what was heard beats an estimate)."""
        if u.resolved and not override:
            return
        u.resolved, u.heard = True, heard
        u.settled.set()
        if u.slot is not None:
            u.slot["content"] = heard
            u.slot["interrupted"] = u.interrupted

    def _new_utterance(self) -> Utterance:
        self._next_uid += 1
        u = Utterance(self._next_uid)
        u.slot = {"role": "assistant", "content": None, "_utterance": u.uid}
        u.control = CallControl(can_transfer=self.can_transfer)
        self.utterances[u.uid] = u
        if len(self.utterances) > MAX_UTTERANCES:
            resolved = [k for k, v in self.utterances.items() if v.resolved]
            for uid in resolved[: len(self.utterances) - MAX_UTTERANCES]:
                del self.utterances[uid]
        return u

    def speak(self, text: str, *, end_call: bool = False) -> Utterance:
        """An utterance the agent says without a turn (greeting, reprompt, resumed rest)."""
        u = self._new_utterance()
        u.parts.append(text)
        self.history.append(u.slot)  # type: ignore[arg-type]
        if end_call:
            assert u.control is not None
            u.control.ending = text
        return u

    def open_turn(self, text: str, dtmf: str = "") -> tuple[Turn, Utterance]:
        """Start the agent's reply to a caller turn: the caller's message and an empty reply
        slot go into the history; ``turn.history`` is what the model may see before it."""
        turn, u = self.prepare_turn(text, dtmf)
        self.commit_turn(turn, u)
        return turn, u

    def prepare_turn(self, text: str, dtmf: str = "") -> tuple[Turn, Utterance]:
        """A reply to a caller turn that is not in the history yet (a preemptive reply may be
        thrown away): :meth:`commit_turn` enters it, :meth:`discard` forgets it."""
        u = self._new_utterance()
        assert u.control is not None
        turn = Turn(text, self.llm_history(), u.control, dtmf=dtmf, index=self.turns + 1)
        return turn, u

    def commit_turn(self, turn: Turn, u: Utterance) -> None:
        """Enter a prepared turn: the caller's message and the reply's slot join the history."""
        self.turns += 1
        turn.index = self.turns
        self.history.append(turn.user_message)
        self.history.append(u.slot)  # type: ignore[arg-type]
        if len(self.history) > 2 * self.max_history:
            # bounded: the model never sees more than max_history messages, so keep twice that
            del self.history[: len(self.history) - 2 * self.max_history]

    def discard(self, u: Utterance) -> None:
        """Forget a prepared reply that never entered the history."""
        self.utterances.pop(u.uid, None)

    def backchannel(self, text: str) -> None:
        """The caller acknowledged ("mm-hmm") while the agent spoke: kept as said, no turn."""
        self.history.append({"role": "user", "content": text, "backchannel": True})

    def history_before(self, turn: Turn) -> list[dict[str, Any]]:
        """The model's history before ``turn``, read again now (after late heard reports)."""
        before = self.llm_history()
        if before and before[-1] == turn.user_message:  # committed: not the turn's own history
            before = before[:-1]
        return before

    def unsettled(self) -> list[Utterance]:
        """Interrupted utterances whose heard position has not been reported yet."""
        return [v for v in self.utterances.values() if v.interrupted and not v.resolved]

    def add_tool_messages(self, turn: Turn, u: Utterance) -> None:
        """Put the turn's tool-call messages before the reply's heard text."""
        if turn.messages:
            at = next((i for i, m in enumerate(self.history) if m is u.slot), len(self.history))
            self.history[at:at] = turn.messages


async def agent_reply(
    agent: Responder,
    turn: Turn,
    emit: Callable[[str], Awaitable[None]],
    log: Any = None,
    *,
    give_up: Callable[[Exception], bool] | None = None,
) -> bool:
    """Stream ``agent.respond(turn)`` to ``emit`` (empty chunks skipped); True if it succeeded.

    An exception in the agent is this turn's problem, not the call's: it is logged and
    :data:`APOLOGY` is emitted -- unless ``give_up(exc)`` says the call should end instead, in
    which case the exception propagates. Cancellation closes the agent's generator (and so its
    model stream) at once."""
    try:
        async with aclosing(agent.respond(turn)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                if chunk:
                    await emit(chunk)
    except Exception as exc:
        if give_up is not None and give_up(exc):
            raise
        if log is not None:
            log.error(
                "agent failed on turn %d: %s: %s", turn.index, type(exc).__name__, exc, exc_info=exc
            )
        await emit(APOLOGY)
        return False
    return True


@dataclass(frozen=True)
class Decision:
    """What a heard reply asks of the call: ``action`` is ``"transfer"`` (``target`` is the
    number) or ``"end"`` (``target`` is the goodbye that was said)."""

    action: str
    target: str


def call_decision(control: CallControl | None, can_transfer: bool) -> Decision | None:
    """The call-control decision of a reply once it was heard (``None``: carry on)."""
    if control is None:
        return None
    if control.transfer_to and can_transfer:
        return Decision("transfer", control.transfer_to)
    if control.ending is not None:
        return Decision("end", control.ending)
    return None
