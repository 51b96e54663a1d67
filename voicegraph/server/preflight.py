"""Start-up checks: refuse, before serving, a configuration that would fail on every call.

:class:`~voicegraph.interface.CallInterface` validates each option when it is built, but some
mistakes only show when a call's graph is put together: a provider class whose API key is not
in the environment, a realtime voice the model does not have, an agent that cannot respond, the
WebRTC VAD not installed. Left alone, each of these lets the server start and then fails every
call with the caller hearing nothing. :func:`check_runtime` builds, for each line, the providers
and the preset graph of one call around placeholder carrier nodes -- no socket is opened, no
provider contacted -- and raises :class:`PreflightError` with one sentence naming the line, the
parameter and what to change. :class:`~voicegraph.server.AgentRuntime` runs it when it is built.

Interfaces with their own ``graph=`` factory are checked for their providers only: the factory
is user code and runs per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..frames import AudioFormat
from ..interface import CallInterface, CallInterfaceError

__all__ = ["PreflightError", "check_interface", "check_runtime"]

_PLIVO_FORMATS = {
    "audio/x-l16;rate=16000": AudioFormat("pcm16", 16000),
    "audio/x-l16;rate=8000": AudioFormat("pcm16", 8000),
    "audio/x-mulaw;rate=8000": AudioFormat("mulaw", 8000),
}


class PreflightError(CallInterfaceError):
    """A line's configuration would fail every call; the message names the parameter and says
    what to change."""


def check_runtime(runtime: Any) -> None:
    """Check every interface of ``runtime`` (see :func:`check_interface`)."""
    for iface in runtime.interfaces:
        check_interface(iface)


def check_interface(iface: CallInterface) -> None:
    """Build ``iface``'s providers and one call's preset graph offline; raise
    :class:`PreflightError` if a call could not start. Opens no socket."""
    where = f"line {iface.phone_number}"
    for name, make in (
        ("stt", iface.new_stt),
        ("tts", iface.new_tts),
        ("realtime", iface.new_realtime),
    ):
        _build(where, name, getattr(iface, name), make)
    agent = _build(where, "agent", iface.agent, iface.new_agent)
    if agent is not None and not callable(getattr(agent, "respond", None)):
        raise PreflightError(
            f"{where}: agent={_show(iface.agent)} has no respond(turn) method; pass "
            "agent=Agent('your instructions', llm=OpenAIChatLLM(...)) or an object with an "
            "async-generator respond(turn)"
        )
    if iface.graph_factory is not None:
        return
    if agent is None:
        raise PreflightError(
            f"{where}: pipeline={iface.pipeline!r} needs agent=; pass "
            "agent=Agent('your instructions', llm=OpenAIChatLLM(...))"
        )
    if iface.pipeline != "realtime" and getattr(agent, "llm", True) is None:
        raise PreflightError(
            f"{where}: agent=Agent(...) has no llm, and pipeline={iface.pipeline!r} needs one to "
            "answer; pass Agent(..., llm=OpenAIChatLLM(...)) (only realtime mode runs without)"
        )
    try:
        _dry_graph(iface).validate()
    except ImportError as exc:
        hint = "pip install 'voicegraph[vad]'" if "webrtcvad" in str(exc) else str(exc)
        raise PreflightError(
            f"{where}: pipeline={iface.pipeline!r} needs a module that is not installed "
            f"({exc.name or exc}); install it: {hint}"
        ) from exc
    except (ValueError, TypeError, LookupError) as exc:
        raise PreflightError(f"{where}: a call's graph cannot be built: {exc}") from exc


def _build(where: str, name: str, given: Any, make: Callable[[], Any]) -> Any:
    """One per-call object as a call would get it, with its failure as one sentence."""
    if given is None:
        return None
    from ..nodes.providers.secret import MissingSecret

    try:
        return make()
    except MissingSecret as exc:
        raise PreflightError(f"{where}: {name}={_show(given)} has no API key: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise PreflightError(f"{where}: {name}={_show(given)} cannot be built: {exc}") from exc


def _show(value: Any) -> str:
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, str):
        return repr(value[:40])
    return f"{type(value).__name__}(...)"


def _dry_graph(iface: CallInterface) -> Any:
    """One call's preset graph around stand-in carrier nodes (an in-memory socket)."""
    from ..presets import build_for_session, stand_in_carrier
    from ..session import CallSession

    plivo_format = _PLIVO_FORMATS[iface.plivo_content_type]
    cin, cout, fmt = stand_in_carrier(iface.pipeline, iface.telephony, plivo_format)

    async def no_hangup() -> None:  # never called: the graph is built, not run
        return None

    session = CallSession(
        call_id="preflight",
        carrier=iface.telephony,
        mode=iface.pipeline,
        stream_id="preflight",
        carrier_in=cin,
        carrier_out=cout,
        audio_format=fmt,
        interface=iface,
        hangup=no_hangup,
    )
    return build_for_session(session)
