"""FakeServer's engines: what picows serves like Hypercorn, and what it refuses with a clear
error instead of serving differently. (The fakes' own wire on both engines is in
test_deepgram.py and test_cartesia.py.)"""

from __future__ import annotations

import logging

import anyio
import pytest
from fake_kit import ENGINES, refused_handshake
from test_deepgram_sdk import SDK_TYPES, sdk_session

from voicegraph.testing import FakeDeepgram
from voicegraph.testing.fakeserver import (
    Accept,
    Engine,
    FakeServer,
    FakeServerError,
    HTTPRequest,
    HTTPResponse,
    Refuse,
    WebSocketPeer,
)
from voicegraph.wsio import SocketClosed, connect_websocket

# the SDK's client is built on websockets' legacy API, which warns on import; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:websockets.*is deprecated:DeprecationWarning")


class Echo(FakeServer):
    """Accepts ``/echo`` and echoes; ``/close?code=N`` closes with code N; ``/fail`` fails on
    the first message; refuses any other path with 403 and a header."""

    def handshake(self, ws: WebSocketPeer) -> Accept | Refuse:
        if ws.path in ("/echo", "/close", "/fail"):
            return Accept({"x-echo": "yes"}, state=ws.param("code"))
        return Refuse(403, {"x-why": "no such path"}, b"forbidden")

    async def websocket(self, ws: WebSocketPeer) -> None:
        if ws.path == "/fail":
            raise RuntimeError(f"the fake failed on {await ws.receive()!r}")
        if ws.state is not None:
            await ws.close(int(ws.state), "bye")
            return
        while True:
            await ws.send(await ws.receive())


def test_an_unknown_engine_is_refused_with_the_choices() -> None:
    with pytest.raises(FakeServerError, match="hypercorn"):
        Echo(engine="uvicorn")  # type: ignore[arg-type]


def test_a_fake_that_decides_its_handshake_inside_websocket_cannot_run_on_picows() -> None:
    class Decides(FakeServer):
        async def websocket(self, ws: WebSocketPeer) -> None:
            await ws.accept()

    with pytest.raises(FakeServerError, match="decides its handshakes inside websocket"):
        Decides(engine="picows")


def test_a_fake_that_serves_http_cannot_run_on_picows() -> None:
    class Serves(Echo):
        async def http(self, request: HTTPRequest, response: HTTPResponse) -> None:
            await response.send_text(200, "hi")

    with pytest.raises(FakeServerError, match="serves HTTP"):
        Serves(engine="picows")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_picows_engine_on_trio_says_to_use_hypercorn() -> None:
    with pytest.raises(FakeServerError, match="asyncio only"):
        async with Echo(engine="picows"):
            pass


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_text_and_binary_messages_round_trip(engine: Engine) -> None:
    async with Echo(engine=engine) as echo, connect_websocket(echo.ws_url + "/echo") as ws:
        await ws.send("hello")
        await ws.send(b"\x00\x01")
        assert [await ws.receive(), await ws.receive()] == ["hello", b"\x00\x01"]


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_the_accept_headers_reach_the_client(engine: Engine) -> None:
    from websockets.asyncio.client import connect

    async with Echo(engine=engine) as echo, connect(echo.ws_url + "/echo") as ws:
        assert ws.response is not None
        assert ws.response.status_code == 101 and ws.response.headers["x-echo"] == "yes"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_a_refusal_has_the_same_status_headers_and_body(engine: Engine) -> None:
    async with Echo(engine=engine) as echo:
        got = await refused_handshake(echo.ws_url, "/elsewhere", {})
    assert (got.status, got.headers["x-why"], got.body) == (403, "no such path", b"forbidden")
    assert got.headers["content-type"] == "text/plain"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_a_close_code_and_reason_reach_the_client(engine: Engine) -> None:
    async with Echo(engine=engine) as echo:
        async with connect_websocket(echo.ws_url + "/close?code=1008") as ws:
            with pytest.raises(SocketClosed) as info:
                await ws.receive()
    assert (info.value.code, info.value.reason) == (1008, "bye")


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_a_failing_fake_is_logged_and_its_socket_closed_with_1000(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "voicegraph.testing.fakeserver")
    async with Echo(engine=engine) as echo, connect_websocket(echo.ws_url + "/fail") as ws:
        await ws.send("hi")
        with pytest.raises(SocketClosed) as info:
            await ws.receive()
    assert info.value.code == 1000
    assert "the fake failed on 'hi'" in caplog.text


@pytest.mark.anyio
async def test_a_close_code_picows_cannot_send_is_logged_as_an_error_saying_what_to_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "voicegraph.testing.fakeserver")
    async with Echo(engine="picows") as echo:
        async with connect_websocket(echo.ws_url + "/close?code=4001") as ws:
            with pytest.raises(SocketClosed) as info:
                await ws.receive()
    assert info.value.code == 1000  # the base's close after a failing websocket(), as on Hypercorn
    assert "FakeServerError" in caplog.text and "use engine='hypercorn'" in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_a_plain_http_get_gets_the_default_404(engine: Engine) -> None:
    async with Echo(engine=engine) as echo:
        host, port = echo.http_url.removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            reply = b""
            with anyio.fail_after(10):
                while b"not found" not in reply:
                    reply += await stream.receive()
    assert reply.startswith(b"HTTP/1.1 404")


@pytest.mark.anyio
async def test_the_deepgram_sdk_reads_every_message_of_the_fake_on_picows() -> None:
    async with FakeDeepgram(["hello there friend", "and more"], engine="picows") as fake:
        got = await sdk_session(fake)
    assert len(got) == len(fake.sent)
    for message, sent in zip(got, fake.sent, strict=True):
        assert isinstance(message, SDK_TYPES[sent["type"]])
    assert {m["type"] for m in fake.sent} == set(SDK_TYPES)
