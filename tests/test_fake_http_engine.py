"""FakeServer's asyncio HTTP engine against Hypercorn: the chat fake reads and answers alike on
both (the official ``openai`` library judges the stream), and the engine's own HTTP/1.1:
keep-alive, pipelining, closing, limits, a client that leaves."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpx
import pytest

from voicegraph.llm import LLMError
from voicegraph.testing.fake_chat import ChatFault, FakeChatCompletions
from voicegraph.testing.fakeserver import FakeServer, FakeServerError, WebSocketPeer

pytestmark = pytest.mark.anyio
ENGINES = ("hypercorn", "asyncio")
BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'


@pytest.mark.parametrize(
    "anyio_backend", ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
@pytest.mark.parametrize("engine", ENGINES)
async def test_the_openai_library_reads_the_stream(engine: Any) -> None:
    from openai import AsyncOpenAI

    async with FakeChatCompletions(["Table for two at eight."], engine=engine) as fake:
        async with AsyncOpenAI(api_key=fake.api_key, base_url=fake.base_url) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Book a table"}],
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Table for two at eight."
    assert fake.completed == 1


async def _answers(engine: Any) -> list[tuple[int, bytes]]:
    async with FakeChatCompletions(["Hi."], engine=engine) as fake:
        async with httpx.AsyncClient(base_url=fake.http_url) as client:
            out = []
            for path, key, body in (
                ("/v1/embeddings", fake.api_key, BODY),
                ("/v1/chat/completions", "wrong", BODY),
                ("/v1/chat/completions", fake.api_key, b"{not json"),
            ):
                r = await client.post(
                    path, content=body, headers={"authorization": f"Bearer {key}"}
                )
                out.append((r.status_code, r.content))
            return out


async def test_errors_have_the_same_status_and_body_on_both_engines() -> None:
    hypercorn, lean = await _answers("hypercorn"), await _answers("asyncio")
    assert [status for status, _ in lean] == [404, 401, 400]
    assert lean == hypercorn


def _raw(port: int, data: bytes, *, until_closed: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
            if not until_closed and out.count(b"0\r\n\r\n") >= 2:
                break
        return out


def _request(key: str, *, extra: bytes = b"", body: bytes = BODY) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: fake\r\nauthorization: Bearer "
        + key.encode()
        + b"\r\ncontent-length: %d\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


async def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    async with FakeChatCompletions(["First.", "Second."], engine="asyncio") as fake:
        two = _request(fake.api_key) + _request(fake.api_key)
        out = await anyio.to_thread.run_sync(lambda: _raw(fake.port, two, until_closed=False))
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert out.index(b"First") < out.index(b"Second")
    assert len(set(fake.peers)) == 1


@pytest.mark.parametrize("header", [b"connection: close\r\n", b""])
async def test_connection_close_and_http_1_0_close_after_the_response(header: bytes) -> None:
    async with FakeChatCompletions(["Bye."], engine="asyncio") as fake:
        request = _request(fake.api_key, extra=header)
        if not header:
            request = request.replace(b"HTTP/1.1", b"HTTP/1.0", 1)
        out = await anyio.to_thread.run_sync(_raw, fake.port, request)  # returns once closed
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in out
    assert out.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /v1/chat/completions HTTP/1.1\r\nx: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 99999999\r\n\r\n", 413),
        (b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", 501),
        (b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: -3\r\n\r\n", 400),
        (b"nonsense\r\n\r\n", 400),
    ],
)
async def test_a_request_it_cannot_take_gets_a_status_and_the_connection_closes(
    request_bytes: bytes, status: int
) -> None:
    async with FakeChatCompletions(["Never."], engine="asyncio") as fake:
        out = await anyio.to_thread.run_sync(_raw, fake.port, request_bytes)
    assert out.startswith(b"HTTP/1.1 %d " % status)
    assert fake.requests == []


async def test_a_client_that_leaves_mid_stream_is_seen_by_the_fake() -> None:
    stall = ChatFault("stall", after_chunks=2)
    async with FakeChatCompletions(["Wait for it."], engine="asyncio", faults=[stall]) as fake:
        async with fake.llm() as llm:
            with anyio.move_on_after(0.5):
                async for _ in llm.stream([{"role": "user", "content": "hi"}]):
                    pass
        with anyio.fail_after(10):
            await fake.wait_idle()
    assert fake.disconnected == 1


async def test_a_stream_cut_by_the_fake_reaches_the_client_as_broken() -> None:
    cut = ChatFault("close_mid_stream", after_chunks=2)
    async with FakeChatCompletions(["Half a reply."], engine="asyncio", faults=[cut]) as fake:
        async with fake.llm() as llm:
            with pytest.raises(LLMError, match="broken mid-reply"):
                async for _ in llm.stream([{"role": "user", "content": "hi"}]):
                    pass


def test_a_websocket_fake_cannot_run_on_the_asyncio_http_engine() -> None:
    class Socket(FakeServer):
        async def websocket(self, ws: WebSocketPeer) -> None:
            await ws.accept()

    with pytest.raises(FakeServerError, match="serves WebSockets"):
        Socket(engine="asyncio")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_asyncio_http_engine_on_trio_says_to_use_hypercorn() -> None:
    with pytest.raises(FakeServerError, match="use engine='hypercorn' on Trio"):
        async with FakeChatCompletions([], engine="asyncio"):
            pass
