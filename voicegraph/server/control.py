"""HTTP routes of :class:`~voicegraph.server.AgentRuntime` beside the carrier webhooks.

* ``GET /healthz`` -- 200 while the process serves (liveness: restart it when this fails).
* ``GET /readyz`` -- 200 when it takes new calls: not draining, and its call state answers;
  503 otherwise (readiness: send it no new calls).
* ``POST /calls/<call_id>/hangup`` and ``POST /calls/<call_id>/transfer`` (JSON body
  ``{"to": "+15551234567"}``) -- external call control, only when the runtime has a
  ``control_token``; the request needs ``Authorization: Bearer <control_token>``. It may arrive
  at any instance: the message goes through the call state to the worker holding the call.
  Answers 202 (delivered to the holder), 404 (no live call with that id), 400, 401, 503.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from .cluster import E164
from .state import StateUnavailable

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime

__all__ = ["CONTROL_PREFIX", "HEALTH_PATH", "READY_PATH", "add_routes", "reserved_path"]

logger = logging.getLogger("voicegraph.server")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
CONTROL_PREFIX = "/calls/"
ACTIONS = ("hangup", "transfer")


def reserved_path(path: str) -> bool:
    """Whether a webhook or stream path would collide with these routes."""
    return path in (HEALTH_PATH, READY_PATH) or path.startswith(CONTROL_PREFIX)


def add_routes(quart: Any, runtime: AgentRuntime) -> None:
    """Add the health, readiness and (with a control token) call-control routes."""
    from quart import Response, request

    def answer(status: int, body: dict[str, Any]) -> Response:
        return Response(msgspec.json.encode(body), status=status, content_type="application/json")

    async def healthz() -> Response:
        return answer(200, {"status": "ok", "worker": runtime.state.worker_id})

    async def readyz() -> Response:
        if runtime.draining:
            return answer(503, {"status": "draining"})
        try:
            await runtime.state.ping()
        except StateUnavailable as exc:
            logger.warning("not ready: %s", exc)
            return answer(503, {"status": "call state unreachable"})
        return answer(200, {"status": "ready", "calls": len(runtime.calls)})

    async def control(call_id: str, action: str) -> Response:
        token = runtime.control_token
        given = request.headers.get("Authorization", "")
        if token is None or not hmac.compare_digest(
            given.encode("utf-8", "replace"), f"Bearer {token}".encode()
        ):
            return Response(
                "unauthorised", 401, {"WWW-Authenticate": "Bearer"}, content_type="text/plain"
            )
        if action not in ACTIONS:
            return answer(404, {"error": f"unknown action; use one of {', '.join(ACTIONS)}"})
        if not call_id or len(call_id) > 64 or not call_id.replace("-", "").isalnum():
            return answer(400, {"error": "malformed call id"})
        message: dict[str, Any] = {"type": action}
        if action == "transfer":
            body = await request.get_json(force=True, silent=True)
            number = body.get("to") if isinstance(body, dict) else None
            if not isinstance(number, str) or not E164.fullmatch(number):
                return answer(400, {"error": 'body must be JSON {"to": "+15551234567"}'})
            message["to"] = number
        try:
            delivered = await runtime.state.publish(call_id, message)
        except StateUnavailable as exc:
            logger.error("[%s] %s request failed: %s", call_id, action, exc)
            return answer(503, {"error": "call state unreachable"})
        if not delivered:
            return answer(404, {"error": "no live call with this id"})
        logger.info("[%s] %s request delivered", call_id, action)
        return answer(202, {"call_id": call_id, "action": action, "delivered": True})

    quart.add_url_rule(HEALTH_PATH, "healthz", healthz, methods=["GET"])
    quart.add_url_rule(READY_PATH, "readyz", readyz, methods=["GET"])
    if runtime.control_token is not None:
        quart.add_url_rule(
            CONTROL_PREFIX + "<call_id>/<action>", "call_control", control, methods=["POST"]
        )
