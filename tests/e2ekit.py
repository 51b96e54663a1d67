"""Helpers for end-to-end tests: synthesised caller speech and a served runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from voicegraph import AgentRuntime, CallInterface
from voicegraph.testing.server import serve_runtime
from voicegraph.testing.speech import caller_speech

PUBLIC = "http://127.0.0.1"
TOKEN = "test-auth-token"
NUMBER = "+14155550199"


def speech(text: str, rate: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng, as int16 samples at ``rate`` (the kit's caller_speech)."""
    return caller_speech(text, rate)


def interface(carrier: str, **kw: Any) -> CallInterface:
    creds = {"auth_id": "MA" + "X" * 18} if carrier == "plivo" else {"account_sid": "AC" + "0" * 32}
    return CallInterface(telephony=carrier, phone_number=NUMBER, auth_token=TOKEN, **creds, **kw)


@asynccontextmanager
async def served(iface: CallInterface, **kw: Any) -> AsyncIterator[tuple[str, list[Any]]]:
    """Serve one interface on loopback; yields the base URL and a list that receives
    ``(call, session, timeline)`` for every call."""
    seen: list[Any] = []
    runtime = AgentRuntime([iface], public_url=PUBLIC, on_call=lambda *a: seen.append(a), **kw)
    async with serve_runtime(runtime) as url:
        yield url, seen
