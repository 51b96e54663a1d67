"""Carrier sockets cannot hold resources forever: a peer that stops reading ends its call, and
only so many sockets may wait for their start message."""

from __future__ import annotations

import anyio
import pytest
from test_server_plivo import answered, make_runtime, start_msg, ws_url

from voicegraph.server.carriers import AsgiSocket
from voicegraph.testing.server import serve_runtime
from voicegraph.wsio import SocketClosed, connect_websocket


@pytest.mark.anyio
async def test_a_write_blocked_past_the_write_timeout_closes_the_socket_and_ends_the_call() -> None:
    ended: list[str] = []

    async def receive() -> dict[str, object]:
        await anyio.sleep_forever()
        raise AssertionError

    async def stuck_send(message: dict[str, object]) -> None:
        await anyio.sleep_forever()  # a peer whose receive window stays full

    sock = AsgiSocket(receive, stuck_send, write_timeout=0.05)
    sock.on_blocked = lambda: ended.append("call")
    with anyio.fail_after(10), pytest.raises(SocketClosed, match="peer stopped reading"):
        await sock.send("media")
    assert sock.blocked and sock.closed and ended == ["call"]
    with pytest.raises(SocketClosed):
        await sock.send("more")  # closed for good


@pytest.mark.anyio
async def test_sockets_waiting_for_their_start_are_capped_with_503() -> None:
    runtime = make_runtime()
    runtime.max_waiting_streams = 2
    async with serve_runtime(runtime) as base:
        async with connect_websocket(ws_url(base)), connect_websocket(ws_url(base)):
            with anyio.fail_after(10):
                while runtime.waiting_streams < 2:  # noqa: ASYNC110  # a plain counter
                    await anyio.sleep(0.01)
            with pytest.raises(SocketClosed) as info:
                async with connect_websocket(ws_url(base)):
                    pass
            assert info.value.code == 503
        with anyio.fail_after(10):
            while runtime.waiting_streams:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # the slots are free again once those sockets went away: a real call starts
        _, extra = await answered(base)
        async with connect_websocket(ws_url(base)) as ws:
            await ws.send(start_msg(extra))
            with anyio.fail_after(10):
                while not runtime.calls:  # noqa: ASYNC110  # a plain dict
                    await anyio.sleep(0.01)
