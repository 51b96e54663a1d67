"""``CallInterface``: one phone line (a carrier number), its pipeline mode and its providers.

Everything is validated at construction: an invalid combination raises a subclass of
:class:`CallInterfaceError` (:mod:`voicegraph.interface_errors`) whose message says what to
change. Credentials come from the arguments or the carrier's environment variables and are kept
out of ``repr``, logs and errors (:mod:`voicegraph.credentials`).

Provider arguments (``stt``, ``tts``, ``realtime``, ``agent``) hold per-call state, so each call
needs its own. Pass either a zero-argument factory (a class or function), or a *template*
instance; ``new_stt()`` / ``new_tts()`` / ``new_realtime()`` / ``new_agent()`` return a fresh
object per call: a factory is called; a template is copied with its ``clone()`` method if it has
one, else with :func:`copy.copy` (for graph nodes the copy then gets fresh counters and no call).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .credentials import carrier_credentials
from .interface_errors import (
    CallInterfaceError,
    IncompatibleOptionsError,
    InvalidOptionError,
    MissingCredentialsError,
)
from .node import Node, NodeStats

if TYPE_CHECKING:
    from .graph import Graph
    from .session import CallSession

__all__ = [
    "CallInterface",
    "CallInterfaceError",
    "IncompatibleOptionsError",
    "InvalidOptionError",
    "MissingCredentialsError",
]

TELEPHONY = ("twilio", "plivo")
PIPELINES = ("managed", "cascading", "realtime")
INTERRUPTIBLE = ("none", "dtmf", "speech", "any")
SENSITIVITY = ("low", "medium", "high")
MANAGED_TTS = {"google": "Google", "amazon": "Amazon", "elevenlabs": "ElevenLabs"}
MANAGED_STT = {"google": "Google", "deepgram": "Deepgram"}
PLIVO_CONTENT_TYPES = ("audio/x-l16;rate=16000", "audio/x-l16;rate=8000", "audio/x-mulaw;rate=8000")
MAX_CALL_SECONDS = 4 * 3600  # Twilio's and Plivo's own per-call ceiling

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_BCP47 = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-[A-Za-z0-9]{5,8})*")
_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidOptionError(
            f"{name}={value!r} is not supported; use one of: {', '.join(map(repr, allowed))}"
        )
    return str(value)


def _fresh(obj: Any) -> Any:
    if isinstance(obj, Node):
        clone = getattr(obj, "clone", None)
        if callable(clone):
            return clone()
        dup = copy.copy(obj)
        dup.stats = NodeStats()
        dup.call = None
        dup.name = ""
        return dup
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "clone")):
        return obj()
    clone = getattr(obj, "clone", None)
    return clone() if callable(clone) else copy.copy(obj)


class CallInterface:
    """One phone line served by an :class:`~voicegraph.server.AgentRuntime`.

    See the module docs for the provider arguments. ``graph``, when given, is called as
    ``graph(session)`` for each call and returns the call's :class:`~voicegraph.graph.Graph`
    (it must contain ``session.carrier_in`` and ``session.carrier_out``); the interface's
    providers are then optional, since the factory builds what it needs. Without ``graph`` the
    preset for ``pipeline`` builds the graph.

    ``plivo_content_type`` picks the Plivo stream format (16 kHz L16 by default).
    ``goodbye`` is said when ``max_call_duration_seconds`` is reached. ``api_base_url``
    overrides the carrier REST host (tests point it at a fake). ``stream_token_ttl`` bounds the
    time from answering the webhook to the carrier opening the stream.

    ``voicemail_message`` is left on an answering machine when a call placed with
    ``AgentRuntime.dial(..., machine_detection=True)`` reaches one (without it the call just
    hangs up). ``record`` records every call of the line as time-aligned stereo (caller left,
    agent right; cascading and realtime): a directory, where ``<call id>.wav`` is written, or
    a callable (sync or async) that gets a
    :class:`~voicegraph.nodes.audio.recorder.Recording`.
    """

    def __init__(
        self,
        telephony: str = "twilio",
        phone_number: str = "",
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        auth_id: str | None = None,
        pipeline: str = "cascading",
        stt: Any = None,
        tts: Any = None,
        realtime: Any = None,
        agent: Any = None,
        greeting: str | None = None,
        voice: str | None = None,
        language: str = "en-US",
        interruptible: str = "any",
        interrupt_sensitivity: str = "medium",
        managed_stt_provider: str | None = None,
        managed_tts_provider: str | None = None,
        webhook_path: str = "/call/incoming",
        stream_path: str = "/call/stream",
        max_call_duration_seconds: float = 3600,
        graph: Callable[[CallSession], Graph] | None = None,
        plivo_content_type: str = "audio/x-l16;rate=16000",
        goodbye: str = "We have reached the time limit for this call. Goodbye.",
        api_base_url: str | None = None,
        stream_token_ttl: float = 60.0,
        voicemail_message: str | None = None,
        record: str | os.PathLike[str] | Callable[[Any], Any] | None = None,
    ) -> None:
        self.telephony = _choice("telephony", telephony, TELEPHONY)
        self.pipeline = _choice("pipeline", pipeline, PIPELINES)
        self.interruptible = _choice("interruptible", interruptible, INTERRUPTIBLE)
        self.interrupt_sensitivity = _choice(
            "interrupt_sensitivity", interrupt_sensitivity, SENSITIVITY
        )
        if not isinstance(phone_number, str) or not _E164.fullmatch(phone_number):
            raise InvalidOptionError(
                f"phone_number={phone_number!r} is not E.164; write it as '+' then country code "
                "and number, digits only (e.g. '+15551234567')"
            )
        self.phone_number = phone_number
        multi = pipeline == "managed" and language == "multi"
        if not isinstance(language, str) or not (multi or _BCP47.fullmatch(language)):
            raise InvalidOptionError(
                f"language={language!r} is not a BCP-47 tag; use e.g. 'en-US', 'es-ES' or 'fr'"
            )
        self.language = language
        for name, path in (("webhook_path", webhook_path), ("stream_path", stream_path)):
            if not isinstance(path, str) or not _PATH.fullmatch(path) or len(path) > 200:
                raise InvalidOptionError(
                    f"{name}={path!r} must be an absolute URL path like '/call/incoming' "
                    "(letters, digits, '-', '_', '.', '~', '/'; at most 200 characters)"
                )
        if webhook_path == stream_path:
            raise IncompatibleOptionsError(
                f"webhook_path and stream_path are both {webhook_path!r}; give them different paths"
            )
        self.webhook_path, self.stream_path = webhook_path, stream_path
        if not 0 < max_call_duration_seconds <= MAX_CALL_SECONDS:
            raise InvalidOptionError(
                f"max_call_duration_seconds={max_call_duration_seconds!r} must be above 0 and at "
                f"most {MAX_CALL_SECONDS} (4 hours, the carriers' own limit)"
            )
        self.max_call_duration_seconds = float(max_call_duration_seconds)
        if not 0 < stream_token_ttl <= 3600:
            raise InvalidOptionError(
                f"stream_token_ttl={stream_token_ttl!r} must be in (0, 3600] seconds"
            )
        self.stream_token_ttl = float(stream_token_ttl)
        for name, text, limit in (
            ("greeting", greeting, 1000),
            ("goodbye", goodbye, 1000),
            ("voicemail_message", voicemail_message, 2000),
        ):
            if text is not None and (not isinstance(text, str) or len(text) > limit):
                raise InvalidOptionError(f"{name} must be a string of at most {limit} characters")
        self.greeting, self.goodbye = greeting, goodbye
        self.voicemail_message = voicemail_message
        self.record = self._check_record(record, pipeline)
        if voice is not None and (not isinstance(voice, str) or not 0 < len(voice) <= 200):
            raise InvalidOptionError("voice must be a non-empty string of at most 200 characters")
        self.voice = voice
        if graph is not None and not callable(graph):
            raise InvalidOptionError("graph must be a callable taking a CallSession")
        self.graph_factory = graph
        self.plivo_content_type = _choice(
            "plivo_content_type", plivo_content_type, PLIVO_CONTENT_TYPES
        )
        if api_base_url is not None and not re.fullmatch(
            r"https?://[^\s/]+(/[^\s]*)?", api_base_url
        ):
            raise InvalidOptionError(
                f"api_base_url={api_base_url!r} must be an http(s) URL like 'https://api.twilio.com'"
            )
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.stt, self.tts, self.realtime, self.agent = stt, tts, realtime, agent
        self._check_pipeline(managed_stt_provider, managed_tts_provider)
        self.account_id, self._auth_token = carrier_credentials(
            self.telephony, account_sid, auth_token, auth_id
        )
        from .localization import LocalizationError, check_interface

        try:
            check_interface(self)
        except LocalizationError as exc:
            raise IncompatibleOptionsError(str(exc)) from None

    # ---------------------------------------------------------------- validation

    @staticmethod
    def _check_record(record: Any, pipeline: str) -> Any:
        if record is None:
            return None
        if pipeline == "managed":
            raise IncompatibleOptionsError(
                "record= records the call's audio, which managed mode never sees; use "
                "pipeline='cascading' or 'realtime', or remove record="
            )
        if callable(record):
            return record
        if not isinstance(record, (str, os.PathLike)):
            raise InvalidOptionError(
                "record= must be a directory path or a callable taking a Recording"
            )
        try:
            os.makedirs(record, exist_ok=True)
        except OSError as exc:
            raise InvalidOptionError(
                f"record={os.fspath(record)!r} is not a directory that can be written "
                f"({exc.strerror}); pass an existing writable directory"
            ) from None
        return record

    def _check_pipeline(self, managed_stt: str | None, managed_tts: str | None) -> None:
        p = self.pipeline
        if p == "managed" and self.telephony != "twilio":
            raise IncompatibleOptionsError(
                "pipeline='managed' uses Twilio ConversationRelay and needs telephony='twilio'; "
                "with Plivo use pipeline='cascading' or 'realtime'"
            )
        if p != "managed" and (managed_stt or managed_tts):
            raise IncompatibleOptionsError(
                "managed_stt_provider/managed_tts_provider apply only to pipeline='managed'; "
                "remove them or pass stt=/tts= nodes instead"
            )
        custom = self.graph_factory is not None
        if p == "managed":
            if self.stt is not None or self.tts is not None or self.realtime is not None:
                raise IncompatibleOptionsError(
                    "pipeline='managed' lets Twilio do speech recognition and synthesis; remove "
                    "stt=/tts=/realtime= and name providers with managed_stt_provider/"
                    "managed_tts_provider"
                )
        elif p == "cascading":
            if self.realtime is not None:
                raise IncompatibleOptionsError(
                    "pipeline='cascading' does not use realtime=; use pipeline='realtime' or "
                    "remove realtime="
                )
            if not custom and (self.stt is None or self.tts is None):
                missing = " and ".join(f"{n}=" for n in ("stt", "tts") if getattr(self, n) is None)
                raise IncompatibleOptionsError(
                    f"pipeline='cascading' needs {missing}: pass a speech-to-text and a "
                    "text-to-speech node (or use pipeline='realtime' / 'managed')"
                )
        else:
            if self.stt is not None or self.tts is not None:
                raise IncompatibleOptionsError(
                    "pipeline='realtime' uses one speech-to-speech model; remove stt=/tts= or "
                    "use pipeline='cascading'"
                )
            if not custom and self.realtime is None:
                raise IncompatibleOptionsError(
                    "pipeline='realtime' needs realtime=: pass a realtime model node "
                    "(or use pipeline='cascading' with stt= and tts=)"
                )
        self.managed_stt_provider = self._managed_name(
            "managed_stt_provider", managed_stt, MANAGED_STT
        )
        self.managed_tts_provider = self._managed_name(
            "managed_tts_provider", managed_tts, MANAGED_TTS
        )

    @staticmethod
    def _managed_name(option: str, value: str | None, known: dict[str, str]) -> str | None:
        if value is None:
            return None
        name = known.get(str(value).lower())
        if name is None:
            raise InvalidOptionError(
                f"{option}={value!r} is not a ConversationRelay provider; use one of: "
                f"{', '.join(map(repr, known.values()))}"
            )
        return name

    # ------------------------------------------------------------------- per call

    def new_stt(self) -> Any:
        """A fresh speech-to-text node for one call (``None`` if none was configured)."""
        return None if self.stt is None else _fresh(self.stt)

    def new_tts(self) -> Any:
        """A fresh text-to-speech node for one call (``None`` if none was configured)."""
        return None if self.tts is None else _fresh(self.tts)

    def new_realtime(self) -> Any:
        """A fresh realtime model node for one call (``None`` if none was configured)."""
        return None if self.realtime is None else _fresh(self.realtime)

    def new_agent(self) -> Any:
        """A fresh agent for one call (``None`` if none was configured)."""
        return None if self.agent is None else _fresh(self.agent)

    @property
    def auth_token(self) -> str:
        """The carrier auth token (only for signing/validating; never log it)."""
        return self._auth_token.reveal()

    @property
    def line(self) -> str:
        """The called number as digits only: the routing key carried in stream parameters."""
        return self.phone_number[1:]

    def __repr__(self) -> str:
        return (
            f"CallInterface(telephony={self.telephony!r}, phone_number={self.phone_number!r}, "
            f"pipeline={self.pipeline!r}, language={self.language!r}, "
            f"webhook_path={self.webhook_path!r}, stream_path={self.stream_path!r})"
        )
