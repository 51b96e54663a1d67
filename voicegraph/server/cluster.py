"""Where :class:`~voicegraph.server.AgentRuntime` meets its call state
(:mod:`voicegraph.server.state`): admission at the webhook, single-use token redemption and the call
registry at the stream, the ASGI lifespan that runs the state's background work, and the
handlers of messages about a call (external hang-up, transfer; more can be added to
``runtime.call_handlers``).

An unreachable shared state refuses *new* calls (webhook 503, stream closed) with an error log;
calls already running never depend on it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from .gc_policy import held
from .state import CallRecord, StateUnavailable
from .stream_token import StreamTokenError
from .warmup import close_clients, warm

if TYPE_CHECKING:
    from ..interface import CallInterface
    from ..session import CallSession
    from .agent_runtime import AgentRuntime

__all__ = [
    "CallHandler",
    "admit_call",
    "background",
    "default_handlers",
    "deliver",
    "redeem_stream_token",
    "register_call",
    "release_call",
    "run_lifespan",
]

logger = logging.getLogger("voicegraph.server")

CallHandler = Callable[["AgentRuntime", str, dict[str, Any]], Awaitable[None]]
"""``handler(runtime, call_id, message)``: runs on the worker holding the call."""

E164 = re.compile(r"\+[1-9][0-9]{7,14}")


async def admit_call(runtime: AgentRuntime, call_id: str, iface: CallInterface) -> str | None:
    """Hold a place for a call the webhook is about to answer; the refusal text, or None."""
    try:
        ok = await runtime.state.admit(call_id, runtime.max_calls, iface.stream_token_ttl)
    except StateUnavailable as exc:
        logger.error("[%s] webhook refused, call state unreachable: %s", call_id, exc)
        return "call state unavailable; not taking new calls"
    if not ok:
        scope = "across instances" if runtime.state.shared else "in this process"
        logger.warning("[%s] webhook refused: max_calls=%d %s", call_id, runtime.max_calls, scope)
        return "at capacity; not taking new calls"
    return None


async def redeem_stream_token(
    runtime: AgentRuntime, iface: CallInterface, token: str | None, call_id: str, bound: str
) -> None:
    """Check a stream token and redeem it once (in the state); ``StreamTokenError`` otherwise."""
    nonce, expiry = runtime.tokens[id(iface)].verify(token, call_id, bound)
    try:
        fresh = await runtime.state.redeem_token(nonce, expiry)
    except StateUnavailable as exc:
        raise StreamTokenError(f"single use cannot be checked: {exc}") from None
    if not fresh:
        raise StreamTokenError("stream token was already used")


async def register_call(runtime: AgentRuntime, session: CallSession) -> None:
    """Record that this worker holds the call (a failure is logged; the call goes on and the
    state's heartbeat registers it once the store is back)."""
    record = CallRecord(
        session.call_id,
        runtime.state.worker_id,
        line=getattr(session.interface, "line", ""),
        started_at=time.time(),
    )
    try:
        await runtime.state.register(record)
    except StateUnavailable as exc:
        logger.warning("[%s] call not registered yet: %s", session.call_id, exc)


async def release_call(runtime: AgentRuntime, call_id: str) -> None:
    """Forget an ended call (shielded, bounded; on failure its registration expires)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
        try:
            await runtime.state.release(call_id)
        except StateUnavailable as exc:
            logger.warning("[%s] release failed (its place expires): %s", call_id, exc)


async def run_lifespan(
    runtime: AgentRuntime, app: Any, scope: dict[str, Any], receive: Any, send: Any
) -> None:
    """The ASGI lifespan: run the runtime's background work while ``app`` (Quart) handles the
    startup and shutdown messages."""
    async with background(runtime):
        await app(scope, receive, send)


@asynccontextmanager
async def background(runtime: AgentRuntime) -> AsyncIterator[None]:
    """Run the runtime's background work while the block runs: the call state's (its channel's
    dispatcher; with Redis, the heartbeat and the subscription) and the observability loop
    (loop-lag monitor, sampled metrics). Each runs once per runtime: an entry while it already
    runs (the runtime's own ASGI lifespan and a FastAPI lifespan, say) adds nothing. Enter and
    leave it in one task, as a lifespan does."""
    warm(runtime)  # mounted in another server, the lifespan is the first moment to do it
    clients = not runtime._running.get("clients")
    runtime._running["clients"] = True
    state = not runtime._running.get("state")
    obs = runtime.observability is not None and not runtime._running.get("observability")
    try:
        async with anyio.create_task_group() as tg:
            if state:
                runtime._running["state"] = True
                await tg.start(partial(runtime.state.run, partial(deliver, runtime)))
            if obs:
                runtime._running["observability"] = True
                tg.start_soon(runtime.observability.run, runtime)
            # after warm(): what start-up built is frozen with the modules
            with held(runtime.gc_policy):
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
                if state:
                    runtime._running["state"] = False
                if obs:
                    runtime._running["observability"] = False
    finally:
        if clients:  # the outermost entry: the calls are over
            runtime._running["clients"] = False
            with anyio.CancelScope(shield=True):
                await close_clients(runtime)


async def deliver(runtime: AgentRuntime, call_id: str, message: dict[str, Any]) -> None:
    """Pass a message about a call held here to the handler its ``type`` names."""
    kind = message.get("type")
    handler = runtime.call_handlers.get(kind) if isinstance(kind, str) else None
    if handler is None:
        logger.warning("[%s] message of unknown type %r dropped", call_id, kind)
        return
    await handler(runtime, call_id, message)


async def hangup_handler(runtime: AgentRuntime, call_id: str, message: dict[str, Any]) -> None:
    """``{"type": "hangup"}``: end the call now and hang it up at the carrier."""
    call, session = runtime.calls.get(call_id), runtime.sessions.get(call_id)
    if call is None:
        logger.info("[%s] hang-up requested for a call that already ended", call_id)
        return
    logger.info("[%s] hang-up requested", call_id)
    call.stop("hangup requested")
    if session is not None and session.hangup is not None:
        await session.hangup()


async def transfer_handler(runtime: AgentRuntime, call_id: str, message: dict[str, Any]) -> None:
    """``{"type": "transfer", "to": "+15551234567"}``: transfer the call (Twilio)."""
    session = runtime.sessions.get(call_id)
    number = message.get("to")
    if session is None:
        logger.info("[%s] transfer requested for a call that already ended", call_id)
    elif not isinstance(number, str) or not E164.fullmatch(number):
        logger.warning("[%s] transfer refused: 'to' is not an E.164 number", call_id)
    elif session.transfer is None:
        logger.warning(
            "[%s] transfer refused: %s calls cannot be transferred", call_id, session.carrier
        )
    else:
        logger.info("[%s] transfer to %s requested", call_id, number)
        await session.transfer(number)


def default_handlers() -> dict[str, CallHandler]:
    """The message types every runtime handles."""
    from .reports import handlers

    return {"hangup": hangup_handler, "transfer": transfer_handler, **handlers()}
