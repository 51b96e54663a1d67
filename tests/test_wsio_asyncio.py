"""The asyncio provider-socket clients (picows, the default, and ``websockets``) against a
``websockets`` server, which shows what FakeServer cannot: fragmented messages, the close code
the peer saw, pings, TLS with SNI and host name checks, a peer that never answers. And how the
client library is chosen: explicitly, never by falling back."""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from voicegraph import wsio
from voicegraph.wsio import (
    SocketClosed,
    WebSocketEngineError,
    check_engine,
    connect_websocket,
    engine_from_env,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["picows", "websockets"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Handler = Callable[[Any], Awaitable[None]]


@asynccontextmanager
async def peer(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A ``websockets`` server on 127.0.0.1 running ``handler`` per connection; yields its port."""
    from websockets.asyncio.server import serve

    async with serve(handler, "127.0.0.1", 0, ssl=tls, compression=None) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def test_fragmented_messages_arrive_whole(engine: str) -> None:
    async def fragments(ws: Any) -> None:
        await ws.send(["frag", "mented ", "text"])
        await ws.send([b"\x00" * 300, b"\x01" * 300])
        await ws.wait_closed()

    async with peer(fragments) as port:
        async with connect_websocket(f"ws://127.0.0.1:{port}/", engine=engine) as sock:
            assert await sock.receive() == "fragmented text"
            assert await sock.receive() == b"\x00" * 300 + b"\x01" * 300


async def oversize_closes(engine: str, message: Any) -> tuple[int | None, list[int | None]]:
    """The peer sends ``message`` (over 1024 bytes) to a client limited to 1024: the close code
    the client reports, and the ones the peer saw."""
    seen: list[int | None] = []
    told = anyio.Event()

    async def oversize(ws: Any) -> None:
        await ws.send(message)
        await ws.wait_closed()
        seen.append(ws.close_code)
        told.set()

    async with peer(oversize) as port:
        async with connect_websocket(
            f"ws://127.0.0.1:{port}/", max_message_size=1024, engine=engine
        ) as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.receive()
        with anyio.fail_after(10):
            await told.wait()
    return info.value.code, seen


async def test_fragments_adding_up_past_the_limit_close_the_socket_with_1009(engine: str) -> None:
    # each frame under the limit, the whole over; the peer is told why
    assert await oversize_closes(engine, [b"x" * 600, b"x" * 600]) == (1009, [1009])


async def test_one_frame_over_the_limit_tells_the_peer_1009(engine: str) -> None:
    assert await oversize_closes(engine, b"x" * 4096) == (1009, [1009])


async def test_our_close_code_and_reason_reach_the_peer(engine: str) -> None:
    seen: list[tuple[int | None, str | None]] = []
    told = anyio.Event()

    async def watch(ws: Any) -> None:
        await ws.wait_closed()
        seen.append((ws.close_code, ws.close_reason))
        told.set()

    async with peer(watch) as port:
        async with connect_websocket(f"ws://127.0.0.1:{port}/", engine=engine) as sock:
            await sock.close(4000, "call over")
            with pytest.raises(SocketClosed) as info:
                await sock.receive()
        with anyio.fail_after(10):
            await told.wait()
    assert seen == [(4000, "call over")]
    assert info.value.code == 4000  # the peer's echo of our close frame


async def test_the_peers_pings_are_answered_and_never_show_as_messages(engine: str) -> None:
    async def pinger(ws: Any) -> None:
        pong = await ws.ping(b"are you there")
        with anyio.fail_after(10):
            await pong
        await ws.send("pong came")
        await ws.wait_closed()

    async with peer(pinger) as port:
        async with connect_websocket(f"ws://127.0.0.1:{port}/", engine=engine) as sock:
            assert await sock.receive() == "pong came"


async def hold_forever(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        await anyio.sleep_forever()


async def accept_then_ignore(stream: anyio.abc.SocketStream) -> None:
    """Completes the WebSocket handshake by hand, then reads nothing and answers nothing."""
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive()
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        await stream.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await anyio.sleep_forever()


@asynccontextmanager
async def tcp_server(handler: Callable[[anyio.abc.SocketStream], Any]) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def test_a_server_that_never_answers_the_handshake_times_out(engine: str) -> None:
    async with tcp_server(hold_forever) as port:
        with pytest.raises(TimeoutError):
            async with connect_websocket(
                f"ws://127.0.0.1:{port}/", connect_timeout=0.3, engine=engine
            ):
                pass


async def test_closing_against_a_silent_peer_ends_after_the_close_timeout(engine: str) -> None:
    async with tcp_server(accept_then_ignore) as port:
        with anyio.fail_after(10):  # a guard only: the close waits 0.2 s for an echo
            async with connect_websocket(
                f"ws://127.0.0.1:{port}/", close_timeout=0.2, engine=engine
            ) as sock:
                await sock.close()
            with pytest.raises(SocketClosed):
                await sock.send("after close")


@pytest.fixture
def certificate_authority(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A test CA the process-wide client TLS context trusts (instead of the system's)."""
    import trustme

    ca = trustme.CA()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    monkeypatch.setattr(wsio, "_tls", [client])
    return ca


def server_tls(ca: Any, names: list[str]) -> tuple[ssl.SSLContext, list[str | None]]:
    """A server context with a certificate for ``names``, recording the SNI names it is sent."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    sni: list[str | None] = []

    def record(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        sni.append(name)

    ctx.sni_callback = record  # type: ignore[assignment]
    return ctx, sni


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def test_wss_verifies_the_server_and_sends_its_host_name(
    engine: str, certificate_authority: Any
) -> None:
    tls, sni = server_tls(certificate_authority, ["localhost"])
    async with peer(echo, tls) as port:
        async with connect_websocket(f"wss://localhost:{port}/", engine=engine) as sock:
            await sock.send("over TLS")
            assert await sock.receive() == "over TLS"
    assert sni == ["localhost"]


async def test_wss_refuses_a_certificate_for_another_host(
    engine: str, certificate_authority: Any
) -> None:
    tls, _ = server_tls(certificate_authority, ["provider.example"])
    async with peer(echo, tls) as port:
        with pytest.raises(SocketClosed, match="cannot connect.*certificate"):
            async with connect_websocket(f"wss://localhost:{port}/", engine=engine):
                pass


class FakeTransport:
    """What the picows socket uses of its transport, recording what it sends."""

    def __init__(self) -> None:
        self.underlying_transport = self
        self.is_close_frame_sent = False
        self.sent: list[object] = []

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def send(self, kind: object, message: str | bytes) -> None:
        self.sent.append(message)


async def test_a_client_send_waits_while_the_write_buffer_is_full_then_goes_out() -> None:
    from voicegraph._picows import PicowsSocket

    transport = FakeTransport()
    sock = PicowsSocket(1024)  # no write timeout: the provider's watchdog judges a stall
    sock.on_ws_connected(transport)  # type: ignore[arg-type]
    sock.pause_writing()  # over the high-water mark
    async with anyio.create_task_group() as tg:
        tg.start_soon(sock.send, "audio")
        await anyio.wait_all_tasks_blocked()
        assert transport.sent == []  # waiting, not buffering more
        sock.resume_writing()
    assert transport.sent == ["audio"]


async def test_a_client_send_waiting_on_a_full_buffer_ends_when_the_socket_does() -> None:
    from voicegraph._picows import PicowsSocket

    transport = FakeTransport()
    sock = PicowsSocket(1024)
    sock.on_ws_connected(transport)  # type: ignore[arg-type]
    sock.pause_writing()
    async with anyio.create_task_group() as tg:

        async def send() -> None:
            with pytest.raises(SocketClosed) as info:
                await sock.send("audio")
            assert info.value.code == 1006  # no close frame either way

        tg.start_soon(send)
        await anyio.wait_all_tasks_blocked()
        sock.on_ws_disconnected(transport)  # type: ignore[arg-type]
    assert transport.sent == []


# ------------------------------------------------------------ choosing the client


async def test_picows_is_the_default_client_and_websockets_is_chosen_by_name() -> None:
    from voicegraph._picows import PicowsSocket

    async with peer(echo) as port:
        async with connect_websocket(f"ws://127.0.0.1:{port}/") as default:
            assert isinstance(default, PicowsSocket)
        async with connect_websocket(f"ws://127.0.0.1:{port}/", engine="websockets") as chosen:
            assert isinstance(chosen, wsio.AsyncioWebSocketClient)


async def test_an_unknown_engine_is_refused_before_connecting() -> None:
    with pytest.raises(WebSocketEngineError, match="'picows' or 'websockets'"):
        async with connect_websocket("ws://127.0.0.1:9/", engine="aiohttp"):
            pass


def test_the_environment_variable_picks_the_client_and_names_the_allowed_values() -> None:
    assert engine_from_env({}) == "picows"
    assert engine_from_env({"VOICEGRAPH_WS_CLIENT": "websockets"}) == "websockets"
    with pytest.raises(WebSocketEngineError, match=r"VOICEGRAPH_WS_CLIENT='websocket'.*'picows'"):
        engine_from_env({"VOICEGRAPH_WS_CLIENT": "websocket"})
    assert check_engine("picows") == "picows"


def test_an_unknown_client_in_the_environment_fails_at_import() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "VOICEGRAPH_WS_CLIENT": "aiohttp"}
    done = subprocess.run(
        [sys.executable, "-c", "import voicegraph.wsio"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "VOICEGRAPH_WS_CLIENT='aiohttp' is not a WebSocket client library" in done.stderr
