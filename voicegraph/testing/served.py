"""Serve an app on loopback and call it: the runtime, its calls, and callers that fit it.

    async with serve_app(runtime) as app:          # or serve_app(line) / serve_app([lines])
        async with app.twilio_caller().dial() as call:
            await call.send_audio(caller_speech("a table for two", 8000), sample_rate=8000)
        call_obj, session, timeline = app.calls[0]

The callers come configured for the app: the line's number, its carrier credentials (to sign
the webhook and the stream, as the carrier would) and the runtime's public URL (what the server
checks signatures against), so a test never meets a 403 for a mismatched URL.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ..interface import CallInterface
from ..server import AgentRuntime
from .plivo_caller import PlivoCaller
from .relay_caller import RelayCaller
from .server import serve_runtime
from .twilio_caller import TwilioCaller

__all__ = ["ServedApp", "serve_app"]

LOOPBACK_PUBLIC_URL = "http://127.0.0.1"
"""The public URL given to a runtime built from bare interfaces."""


class ServedApp:
    """A runtime served on loopback (see module docs). ``url``: where it listens;
    ``calls``: ``(call, session, timeline)`` for every call it accepted, in order."""

    def __init__(self, runtime: AgentRuntime, url: str) -> None:
        self.runtime = runtime
        self.url = url
        self.calls: deque[tuple[Any, Any, Any]] = deque(maxlen=1000)

    def line(self, carrier: str | None = None, pipeline: str | None = None) -> CallInterface:
        """The app's interface for ``carrier``/``pipeline`` (the only one, when not given)."""
        found = [
            i
            for i in self.runtime.interfaces
            if (carrier is None or i.telephony == carrier)
            and (pipeline is None or i.pipeline == pipeline)
        ]
        if not found:
            raise LookupError(
                f"the app has no line for telephony={carrier!r}, pipeline={pipeline!r}; it has "
                + ", ".join(
                    f"{i.telephony}/{i.pipeline} {i.phone_number}" for i in self.runtime.interfaces
                )
            )
        return found[0]

    def _public(self) -> str | None:
        return self.runtime.public_url

    def twilio_caller(self, line: CallInterface | None = None, **options: Any) -> TwilioCaller:
        """A Media Streams caller for the app's (or ``line``'s) Twilio number."""
        iface = line or self.line("twilio")
        options.setdefault("to", iface.phone_number)
        options.setdefault("account_sid", iface.account_id)
        options.setdefault("public_url", self._public())
        return TwilioCaller(self.url, iface.auth_token, **options)

    def relay_caller(self, line: CallInterface | None = None, **options: Any) -> RelayCaller:
        """A ConversationRelay caller for the app's (or ``line``'s) managed Twilio number."""
        iface = line or self.line("twilio", "managed")
        options.setdefault("to", iface.phone_number)
        options.setdefault("account_sid", iface.account_id)
        options.setdefault("public_url", self._public())
        return RelayCaller(self.url, iface.auth_token, **options)

    def plivo_caller(self, line: CallInterface | None = None, **options: Any) -> PlivoCaller:
        """An Audio Streams caller for the app's (or ``line``'s) Plivo number."""
        iface = line or self.line("plivo")
        options.setdefault("to", iface.phone_number.lstrip("+"))
        options.setdefault("auth_id", iface.account_id)
        options.setdefault("public_url", self._public())
        return PlivoCaller(self.url, iface.auth_token, **options)

    def caller(self, line: CallInterface | None = None, **options: Any) -> Any:
        """The right simulated caller for ``line`` (default: the app's only line)."""
        iface = line or self.line()
        if iface.telephony == "plivo":
            return self.plivo_caller(iface, **options)
        if iface.pipeline == "managed":
            options.pop("playback_rate", None)  # text only: nothing is played
            return self.relay_caller(iface, **options)
        return self.twilio_caller(iface, **options)


@asynccontextmanager
async def serve_app(
    app: AgentRuntime | CallInterface | Sequence[CallInterface], **runtime_options: Any
) -> AsyncIterator[ServedApp]:
    """Serve ``app`` on 127.0.0.1 (ephemeral port) for the block; yields a :class:`ServedApp`.

    ``app``: an :class:`AgentRuntime` (served as it is; its ``on_call`` hook still runs), or
    interfaces, for which a runtime is built with ``public_url="http://127.0.0.1"`` and
    ``runtime_options``. Leaving the block shuts the runtime down (drain, then cancel)."""
    if isinstance(app, CallInterface):
        app = [app]
    if not isinstance(app, AgentRuntime):
        runtime_options.setdefault("public_url", LOOPBACK_PUBLIC_URL)
        runtime_options.setdefault("drain_timeout", 2.0)
        app = AgentRuntime(list(app), **runtime_options)
    elif runtime_options:
        raise TypeError("runtime options apply only when serve_app builds the runtime")
    runtime = app
    served = ServedApp(runtime, "")
    user_hook = runtime.on_call

    def on_call(call: Any, session: Any, timeline: Any) -> None:
        served.calls.append((call, session, timeline))
        if user_hook is not None:
            user_hook(call, session, timeline)

    runtime.on_call = on_call
    try:
        async with serve_runtime(runtime) as url:
            served.url = url
            yield served
    finally:
        runtime.on_call = user_hook
