"""The HTTP side of :class:`~voicegraph.testing.fakeserver.FakeServer` (Hypercorn's ASGI
messages): the request a fake's ``http`` method gets and the response it writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

import anyio

__all__ = ["HTTPRequest", "HTTPResponse"]

_Scope = dict[str, Any]


def _headers(scope: _Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _raw_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[list[bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [[k.encode("latin-1"), v.encode("latin-1")] for k, v in items]


class HTTPRequest:
    """One HTTP request: ``method``, ``path``, ``query``, ``headers`` (lower-case), ``body``,
    and ``client``: the client's ``(host, port)``, one port per connection (``None`` if the
    server did not say)."""

    def __init__(self, scope: _Scope, body: bytes) -> None:
        peer = scope.get("client")
        self.client: tuple[str, int] | None = (str(peer[0]), int(peer[1])) if peer else None
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        self.headers = _headers(scope)
        self.body = body


class HTTPResponse:
    """Writes one HTTP response, whole (:meth:`send_json`, :meth:`send_text`) or streamed
    (:meth:`start`, then :meth:`write` for each chunk, then :meth:`end`)."""

    def __init__(self, send: Any, receive: Any = None) -> None:
        self._send = send
        self._receive = receive
        self.started = False
        self.ended = False

    async def wait_disconnected(self) -> None:
        """Return once the client has closed the connection (to stop streaming to nobody:
        the server silently discards writes after a disconnect)."""
        if self._receive is None:
            await anyio.sleep_forever()
        while (await self._receive())["type"] != "http.disconnect":
            pass

    async def start(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        self.started = True
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": _raw_headers(headers or {}),
            }
        )

    async def write(self, chunk: bytes | str) -> None:
        data = chunk.encode() if isinstance(chunk, str) else chunk
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        if not self.ended:
            self.ended = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send_text(
        self, status: int, body: str | bytes, content_type: str = "text/plain"
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        await self.start(status, {"content-type": content_type, "content-length": str(len(data))})
        self.ended = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def send_json(self, status: int, body: bytes) -> None:
        """Send ``body`` (already-encoded JSON, e.g. ``msgspec.json.encode(...)``)."""
        await self.send_text(status, body, "application/json")
