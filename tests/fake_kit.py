"""For the fakes' own tests: the engines a fake is served by, and a raw WebSocket handshake that
reads back a refusal's status, headers and body (a WebSocket client reports the status only)."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import h11

ENGINES = ("hypercorn", "picows")
"""For tests of a fake's wire: ``@pytest.mark.parametrize("engine", ENGINES)`` (asyncio)."""


class Refusal:
    """A refused handshake as the client read it (header names lower-case)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


async def refused_handshake(ws_url: str, target: str, headers: Mapping[str, str]) -> Refusal:
    """Send a WebSocket upgrade for ``target`` (path and query) with ``headers`` to the server
    at ``ws_url`` and read its answer, which must be a refusal."""
    host, port = ws_url.removeprefix("ws://").rsplit(":", 1)
    conn = h11.Connection(h11.CLIENT)
    upgrade = {
        "host": f"{host}:{port}",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
        **headers,
    }
    request = h11.Request(method="GET", target=target, headers=list(upgrade.items()))
    status, got, body = 0, {}, bytearray()
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(conn.send(request) + conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        conn.receive_data(b"")
                elif isinstance(event, h11.InformationalResponse):
                    raise AssertionError(f"the handshake was not refused: {event.status_code}")
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    got = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return Refusal(status, got, bytes(body))
