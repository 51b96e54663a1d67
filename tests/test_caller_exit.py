"""Leaving a simulated call always returns, even when the server stopped reading so the
caller's goodbye cannot be sent (the exit's hang-up is shielded, so it must be bounded)."""

from __future__ import annotations

import anyio
import pytest

from voicegraph.testing.twilio_caller import TwilioCall


class StuckSocket:
    """A server end that takes ``readable`` messages and then never reads again: every later
    send blocks (its receive window stays full)."""

    def __init__(self, readable: int) -> None:
        self.readable = readable
        self.sent: list[str | bytes] = []
        self.closed = anyio.Event()

    async def send(self, message: str | bytes) -> None:
        if len(self.sent) >= self.readable:
            await anyio.sleep_forever()
        self.sent.append(message)

    async def receive(self) -> str | bytes:
        await self.closed.wait()
        from voicegraph.wsio import SocketClosed

        raise SocketClosed(1000, "closed")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed.set()


@pytest.mark.anyio
async def test_leaving_a_call_returns_when_the_server_stopped_reading() -> None:
    sock = StuckSocket(readable=2)  # "connected" and "start" go through, "stop" never does
    call = TwilioCall(sock, call_sid="CA1", account_sid="AC1", custom_parameters={})
    with anyio.fail_after(30):  # a safety net: before the fix this waited forever
        async with call.running():
            pass
    assert sock.closed.is_set() and len(sock.sent) == 2
