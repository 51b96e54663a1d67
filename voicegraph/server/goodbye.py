"""How a call ends politely: the goodbye at max duration or at the drain deadline, the apology
when a node fails, and the hang-up over the carrier's REST API that follows both.

A call never just goes silent: whatever ends it, the caller hears why (where the carrier path
still works) and the carrier's call is ended, not left open.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from ..frames import AgentText
from .carrier_rest import carrier_rest

if TYPE_CHECKING:
    from ..interface import CallInterface
    from ..runtime import Call
    from ..session import CallSession
    from .agent_runtime import AgentRuntime

__all__ = [
    "APOLOGY_UTTERANCE",
    "GOODBYE_UTTERANCE",
    "MANAGED_APOLOGY",
    "SHUTDOWN_GOODBYE",
    "apologise",
    "goodbye",
    "rest_hangup",
    "say_managed",
    "shutdown_goodbye",
]

logger = logging.getLogger("voicegraph.server")

GOODBYE_UTTERANCE = 2**31 - 2  # an utterance id no agent uses
APOLOGY_UTTERANCE = 2**31 - 1  # an utterance id no agent uses

SHUTDOWN_GOODBYE = "I'm sorry, I have to end this call now. Please call again. Goodbye."
"""What a call still active at the drain deadline hears."""

MANAGED_APOLOGY = "Sorry, we are having technical difficulties. Please call again later. Goodbye."
"""What a managed (ConversationRelay) call hears when its agent fails: Twilio speaks it."""

_CARRIER_NODES = ("carrier_in", "carrier_out", "playout")


async def rest_hangup(iface: CallInterface, call_id: str) -> None:
    """End the call through the carrier's REST API (bounded retries; errors are logged)."""
    from ..transports._rest import HangupError

    rest = carrier_rest(iface)
    try:
        ended = await rest.hangup(call_id)
    except HangupError as exc:
        logger.error("[%s] REST hang-up failed: %s", call_id, exc)
        return
    logger.info("[%s] hung up via REST%s", call_id, "" if ended else " (already ended)")


async def shutdown_goodbye(call: Call, session: CallSession, runtime: AgentRuntime) -> None:
    """At the drain deadline: the shutdown goodbye, then the REST hang-up, within the runtime's
    ``goodbye_timeout``; the call is stopped either way."""
    with anyio.move_on_after(runtime.goodbye_timeout):
        await goodbye(call, session, SHUTDOWN_GOODBYE, runtime.goodbye_timeout - 1.0)
    call.stop("shutdown")


async def goodbye(
    call: Call, session: CallSession, text: str | None = None, within: float | None = None
) -> None:
    """At max duration: say the goodbye, make sure it was heard, then hang up over REST.

    With playout in the graph (cascading, or any graph with ``tts`` and ``playout`` nodes) the
    goodbye goes to the TTS under its own utterance id and the hang-up waits for playout's
    ``PlayedPosition(complete=True)`` -- the carrier's acknowledgement -- bounded by the grace.
    In managed mode Twilio speaks it and confirms nothing, so we wait an estimate of its
    speaking time (about 2.5 words per second plus a second). In realtime graphs the model
    (a node with a ``say`` input) is asked to say it once its current reply is over, under the
    goodbye's utterance id, and the hang-up waits for playout's acknowledgement the same way."""
    from ..frames import PlayedPosition, Say

    iface: CallInterface = session.interface
    text = iface.goodbye if text is None else text
    within = max(1.0, call.grace - 3) if within is None else max(0.5, within)
    inject: Callable[[], Awaitable[None]] | None = None
    if text and iface.pipeline == "managed":
        await say_managed(call, session, text, within)
    elif text and "tts" in call.graph and "playout" in call.graph:
        port = next((p.name for p in call.graph["tts"].inputs if AgentText in p.types), None)
        if port is not None:
            said = AgentText(text=text, utterance_id=GOODBYE_UTTERANCE, last=True)
            inject = partial(call.inject, "tts", port, said)
    elif text and "model" in call.graph and "playout" in call.graph:
        if any(p.name == "say" and Say in p.types for p in call.graph["model"].inputs):
            say = Say(text=text, utterance_id=GOODBYE_UTTERANCE)
            inject = partial(call.inject, "model", "say", say)
    if inject is not None:
        heard = await call.wait_event(
            lambda e: isinstance(e, PlayedPosition) and e.utterance_id == GOODBYE_UTTERANCE,
            within,
            after=inject,
        )
        if heard is None:
            logger.warning("[%s] goodbye not confirmed as played", call.call_id)
    assert session.hangup is not None
    await session.hangup()


async def say_managed(call: Call, session: CallSession, text: str, within: float) -> None:
    """Managed mode: send ``text`` as one complete talk cycle for Twilio to speak, then wait an
    estimate of its speaking time (ConversationRelay confirms nothing): 1 s plus 2.5 words a
    second, at most ``within`` seconds."""
    name = next(n for n, node in call.graph.nodes.items() if node is session.carrier_out)
    await call.inject(name, "in", AgentText(text=text, last=True))
    await anyio.sleep(min(1.0 + len(text.split()) / 2.5, within))


def _apology_pcm() -> bytes:
    import wave
    from importlib.resources import files

    with wave.open(str(files("voicegraph.data") / "apology.wav"), "rb") as w:
        return w.readframes(w.getnframes())


async def apologise(call: Call, failure: Any, session: CallSession) -> None:
    """A node failed (a provider stayed down, say): play the pre-rendered apology through the
    still-running playout, wait until the carrier acknowledged it, then hang up over REST. In
    managed mode Twilio speaks :data:`MANAGED_APOLOGY` instead (see :func:`say_managed`). The
    call does not go silent. Skipped when the failure is in the carrier path itself."""
    from ..frames import AudioDone, AudioFrame, PlayedPosition, TimelineMark

    carrier_failed = failure.node in _CARRIER_NODES or (
        failure.node in call.graph and call.graph[failure.node] is session.carrier_out
    )
    if session.interface.pipeline == "managed" and not carrier_failed:
        call.publish(TimelineMark(turn=-1, stage="apology"))
        await say_managed(call, session, MANAGED_APOLOGY, max(1.0, call.grace - 2))
        logger.info("[%s] apology sent to be spoken", call.call_id)
    elif "playout" in call.graph and failure.node not in _CARRIER_NODES:
        call.publish(TimelineMark(turn=-1, stage="apology"))

        async def play() -> None:
            pcm, step = _apology_pcm(), 1600  # 100 ms frames at 8 kHz PCM16
            for i in range(0, len(pcm), step):
                frame = AudioFrame(
                    data=pcm[i : i + step],
                    encoding="pcm16",
                    sample_rate=8000,
                    utterance_id=APOLOGY_UTTERANCE,
                )
                await call.inject("playout", "audio", frame)
            await call.inject("playout", "audio", AudioDone(utterance_id=APOLOGY_UTTERANCE))

        played = await call.wait_event(
            lambda e: isinstance(e, PlayedPosition) and e.utterance_id == APOLOGY_UTTERANCE,
            max(1.0, call.grace - 2),
            after=play,
        )
        logger.info("[%s] apology %s", call.call_id, "played" if played else "not confirmed")
    if session.hangup is not None:
        await session.hangup()
