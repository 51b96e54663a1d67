"""AgentRuntime end to end over loopback with Hypercorn: Plivo Audio Streams."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import anyio
import httpx
import msgspec
import pytest

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime
from voicegraph.server.signatures import compute_plivo_v3_signature
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.server import echo_graph, serve_runtime
from voicegraph.wsio import SocketClosed, connect_websocket

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
TOKEN = "plivo-test-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"
CALL = "e4e6b1d4-0000-4000-8000-000000000001"
NONCE = "98765432109876543210"


def make_runtime(**kw: object) -> AgentRuntime:
    iface = CallInterface(
        "plivo",
        NUMBER,
        auth_id=AUTH_ID,
        auth_token=TOKEN,
        graph=echo_graph,
        **kw,  # type: ignore[arg-type]
    )
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=5)


def form(call: str = CALL) -> dict[str, str]:
    return {
        "CallUUID": call,
        "From": "14155550100",
        "To": "15551234567",
        "Direction": "inbound",
        "CallStatus": "ringing",
    }


async def post_answer(base: str, data: dict[str, str], token: str = TOKEN) -> httpx.Response:
    sig = compute_plivo_v3_signature("POST", PUBLIC + "/call/incoming", data, NONCE, token)
    headers = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": NONCE}
    async with httpx.AsyncClient() as client:
        return await client.post(base + "/call/incoming", data=data, headers=headers)


async def answered(base: str, **kw: object) -> tuple[ET.Element, str]:
    resp = await post_answer(base, form(), **kw)  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.text
    stream = ET.fromstring(resp.text).find("./Stream")
    assert stream is not None
    return stream, stream.attrib["extraHeaders"]


def start_msg(extra: str, encoding: str = "audio/x-l16", rate: int = 16000) -> str:
    return msgspec.json.encode(
        {
            "event": "start",
            "sequenceNumber": 1,
            "start": {
                "callId": CALL,
                "streamId": "87654321-4321-4321-4321-cba987654321",
                "accountId": AUTH_ID,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": encoding, "sampleRate": rate},
            },
            "extra_headers": extra,
        }
    ).decode()


def media_msg(payload: bytes, seq: int) -> str:
    return msgspec.json.encode(
        {
            "event": "media",
            "sequenceNumber": seq,
            "streamId": "87654321-4321-4321-4321-cba987654321",
            "media": {
                "track": "inbound",
                "timestamp": "1705312200000",
                "chunk": seq,
                "payload": base64.b64encode(payload).decode(),
            },
        }
    ).decode()


def dtmf_msg(digit: str) -> str:
    return msgspec.json.encode(
        {
            "event": "dtmf",
            "sequenceNumber": 9,
            "streamId": "x",
            "dtmf": {"track": "inbound", "digit": digit, "timestamp": "1705312250000"},
        }
    ).decode()


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/call/stream"


async def receive_json(ws: object, timeout: float = 5.0) -> dict[str, object]:
    with anyio.fail_after(timeout):
        return msgspec.json.decode(await ws.receive())  # type: ignore[attr-defined,no-any-return]


@pytest.mark.anyio
async def test_answer_opens_bidirectional_l16_stream_kept_alive() -> None:
    async with serve_runtime(make_runtime()) as base:
        stream, extra = await answered(base)
    assert stream.text == "wss://agent.example.com/call/stream"
    assert stream.attrib["bidirectional"] == "true" and stream.attrib["keepCallAlive"] == "true"
    assert stream.attrib["contentType"] == "audio/x-l16;rate=16000"
    assert extra.replace(",", "").replace("=", "").isalnum()


@pytest.mark.anyio
async def test_mulaw_content_type_is_available() -> None:
    async with serve_runtime(make_runtime(plivo_content_type="audio/x-mulaw;rate=8000")) as base:
        stream, _ = await answered(base)
    assert stream.attrib["contentType"] == "audio/x-mulaw;rate=8000"


@pytest.mark.anyio
async def test_answer_with_bad_signature_gets_403() -> None:
    async with serve_runtime(make_runtime()) as base:
        resp = await post_answer(base, form(), token="wrong")
    assert resp.status_code == 403


@pytest.mark.anyio
async def test_echo_call_plays_audio_back_with_checkpoints_and_clear() -> None:
    async with serve_runtime(make_runtime()) as base:
        _, extra = await answered(base)
        async with connect_websocket(ws_url(base)) as ws:
            await ws.send(start_msg(extra))
            chunk = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 20 ms of L16 at 16 kHz
            await ws.send(media_msg(chunk, 2))
            played = await receive_json(ws)
            assert played["event"] == "playAudio"
            media = played["media"]
            assert isinstance(media, dict) and base64.b64decode(media["payload"]) == chunk
            assert media["contentType"] == "audio/x-l16" and media["sampleRate"] == 16000
            await ws.send(dtmf_msg("5"))
            checkpoint = await receive_json(ws)
            assert checkpoint["event"] == "checkpoint" and checkpoint["name"] == "dtmf-5"
            await ws.send(dtmf_msg("#"))
            assert (await receive_json(ws))["event"] == "clearAudio"


@pytest.mark.anyio
async def test_signed_handshake_with_wrong_signature_is_refused() -> None:
    async with serve_runtime(make_runtime()) as base:
        headers = {"X-Plivo-Signature-V3": "bogus=", "X-Plivo-Signature-V3-Nonce": NONCE}
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(ws_url(base), headers):
                pass
    assert info.value.code == 403


@pytest.mark.anyio
async def test_signed_handshake_is_accepted() -> None:
    sig = compute_plivo_v3_signature(
        "GET", "wss://agent.example.com/call/stream", None, NONCE, TOKEN
    )
    headers = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": NONCE}
    async with serve_runtime(make_runtime()) as base:
        _, extra = await answered(base)
        async with connect_websocket(ws_url(base), headers) as ws:
            await ws.send(start_msg(extra))
            await ws.send(media_msg(bytes(640), 2))
            assert (await receive_json(ws))["event"] == "playAudio"


@pytest.mark.anyio
async def test_stream_with_forged_token_is_closed_as_unauthorised() -> None:
    async with serve_runtime(make_runtime()) as base:
        _, extra = await answered(base)
        forged = ",".join(
            p if not p.startswith("token=") else "token=" + "0" * 56 for p in extra.split(",")
        )
        async with connect_websocket(ws_url(base)) as ws:
            await ws.send(start_msg(forged))
            with pytest.raises(SocketClosed) as info:
                await receive_json(ws)
    assert info.value.code == 1008


@pytest.mark.anyio
async def test_max_duration_deletes_the_call_through_rest_api() -> None:
    async with FakeCarrierREST("plivo", AUTH_ID, TOKEN) as rest:
        runtime = make_runtime(max_call_duration_seconds=0.5, api_base_url=rest.base_url)
        async with serve_runtime(runtime) as base:
            _, extra = await answered(base)
            async with connect_websocket(ws_url(base)) as ws:
                await ws.send(start_msg(extra))
                assert await rest.wait_for_hangup(CALL, timeout=10)
    assert [(r.method, r.status) for r in rest.requests] == [("DELETE", 204)]
