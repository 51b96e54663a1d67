"""Observers must never break a call: a failing callback is logged, not raised into the node
that published the event."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("voicegraph.observability")


def guarded(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    """``fn`` wrapped so that an exception is logged (with its traceback) and swallowed."""

    def call(arg: Any) -> None:
        try:
            fn(arg)
        except Exception as exc:
            logger.error(
                "observer %s failed: %s", getattr(fn, "__qualname__", fn), exc, exc_info=exc
            )

    return call
