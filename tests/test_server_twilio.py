"""AgentRuntime end to end over loopback with Hypercorn: Twilio Media Streams.

A minimal Twilio peer lives here (httpx for the webhook, a client WebSocket for the stream) so
these tests pin the server's wire behaviour exactly."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import anyio
import httpx
import msgspec
import pytest

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime
from voicegraph.server.signatures import compute_twilio_signature
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.server import echo_graph, serve_runtime
from voicegraph.wsio import SocketClosed, connect_websocket

SID = "AC" + "0" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"
CALLER = "+14155550100"


def call_sid(n: int = 1) -> str:
    return f"CA{n:032x}"


def make_runtime(**kw: object) -> AgentRuntime:
    iface = CallInterface(
        "twilio",
        NUMBER,
        account_sid=SID,
        auth_token=TOKEN,
        graph=echo_graph,
        **kw,  # type: ignore[arg-type]
    )
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=5)


def form(call: str, to: str = NUMBER) -> dict[str, str]:
    return {
        "AccountSid": SID,
        "CallSid": call,
        "From": CALLER,
        "To": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


async def post_webhook(base: str, data: dict[str, str], token: str = TOKEN) -> httpx.Response:
    sig = compute_twilio_signature(PUBLIC + "/call/incoming", data, token)
    async with httpx.AsyncClient() as client:
        return await client.post(
            base + "/call/incoming", data=data, headers={"X-Twilio-Signature": sig}
        )


def stream_params(twiml: str) -> tuple[str, dict[str, str]]:
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None
    return stream.attrib["url"], {p.attrib["name"]: p.attrib["value"] for p in stream}


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/call/stream"


def signed_headers(url: str = "wss://agent.example.com/call/stream") -> dict[str, str]:
    return {"X-Twilio-Signature": compute_twilio_signature(url, None, TOKEN)}


def start_msg(call: str, params: dict[str, str]) -> str:
    return msgspec.json.encode(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ" + "1" * 32,
            "start": {
                "streamSid": "MZ" + "1" * 32,
                "accountSid": SID,
                "callSid": call,
                "tracks": ["inbound"],
                "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    ).decode()


def media_msg(payload: bytes, seq: int) -> str:
    return msgspec.json.encode(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": "MZ" + "1" * 32,
            "media": {
                "track": "inbound",
                "chunk": str(seq),
                "timestamp": str(seq * 20),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    ).decode()


async def answered(base: str, call: str) -> dict[str, str]:
    resp = await post_webhook(base, form(call))
    assert resp.status_code == 200, resp.text
    url, params = stream_params(resp.text)
    assert url == "wss://agent.example.com/call/stream"
    return params


async def receive_json(ws: object, timeout: float = 5.0) -> dict[str, object]:
    with anyio.fail_after(timeout):
        return msgspec.json.decode(await ws.receive())  # type: ignore[attr-defined,no-any-return]


@pytest.mark.anyio
async def test_valid_webhook_answers_connect_stream_with_token() -> None:
    async with serve_runtime(make_runtime()) as base:
        params = await answered(base, call_sid())
    assert set(params) == {"token", "line", "caller"}
    assert params["line"] == NUMBER[1:] and params["caller"] == CALLER


@pytest.mark.anyio
async def test_tampered_webhook_gets_403() -> None:
    async with serve_runtime(make_runtime()) as base:
        sig = compute_twilio_signature(PUBLIC + "/call/incoming", form(call_sid()), TOKEN)
        data = {**form(call_sid()), "From": "+19995550000"}
        async with httpx.AsyncClient() as client:
            resp = await client.post(
                base + "/call/incoming", data=data, headers={"X-Twilio-Signature": sig}
            )
    assert resp.status_code == 403


@pytest.mark.anyio
async def test_webhook_signed_with_wrong_token_gets_403() -> None:
    async with serve_runtime(make_runtime()) as base:
        resp = await post_webhook(base, form(call_sid()), token="not-the-token")
    assert resp.status_code == 403


@pytest.mark.anyio
async def test_webhook_without_signature_gets_403() -> None:
    async with serve_runtime(make_runtime()) as base:
        async with httpx.AsyncClient() as client:
            resp = await client.post(base + "/call/incoming", data=form(call_sid()))
    assert resp.status_code == 403


@pytest.mark.anyio
async def test_echo_call_plays_caller_audio_back_and_answers_marks_and_clear() -> None:
    async with serve_runtime(make_runtime()) as base:
        params = await answered(base, call_sid())
        async with connect_websocket(ws_url(base), signed_headers()) as ws:
            await ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
            await ws.send(start_msg(call_sid(), params))
            chunk = bytes(range(160))
            await ws.send(media_msg(chunk, 2))
            echoed = await receive_json(ws)
            assert echoed["event"] == "media"
            assert base64.b64decode(echoed["media"]["payload"]) == chunk  # type: ignore[index]
            await ws.send(
                '{"event":"dtmf","sequenceNumber":"3","streamSid":"MZ","dtmf":{"track":"inbound_track","digit":"7"}}'
            )
            mark = await receive_json(ws)
            assert mark["event"] == "mark" and mark["mark"] == {"name": "dtmf-7"}
            await ws.send(
                '{"event":"dtmf","sequenceNumber":"4","streamSid":"MZ","dtmf":{"track":"inbound_track","digit":"#"}}'
            )
            clear = await receive_json(ws)
            assert clear["event"] == "clear"


@pytest.mark.anyio
async def test_stream_without_token_is_closed_as_unauthorised() -> None:
    async with serve_runtime(make_runtime()) as base:
        params = await answered(base, call_sid())
        del params["token"]
        async with connect_websocket(ws_url(base), signed_headers()) as ws:
            await ws.send(start_msg(call_sid(), params))
            with pytest.raises(SocketClosed) as info:
                await receive_json(ws)
    assert info.value.code == 1008


@pytest.mark.anyio
async def test_stream_token_for_another_call_is_refused() -> None:
    async with serve_runtime(make_runtime()) as base:
        params = await answered(base, call_sid(1))
        async with connect_websocket(ws_url(base), signed_headers()) as ws:
            await ws.send(start_msg(call_sid(2), params))
            with pytest.raises(SocketClosed) as info:
                await receive_json(ws)
    assert info.value.code == 1008


@pytest.mark.anyio
async def test_stream_token_is_single_use() -> None:
    async with serve_runtime(make_runtime()) as base:
        params = await answered(base, call_sid())
        async with connect_websocket(ws_url(base), signed_headers()) as ws:
            await ws.send(start_msg(call_sid(), params))
            await ws.send(media_msg(b"\xff" * 160, 2))
            assert (await receive_json(ws))["event"] == "media"
            async with connect_websocket(ws_url(base), signed_headers()) as replay:
                await replay.send(start_msg(call_sid(), params))
                with pytest.raises(SocketClosed) as info:
                    await receive_json(replay)
    assert info.value.code == 1008


@pytest.mark.anyio
async def test_stream_handshake_without_signature_is_refused_with_403() -> None:
    async with serve_runtime(make_runtime()) as base:
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(ws_url(base)):
                pass
    assert info.value.code == 403


@pytest.mark.anyio
async def test_malformed_stream_message_closes_only_that_stream() -> None:
    async with serve_runtime(make_runtime()) as base:
        good = await answered(base, call_sid(1))
        bad = await answered(base, call_sid(2))
        async with connect_websocket(ws_url(base), signed_headers()) as ws1:
            await ws1.send(start_msg(call_sid(1), good))
            async with connect_websocket(ws_url(base), signed_headers()) as ws2:
                await ws2.send(start_msg(call_sid(2), bad))
                await ws2.send('{"event":"media", not json')
                with pytest.raises(SocketClosed) as info:
                    await receive_json(ws2)
            assert info.value.code == 1007
            await ws1.send(media_msg(b"\x7f" * 160, 2))
            assert (await receive_json(ws1))["event"] == "media"


@pytest.mark.anyio
async def test_max_duration_hangs_up_through_rest_api() -> None:
    async with FakeCarrierREST("twilio", SID, TOKEN) as rest:
        runtime = make_runtime(max_call_duration_seconds=0.5, api_base_url=rest.base_url)
        async with serve_runtime(runtime) as base:
            params = await answered(base, call_sid())
            async with connect_websocket(ws_url(base), signed_headers()) as ws:
                await ws.send(start_msg(call_sid(), params))
                assert await rest.wait_for_hangup(call_sid(), timeout=10)
                with pytest.raises(SocketClosed):
                    while True:
                        await receive_json(ws)
    [req] = rest.requests
    assert req.form == {"Status": ["completed"]} and req.authorised
