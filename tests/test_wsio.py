"""Provider sockets behave the same on every client: picows and ``websockets`` on asyncio,
trio-websocket on Trio -- messages, refused handshakes, size limit, close codes, timeouts,
cancellation. (Fragments, TLS and pings against an asyncio peer: test_wsio_asyncio.py.)"""

from __future__ import annotations

import json

import anyio
import anyio.abc
import pytest

from voicegraph.testing import FakeServer
from voicegraph.testing.fakeserver import WebSocketPeer
from voicegraph.wsio import SocketClosed, connect_websocket

CLIENTS = {
    "picows": ("asyncio", "picows"),
    "websockets": ("asyncio", "websockets"),
    "trio-websocket": ("trio", None),
}


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    return CLIENTS[request.param]


@pytest.fixture
def anyio_backend(client: tuple[str, str | None]) -> str:
    return client[0]


@pytest.fixture
def engine(client: tuple[str, str | None]) -> str | None:
    """The ``engine=`` for connect_websocket (None on Trio, which has one client)."""
    return client[1]


class Peer(FakeServer):
    """Echoes; ``/refuse`` refuses with 401; ``/moved`` redirects (302) to ``/headers`` on the
    same peer; ``/big`` sends 2 KiB; ``/bye`` closes with 4001; ``/headers`` sends the
    handshake's headers back (and records them); ``/watch`` records how the client left."""

    def __init__(self) -> None:
        super().__init__()
        self.left: list[SocketClosed] = []
        self.gone = anyio.Event()
        self.seen_headers: list[dict[str, str]] = []

    async def websocket(self, ws: WebSocketPeer) -> None:
        if ws.path == "/refuse":
            await ws.reject(401)
            return
        if ws.path == "/moved":
            await ws.reject(302, {"location": self.ws_url + "/headers"})
            return
        if ws.path == "/headers":
            self.seen_headers.append(dict(ws.headers))
        await ws.accept()
        if ws.path == "/big":
            await ws.send(b"x" * 2048)
        if ws.path == "/bye":
            await ws.close(4001, "bye now")
            return
        if ws.path == "/headers":
            await ws.send(json.dumps(ws.headers))
        try:
            while True:
                await ws.send(await ws.receive())
        except SocketClosed as exc:
            self.left.append(exc)
            self.gone.set()
            raise


@pytest.mark.anyio
async def test_text_and_binary_messages_round_trip(engine: str | None) -> None:
    async with Peer() as peer, connect_websocket(peer.ws_url + "/echo", engine=engine) as sock:
        await sock.send("hello")
        await sock.send(b"\x00\x01")
        assert [await sock.receive(), await sock.receive()] == ["hello", b"\x00\x01"]


@pytest.mark.anyio
async def test_many_messages_arrive_whole_and_in_order(engine: str | None) -> None:
    sent = [f"m{n}" * (n % 7 + 1) for n in range(300)]
    async with Peer() as peer, connect_websocket(peer.ws_url + "/echo", engine=engine) as sock:
        for message in sent:
            await sock.send(message)
        assert [await sock.receive() for _ in sent] == sent


@pytest.mark.anyio
async def test_extra_headers_are_sent_and_no_user_agent_is(engine: str | None) -> None:
    async with Peer() as peer:
        async with connect_websocket(
            peer.ws_url + "/headers", {"Authorization": "Token abc"}, engine=engine
        ) as sock:
            headers = json.loads(await sock.receive())
    assert headers["authorization"] == "Token abc"
    assert "user-agent" not in headers
    assert "sec-websocket-extensions" not in headers  # no compression offered


@pytest.mark.anyio
async def test_a_refused_handshake_reports_the_http_status(engine: str | None) -> None:
    async with Peer() as peer:
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(peer.ws_url + "/refuse", engine=engine):
                pass
    assert (info.value.code, info.value.reason) == (401, "handshake rejected with HTTP 401")


@pytest.mark.anyio
async def test_a_redirect_is_refused_so_credentials_go_only_to_the_url_given(
    engine: str | None,
) -> None:
    """A provider's handshake carries its API key: a redirect would send it to wherever the
    ``Location`` points, so no client follows one."""
    async with Peer() as peer:
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(
                peer.ws_url + "/moved", {"Authorization": "Token abc"}, engine=engine
            ):
                pass
    assert info.value.code == 302
    assert "redirect" in info.value.reason and "Token" not in info.value.reason
    assert peer.seen_headers == []  # the redirect's target never saw the key


@pytest.mark.anyio
async def test_a_message_over_the_size_limit_closes_the_socket_with_1009(
    engine: str | None,
) -> None:
    async with Peer() as peer:
        async with connect_websocket(
            peer.ws_url + "/big", max_message_size=1024, engine=engine
        ) as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.receive()
        with anyio.fail_after(10):
            await peer.gone.wait()
    assert info.value.code == 1009
    assert len(peer.left) == 1  # the connection ended (the code it saw: test_wsio_asyncio.py)


@pytest.mark.anyio
async def test_the_peers_close_code_and_reason_are_reported(engine: str | None) -> None:
    async with Peer() as peer:
        async with connect_websocket(peer.ws_url + "/bye", engine=engine) as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.receive()
    assert (info.value.code, info.value.reason) == (4001, "bye now")


@pytest.mark.anyio
async def test_a_send_after_the_peer_closed_raises_socket_closed(engine: str | None) -> None:
    async with Peer() as peer:
        async with connect_websocket(peer.ws_url + "/bye", engine=engine) as sock:
            with pytest.raises(SocketClosed):
                await sock.receive()
            with pytest.raises(SocketClosed):
                await sock.send("anyone there?")


@pytest.mark.anyio
async def test_close_is_idempotent_and_ends_the_connection(
    engine: str | None,
) -> None:
    async with Peer() as peer:
        async with connect_websocket(peer.ws_url + "/watch", engine=engine) as sock:
            await sock.close(1000, "done")
            await sock.close(1000, "done")
            with pytest.raises(SocketClosed):
                await sock.send("after close")
            with pytest.raises(SocketClosed):
                await sock.receive()
        with anyio.fail_after(10):
            await peer.gone.wait()
    assert len(peer.left) == 1


@pytest.mark.anyio
async def test_cancelling_the_caller_closes_the_socket(engine: str | None) -> None:
    async with Peer() as peer:
        with anyio.move_on_after(0.2):
            async with connect_websocket(peer.ws_url + "/watch", engine=engine) as sock:
                await sock.receive()  # nothing comes: the caller is cancelled in here
        with anyio.fail_after(10):
            await peer.gone.wait()
    assert len(peer.left) == 1


@pytest.mark.anyio
async def test_nothing_listening_is_a_socket_closed_error(engine: str | None) -> None:
    async with Peer() as peer:
        url = peer.ws_url
    with pytest.raises(SocketClosed, match="cannot connect") as info:
        async with connect_websocket(url + "/echo", connect_timeout=5, engine=engine):
            pass
    assert info.value.code is None


@pytest.mark.anyio
async def test_a_server_that_never_answers_the_handshake_times_out(engine: str | None) -> None:
    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        with anyio.fail_after(10), pytest.raises(TimeoutError):  # fail_after: a guard only
            async with connect_websocket(
                f"ws://127.0.0.1:{port}/", connect_timeout=0.3, engine=engine
            ):
                pass
        tg.cancel_scope.cancel()


def test_wss_sockets_share_one_verifying_tls_context() -> None:
    import ssl

    from voicegraph.wsio import tls_context

    ctx = tls_context()
    assert ctx is tls_context()  # loading CA certificates once per process, not per call
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
