"""The server side of voicegraph: one ASGI application that answers carrier webhooks, accepts
carrier media streams and runs one call graph per stream.

:class:`AgentRuntime` (in :mod:`.agent_runtime`) is the public face; the rest of the package is
its machinery: the ASGI app's routing (:mod:`.app`), the call webhook (:mod:`.webhook`), carrier
streams and socket adapters (:mod:`.carriers`, :mod:`.carrier_routes`), polite endings
(:mod:`.goodbye`), serving and draining (:mod:`.lifecycle`), webhook answers
(:mod:`.answer`), request signatures (:mod:`.signatures`), stream tokens (:mod:`.stream_token`),
the Hypercorn bridge (:mod:`.asgi`), the carrier streams' own listener (:mod:`.media`), shared call state (:mod:`.state`, :mod:`.cluster`), the
control channel (:mod:`.control`), outbound calls and status callbacks (:mod:`.outbound`,
:mod:`.status`), transfers (:mod:`.transfer`), start-up checks (:mod:`.preflight`) and worker
processes (:mod:`.workers`). Names are imported lazily, so importing one helper (a signature
check, say) does not build the whole server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voicegraph._lazy import lazy_exports

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime, AgentRuntimeError
    from .gc_policy import GcPolicy
    from .media import MediaListener, MediaListenerError

_LAZY: dict[str, str] = {
    "AgentRuntime": ".agent_runtime",
    "AgentRuntimeError": ".agent_runtime",
    "GcPolicy": ".gc_policy",
    "MediaListener": ".media",
    "MediaListenerError": ".media",
}

__all__ = ["AgentRuntime", "AgentRuntimeError", "GcPolicy", "MediaListener", "MediaListenerError"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
