"""AgentRuntime end to end over loopback with Hypercorn: Twilio ConversationRelay (managed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import anyio
import httpx
import msgspec
import pytest

from voicegraph.interface import CallInterface
from voicegraph.server import AgentRuntime
from voicegraph.server.signatures import compute_twilio_signature
from voicegraph.testing.server import echo_graph, serve_runtime
from voicegraph.wsio import SocketClosed, connect_websocket

SID = "AC" + "0" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://agent.example.com"
NUMBER = "+15551234567"
CALL = "CA" + "2" * 32


def make_runtime() -> AgentRuntime:
    iface = CallInterface(
        "twilio",
        NUMBER,
        account_sid=SID,
        auth_token=TOKEN,
        pipeline="managed",
        graph=echo_graph,
        greeting="Hello & welcome",
        voice="en-US-Journey-O",
        language="en-GB",
        interruptible="speech",
        interrupt_sensitivity="low",
        managed_stt_provider="google",
        managed_tts_provider="google",
    )
    return AgentRuntime([iface], public_url=PUBLIC, drain_timeout=5)


async def answered(base: str) -> ET.Element:
    data = {"AccountSid": SID, "CallSid": CALL, "From": "+14155550100", "To": NUMBER}
    sig = compute_twilio_signature(PUBLIC + "/call/incoming", data, TOKEN)
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            base + "/call/incoming", data=data, headers={"X-Twilio-Signature": sig}
        )
    assert resp.status_code == 200, resp.text
    relay = ET.fromstring(resp.text).find("./Connect/ConversationRelay")
    assert relay is not None
    return relay


def setup_msg(params: dict[str, str]) -> str:
    return msgspec.json.encode(
        {
            "type": "setup",
            "sessionId": "VX" + "0" * 32,
            "accountSid": SID,
            "parentCallSid": "",
            "callSid": CALL,
            "from": "+14155550100",
            "to": NUMBER,
            "forwardedFrom": "",
            "callType": "PSTN",
            "callerName": "",
            "direction": "inbound",
            "callStatus": "RINGING",
            "customParameters": params,
        }
    ).decode()


async def receive_json(ws: object, timeout: float = 5.0) -> dict[str, object]:
    with anyio.fail_after(timeout):
        return msgspec.json.decode(await ws.receive())  # type: ignore[attr-defined,no-any-return]


def signed() -> dict[str, str]:
    return {
        "X-Twilio-Signature": compute_twilio_signature(
            "wss://agent.example.com/call/stream", None, TOKEN
        )
    }


@pytest.mark.anyio
async def test_managed_answer_carries_every_relay_attribute() -> None:
    async with serve_runtime(make_runtime()) as base:
        relay = await answered(base)
    assert relay.attrib == {
        "url": "wss://agent.example.com/call/stream",
        "welcomeGreeting": "Hello & welcome",
        "welcomeGreetingInterruptible": "speech",
        "language": "en-GB",
        "ttsProvider": "Google",
        "voice": "en-US-Journey-O",
        "transcriptionProvider": "Google",
        "interruptible": "speech",
        "interruptSensitivity": "low",
        "dtmfDetection": "true",
    }
    assert {p.attrib["name"] for p in relay} == {"token", "line", "caller"}


@pytest.mark.anyio
async def test_relay_echo_speaks_prompts_and_dtmf_back() -> None:
    async with serve_runtime(make_runtime()) as base:
        relay = await answered(base)
        params = {p.attrib["name"]: p.attrib["value"] for p in relay}
        url = base.replace("http://", "ws://") + "/call/stream"
        async with connect_websocket(url, signed()) as ws:
            await ws.send(setup_msg(params))
            await ws.send(
                '{"type":"prompt","voicePrompt":"what are your hours","lang":"en-US","last":true}'
            )
            reply = await receive_json(ws)
            assert reply["type"] == "text" and reply["token"] == "what are your hours"
            assert reply["last"] is True
            await ws.send('{"type":"dtmf","digit":"3"}')
            assert (await receive_json(ws))["token"] == "you pressed 3"


@pytest.mark.anyio
async def test_relay_stream_with_replayed_setup_is_refused() -> None:
    async with serve_runtime(make_runtime()) as base:
        relay = await answered(base)
        params = {p.attrib["name"]: p.attrib["value"] for p in relay}
        url = base.replace("http://", "ws://") + "/call/stream"
        async with connect_websocket(url, signed()) as first:
            await first.send(setup_msg(params))
            await first.send('{"type":"prompt","voicePrompt":"hi","lang":"en-US","last":true}')
            await receive_json(first)
        async with connect_websocket(url, signed()) as second:
            await second.send(setup_msg(params))
            with pytest.raises(SocketClosed) as info:
                await receive_json(second)
    assert info.value.code == 1008
