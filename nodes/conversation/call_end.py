"""The end of a call: :class:`CallEnd` stops the call on a ``Hangup`` from the caller's side, and
from the agent's side hangs up through the carrier's REST API first."""

from __future__ import annotations

from typing import Any

from voicegraph.frames import (
    Frame,
    Hangup,
)
from voicegraph.node import Actor, In

__all__ = ["CallEnd"]


class CallEnd(Actor):
    """Ends the call on a ``Hangup``: from the caller's side (``caller``: the carrier says the
    caller left) it just stops the call; from the agent's side (``agent``: the goodbye was
    heard) it first ends the call through ``hangup`` (the carrier's REST API), if given."""

    inputs = (In("caller", Hangup, required=False), In("agent", Hangup, required=False))

    def __init__(self, hangup: Any = None) -> None:
        super().__init__()
        self.hangup = hangup

    async def handle(self, port: str, frame: Frame) -> None:
        reason = getattr(frame, "reason", "") or port
        if port == "agent" and self.hangup is not None:
            try:
                await self.hangup()
            except Exception as exc:
                self.log.error("REST hang-up failed: %s", exc)
        if self.call is not None:
            self.call.stop(f"hangup: {reason}")
