"""Provider sockets behave the same on both backends (``websockets`` on asyncio, trio-websocket on
Trio): messages, refused handshakes, size limit, close codes."""

from __future__ import annotations

import pytest
from enginekit import BOTH_BACKENDS

from voicegraph.testing import FakeServer
from voicegraph.testing.fakeserver import WebSocketPeer
from voicegraph.wsio import SocketClosed, connect_websocket


@pytest.fixture(params=BOTH_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


class Peer(FakeServer):
    """Echoes; ``/refuse`` refuses with 401; ``/big`` sends 2 KiB; ``/bye`` closes with 4001."""

    async def websocket(self, ws: WebSocketPeer) -> None:
        if ws.path == "/refuse":
            await ws.reject(401)
            return
        await ws.accept()
        if ws.path == "/big":
            await ws.send(b"x" * 2048)
        if ws.path == "/bye":
            await ws.close(4001, "bye now")
            return
        while True:
            await ws.send(await ws.receive())


@pytest.mark.anyio
async def test_text_and_binary_messages_round_trip() -> None:
    async with Peer() as peer, connect_websocket(peer.ws_url + "/echo") as sock:
        await sock.send("hello")
        await sock.send(b"\x00\x01")
        assert [await sock.receive(), await sock.receive()] == ["hello", b"\x00\x01"]


@pytest.mark.anyio
async def test_a_refused_handshake_reports_the_http_status() -> None:
    async with Peer() as peer:
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(peer.ws_url + "/refuse"):
                pass
    assert info.value.code == 401


@pytest.mark.anyio
async def test_a_message_over_the_size_limit_closes_the_socket_with_1009() -> None:
    async with Peer() as peer:
        async with connect_websocket(peer.ws_url + "/big", max_message_size=1024) as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.receive()
    assert info.value.code == 1009


@pytest.mark.anyio
async def test_the_peers_close_code_and_reason_are_reported() -> None:
    async with Peer() as peer:
        async with connect_websocket(peer.ws_url + "/bye") as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.receive()
    assert (info.value.code, info.value.reason) == (4001, "bye now")


@pytest.mark.anyio
async def test_nothing_listening_is_a_socket_closed_error() -> None:
    async with Peer() as peer:
        url = peer.ws_url
    with pytest.raises(SocketClosed, match="cannot connect"):
        async with connect_websocket(url + "/echo", connect_timeout=5):
            pass


def test_wss_sockets_share_one_verifying_tls_context() -> None:
    import ssl

    from voicegraph.wsio import tls_context

    ctx = tls_context()
    assert ctx is tls_context()  # loading CA certificates once per process, not per call
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
