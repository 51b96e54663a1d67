"""``Observability``: what :class:`~voicegraph.server.AgentRuntime` plugs in to be seen.

The runtime calls three things: :meth:`Observability.call_started` for each accepted call
(after its timeline is attached; the returned handle's ``ended`` when it is over),
:meth:`Observability.asgi` for HTTP requests to the metrics path, and :meth:`Observability.run`
as a background task of the server (the loop-lag monitor and periodic metric refresh). Each
part is optional and imports its library only when configured.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from .looplag import LoopLag

__all__ = ["CallObservation", "Observability", "ObservabilityError"]

logger = logging.getLogger("voicegraph.observability")

REFRESH_INTERVAL = 5.0


class ObservabilityError(ValueError):
    """The observability options cannot work (the message says what to change)."""


class CallObservation:
    """The observers of one call; :meth:`ended` once the call is over (idempotent)."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def ended(self, reason: str | None) -> None:
        """``reason``: the call's ``CallResult.reason``, ``None`` if it was cancelled."""
        for part in self.parts:
            try:
                part.ended(reason)
            except Exception as exc:  # an observer must never break the call's teardown
                logger.error("observer failed at call end: %s", exc, exc_info=exc)


class Observability:
    """Metrics, traces and the event-loop lag monitor of one runtime.

    ``metrics``: a :class:`~voicegraph.observability.prometheus.Metrics` (serves ``/metrics``;
    off when ``None``). ``tracing``: a :class:`~voicegraph.observability.otel.Tracing`.
    ``loop_lag``: a :class:`~voicegraph.observability.looplag.LoopLag` (default: one with a
    100 ms threshold; ``False`` turns it off). ::

        from voicegraph.observability import LoopLag, Metrics, Observability, Tracing

        observability = Observability(
            metrics=Metrics("/metrics", bearer_token="a-long-random-scrape-token"),
            tracing=Tracing(),
            loop_lag=LoopLag(threshold=0.1),
        )
        # AgentRuntime([...], public_url=..., observability=observability)
    """

    def __init__(
        self,
        *,
        metrics: Any = None,
        tracing: Any = None,
        loop_lag: LoopLag | bool | None = None,
    ) -> None:
        from .otel import Tracing
        from .prometheus import Metrics

        if metrics is not None and not isinstance(metrics, Metrics):
            raise ObservabilityError("metrics= takes voicegraph.observability.Metrics(...)")
        if tracing is not None and not isinstance(tracing, Tracing):
            raise ObservabilityError("tracing= takes voicegraph.observability.Tracing(...)")
        if loop_lag is None or loop_lag is True:
            loop_lag = LoopLag()
        elif loop_lag is not False and not isinstance(loop_lag, LoopLag):
            raise ObservabilityError("loop_lag= takes LoopLag(...), True or False")
        self.metrics = metrics
        self.tracing = tracing
        self.loop_lag: LoopLag | None = loop_lag or None
        if self.loop_lag is not None and metrics is not None:
            self.loop_lag.on_sample.append(metrics.on_lag)

    def __repr__(self) -> str:
        return (
            f"Observability(metrics={self.metrics!r}, tracing={self.tracing!r}, "
            f"loop_lag={self.loop_lag!r})"
        )

    # ------------------------------------------------------------------ calls

    def call_started(self, call: Any, session: Any, timeline: Any) -> CallObservation:
        """Start observing ``call`` (built, not yet running)."""
        parts: list[Any] = []
        try:
            if self.metrics is not None:
                carrier = str(getattr(session, "carrier", "") or "unknown")
                mode = str(getattr(session, "mode", "") or "unknown")
                parts.append(self.metrics.call_started(call, carrier, mode, timeline))
            if self.tracing is not None:
                parts.append(self.tracing.call_started(call, session, timeline))
        except Exception as exc:  # the call goes on unobserved rather than not at all
            logger.error("observing call %s failed: %s", call.call_id, exc, exc_info=exc)
        return CallObservation(parts)

    # ------------------------------------------------------------------- HTTP

    def handles(self, scope: dict[str, Any]) -> bool:
        """Whether an ASGI request is for the metrics route."""
        return (
            self.metrics is not None
            and scope.get("type") == "http"
            and scope.get("path") == self.metrics.path
        )

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve the metrics route (GET or HEAD; bearer token checked when configured)."""
        assert self.metrics is not None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope.get("method") not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain", b"use GET"
        elif not self.metrics.authorised(headers.get("authorization")):
            status, ctype, body = 401, "text/plain", b"missing or wrong bearer token"
        else:
            status = 200
            body, ctype = self.metrics.render(headers.get("accept", ""))
        response = [(b"content-type", ctype.encode())]
        if status == 401:
            response.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": response})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    # ------------------------------------------------------------- background

    async def run(self, runtime: Any, stop: anyio.Event | None = None) -> None:
        """Run the loop-lag monitor (naming ``runtime.calls``) and a periodic refresh of the
        metrics that are sampled rather than evented (dropped frames). Returns once ``stop``
        is set and the runtime has no call left (it keeps watching while calls drain); without
        ``stop``, runs until cancelled."""
        async with anyio.create_task_group() as tg:
            if self.loop_lag is not None:
                tg.start_soon(self.loop_lag.run, lambda: list(runtime.calls))
            if self.metrics is not None:
                tg.start_soon(self._refresh)
            if stop is None:
                await anyio.sleep_forever()
            else:
                await stop.wait()
                # poll: the runtime's call table is all its public surface says about drains
                while runtime.calls:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            tg.cancel_scope.cancel()

    async def _refresh(self) -> None:
        assert self.metrics is not None
        while True:
            await anyio.sleep(REFRESH_INTERVAL)
            self.metrics.refresh()
