"""Twilio ConversationRelay edge (managed mode): Twilio does speech; we exchange text.

Server side: :func:`accept_conversation_relay` reads ``setup`` and returns a
:class:`RelaySession`; :func:`relay_nodes` builds the carrier edge nodes:

* :class:`RelayIn` (``carrier_in``) -- outputs ``"text"`` (one final Transcript per caller turn:
  ``prompt`` fragments are joined until ``last``), ``"control"`` (:class:`RelayInterrupt` -- an
  ``Interrupt`` that also says what the caller heard --, DTMF, Hangup) and ``"events"``
  (StreamStarted, ErrorEvent for Twilio ``error`` messages, which do not end the session).
* :class:`RelayOut` (``carrier_out``) -- input ``"in"``: AgentText -> ``text`` tokens (``last``
  ends the talk cycle; ``end_call`` then sends ``end``), :class:`Play`, :class:`SendDigits`,
  :class:`SetLanguage`, :class:`EndSession`, and Hangup (``end``, then close).
"""

from __future__ import annotations

import time
from typing import ClassVar

import anyio
import msgspec

from voicegraph.frames import (
    DTMF,
    AgentText,
    ErrorEvent,
    Frame,
    Hangup,
    Interrupt,
    Kind,
    StreamStarted,
    Transcript,
)
from voicegraph.node import In, Out
from voicegraph.wsio import MessageSocket, SocketClosed

from .._base import CLOSE_NORMAL, CarrierIn, CarrierOut, Emit, close_reason
from .._wire import DEFAULT_MAX_MESSAGE, decode, discriminator
from ..errors import ProtocolError
from . import messages as m

__all__ = [
    "EndSession",
    "Play",
    "RelayIn",
    "RelayInterrupt",
    "RelayOptions",
    "RelayOut",
    "RelaySession",
    "SendDigits",
    "SetLanguage",
    "accept_conversation_relay",
    "relay_nodes",
]

_decoder = msgspec.json.Decoder(m.RelayInbound)
_KNOWN = frozenset(("setup", "prompt", "dtmf", "interrupt", "error"))
_DIGITS = frozenset("0123456789*#ABCD")
_SEND_DIGITS = frozenset("0123456789w#*")


# ------------------------------------------------------------------ relay frames


class RelayInterrupt(Interrupt, frozen=True, kw_only=True):
    """The caller barged in; ``heard`` is the agent text they heard first, ``heard_ms`` how long
    the agent had been speaking. Trim the agent's history to ``heard``."""

    heard: str = ""
    heard_ms: float = 0.0


class Play(Frame, frozen=True, kw_only=True):
    """Play the audio at URL ``source`` ``loop`` times (0 = up to 1000)."""

    kind: ClassVar[Kind] = Kind.MEDIA
    source: str
    loop: int = 1
    interruptible: bool | None = None
    preemptible: bool | None = None


class SendDigits(Frame, frozen=True, kw_only=True):
    """Send DTMF ``digits`` (``0-9``, ``#``, ``*``; ``w`` pauses 0.5 s) into the call."""

    kind: ClassVar[Kind] = Kind.MEDIA
    digits: str


class SetLanguage(Frame, frozen=True, kw_only=True):
    """Switch the TTS and/or speech-recognition language for what follows."""

    kind: ClassVar[Kind] = Kind.MEDIA
    tts: str | None = None
    transcription: str | None = None


class EndSession(Frame, frozen=True, kw_only=True):
    """End the relay session, handing ``handoff_data`` (a string, often JSON) to the TwiML
    ``<Connect action>`` request, e.g. to transfer to a person."""

    kind: ClassVar[Kind] = Kind.MEDIA
    handoff_data: str | None = None


# -------------------------------------------------------------------- options


class RelayOptions(msgspec.Struct, frozen=True):
    """Options of the ConversationRelay edge.

    ``start_timeout``: seconds to wait for ``setup``. ``max_message``: largest inbound message
    in bytes. ``max_prompt``: most characters of one caller turn (fragments joined).
    ``interruptible``/``preemptible``/``lang``: written on every ``text`` token when set,
    overriding the TwiML attributes."""

    start_timeout: float = 10.0
    max_message: int = DEFAULT_MAX_MESSAGE
    max_prompt: int = 16_000
    backlog: int = 256
    interruptible: bool | None = None
    preemptible: bool | None = None
    lang: str | None = None


class RelaySession(msgspec.Struct, frozen=True):
    """A parsed ``setup``: identifiers and the ``<Parameter>`` values of the TwiML."""

    session_id: str
    call_sid: str
    account_sid: str
    from_number: str
    to_number: str
    direction: str
    custom_parameters: dict[str, str]


async def accept_conversation_relay(
    socket: MessageSocket, options: RelayOptions | None = None
) -> RelaySession:
    """Read the ``setup`` message of a new ConversationRelay socket.

    Raises :class:`ProtocolError` if anything else comes first, the message is malformed, or no
    ``setup`` arrives within ``options.start_timeout`` seconds."""
    opts = options or RelayOptions()
    with anyio.move_on_after(opts.start_timeout):
        try:
            raw = await socket.receive()
        except SocketClosed:
            raise ProtocolError("socket closed before setup") from None
        msg = decode(_decoder, raw, opts.max_message, "type")
        if not isinstance(msg, m.RelaySetup):
            raise ProtocolError(f"{type(msg).__struct_config__.tag!r} received before 'setup'")
        return RelaySession(
            session_id=msg.sessionId,
            call_sid=msg.callSid,
            account_sid=msg.accountSid,
            from_number=msg.from_,
            to_number=msg.to,
            direction=msg.direction,
            custom_parameters=dict(msg.customParameters),
        )
    raise ProtocolError(f"no 'setup' within {opts.start_timeout:g}s")


