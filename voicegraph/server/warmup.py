"""Import, before the first call, what calls import on first use (and build the TLS contexts).

Many modules load lazily so that ``import voicegraph`` stays light: the web framework behind the
webhooks, the presets, the audio nodes (soxr, WebRTC VAD), httpx's connection core, the
WebSocket client library. Left lazy in a server, the first call pays for them *inside the event
loop*: 0.1-0.5 s of imports during which every other live call's audio waits.
:func:`warm` imports them when the runtime starts serving (:func:`~voicegraph.server.lifecycle.serve`
before it accepts, and the ASGI lifespan when the app is mounted elsewhere). It also checks that
each agent's LLM client can run on the running event loop (:func:`check_clients`), so that a
client library the backend cannot run fails at start rather than in a live call.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ..backends import current_backend

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime

__all__ = ["agent_llms", "check_clients", "close_clients", "warm", "warm_modules"]

_ALWAYS = (
    "voicegraph.dialogue",
    "voicegraph.presets",
    "voicegraph.nodes.audio.vad",
    "voicegraph.nodes.audio.analysers",
    "voicegraph.nodes.audio.resample",
    "voicegraph.nodes.audio.playout",
    "voicegraph.nodes.conversation",
    "httpcore",  # httpx imports it at its first client (the LLM's first request)
    "encodings.idna",  # a host name's first encoding (httpx, socket connect)
)
_CARRIERS = {"twilio": "voicegraph.transports.twilio", "plivo": "voicegraph.transports.plivo"}
_BACKEND = {
    "asyncio": ("quart",),
    "trio": ("quart", "quart_trio", "trio_websocket"),
}
_ASYNCIO_CLIENT = {"picows": "voicegraph._picows", "websockets": "websockets.asyncio.client"}
_OPTIONAL = ("webrtcvad",)  # the WebRTC analyser's library, when installed


def warm_modules(runtime: AgentRuntime, backend: str | None = None) -> list[str]:
    """The modules :func:`warm` imports for ``runtime`` on ``backend`` (default: the running one)."""
    names = list(_ALWAYS)
    names += sorted(
        {_CARRIERS[i.telephony] for i in runtime.interfaces if i.telephony in _CARRIERS}
    )
    backend = backend or current_backend()
    names += _BACKEND[backend]
    if backend == "asyncio":
        from ..nodes.llm._http import DEFAULT_HTTP_ENGINE
        from ..wsio import DEFAULT_ENGINE

        names.append(_ASYNCIO_CLIENT[DEFAULT_ENGINE])  # the provider sockets' client
        if DEFAULT_HTTP_ENGINE == "aiohttp" or any(
            getattr(llm, "engine", None) == "aiohttp" for llm in agent_llms(runtime)
        ):
            names.append("aiohttp")  # the LLM's HTTP client
    names += [n for n in _OPTIONAL if importlib.util.find_spec(n) is not None]
    return names


def warm(runtime: AgentRuntime) -> None:
    """Import :func:`warm_modules` now (once per process; later calls cost a dict lookup each)."""
    for name in warm_modules(runtime):
        importlib.import_module(name)
    # The process's shared TLS contexts: loading the CA certificates is 20-70 ms of CPU
    from ..nodes.llm import openai_chat
    from ..wsio import tls_context

    tls_context()
    openai_chat._tls_context()
    check_clients(runtime)


def agent_llms(runtime: AgentRuntime) -> list[Any]:
    """The LLM clients of ``runtime``'s agents, each once (calls share their line's client)."""
    out: list[Any] = []
    for iface in runtime.interfaces:
        llm = getattr(iface.agent, "llm", None)
        if llm is not None and all(llm is not seen for seen in out):
            out.append(llm)
    return out


def check_clients(runtime: AgentRuntime) -> None:
    """Raise if an agent's LLM client cannot run on the running backend (its
    ``check_backend(backend)``, where it has one)."""
    backend = current_backend()
    for llm in agent_llms(runtime):
        check = getattr(llm, "check_backend", None)
        if callable(check):
            check(backend)


async def close_clients(runtime: AgentRuntime) -> None:
    """Close the agents' LLM clients' connection pools (their ``aclose()``), as the runtime
    stops."""
    for llm in agent_llms(runtime):
        aclose = getattr(llm, "aclose", None)
        if callable(aclose):
            await aclose()