class RelayIn(CarrierIn):
    """Reads a ConversationRelay socket after ``setup`` (see module docs for ports)."""

    outputs = (
        Out("text", Transcript),
        Out("control", RelayInterrupt, DTMF, Hangup),
        Out("events", StreamStarted, ErrorEvent),
    )

    def __init__(
        self, socket: MessageSocket, session: RelaySession, options: RelayOptions | None = None
    ) -> None:
        opts = options or RelayOptions()
        super().__init__(socket, backlog=opts.backlog)
        self.session = session
        self.options = opts
        self.ignored = 0
        self._parts: list[str] = []
        self._size = 0

    def stream_started(self) -> StreamStarted:
        s = self.session
        return StreamStarted(
            stream_id=s.session_id,
            call_sid=s.call_sid,
            from_number=s.from_number,
            to_number=s.to_number,
            params=tuple(s.custom_parameters.items()),
        )

    def closed_reason(self, exc: SocketClosed) -> str:
        return "caller hung up"

    def translate(self, raw: str | bytes) -> Emit:
        opts = self.options
        try:
            msg = decode(_decoder, raw, opts.max_message, "type")
        except ProtocolError:
            # Twilio documents debug messages (speaker-events, tokens-played) without their
            # shape and says to expect more types: unknown types are skipped, not fatal.
            kind = discriminator(raw, "type") if len(raw) <= opts.max_message else None
            if kind is not None and kind not in _KNOWN:
                self.ignored += 1
                if self.ignored == 1:
                    self.log.info("ignoring relay message type %r (and later unknown ones)", kind)
                return ()
            raise
        if isinstance(msg, m.RelayPrompt):
            return self._prompt(msg)
        if isinstance(msg, m.RelayInterrupt):
            self._parts.clear()
            self._size = 0
            return (
                (
                    "control",
                    RelayInterrupt(
                        reason="caller",
                        heard=msg.utteranceUntilInterrupt,
                        heard_ms=msg.durationUntilInterruptMs,
                        capture_time=time.monotonic(),
                    ),
                ),
            )
        if isinstance(msg, m.RelayDtmf):
            if len(msg.digit) != 1 or msg.digit not in _DIGITS:
                raise ProtocolError(f"invalid DTMF digit {msg.digit!r}")
            return (("control", DTMF(digit=msg.digit)),)
        if isinstance(msg, m.RelayError):
            self.log.warning("Twilio reported an error: %s", msg.description)
            return (("events", ErrorEvent(node=self.name, message=msg.description)),)
        raise ProtocolError("second 'setup' on one session")

    def _prompt(self, msg: m.RelayPrompt) -> Emit:
        self._size += len(msg.voicePrompt)
        if self._size > self.options.max_prompt:
            raise ProtocolError(f"caller turn longer than {self.options.max_prompt} characters")
        self._parts.append(msg.voicePrompt)
        if not msg.last:
            return ()
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        return (("text", Transcript(text=text, is_final=True, capture_time=time.monotonic())),)


class RelayOut(CarrierOut):
    """Writes agent text and relay commands to a ConversationRelay socket (see module docs)."""

    inputs = (In("in", AgentText, Play, SendDigits, SetLanguage, EndSession, Hangup),)

    def __init__(
        self, socket: MessageSocket, session: RelaySession, options: RelayOptions | None = None
    ) -> None:
        super().__init__(socket, None, max_payload=0)
        self.options = options or RelayOptions()
        self.ended = False

    async def write(self, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            o = self.options
            await self.send_message(
                m.RelayText(
                    token=frame.text,
                    last=frame.last,
                    lang=o.lang,
                    interruptible=o.interruptible,
                    preemptible=o.preemptible,
                )
            )
            if frame.end_call and frame.last:
                await self._end(None)
        elif isinstance(frame, Play):
            await self.send_message(
                m.RelayPlay(
                    source=frame.source,
                    loop=frame.loop,
                    interruptible=frame.interruptible,
                    preemptible=frame.preemptible,
                )
            )
        elif isinstance(frame, SendDigits):
            if not frame.digits or not set(frame.digits) <= _SEND_DIGITS:
                raise ValueError(
                    f"SendDigits({frame.digits!r}): use only 0-9, #, * and w (a 0.5 s pause)"
                )
            await self.send_message(m.RelaySendDigits(digits=frame.digits))
        elif isinstance(frame, SetLanguage):
            if frame.tts is None and frame.transcription is None:
                raise ValueError("SetLanguage needs tts and/or transcription set")
            await self.send_message(
                m.RelayLanguage(ttsLanguage=frame.tts, transcriptionLanguage=frame.transcription)
            )
        elif isinstance(frame, EndSession):
            await self._end(frame.handoff_data)

    async def _end(self, handoff: str | None) -> None:
        if not self.ended:
            self.ended = True
            await self.send_message(m.RelayEnd(handoffData=handoff))

    async def hangup(self, frame: Hangup) -> None:
        try:
            await self._end(None)
        except SocketClosed:
            return
        await self.socket.close(CLOSE_NORMAL, close_reason(frame.reason))


def relay_nodes(
    socket: MessageSocket, session: RelaySession, options: RelayOptions | None = None
) -> tuple[RelayIn, RelayOut]:
    """The ``(carrier_in, carrier_out)`` pair for an accepted ConversationRelay socket."""
    return RelayIn(socket, session, options), RelayOut(socket, session, options)
