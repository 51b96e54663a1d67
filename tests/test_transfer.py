"""Transfers over the carriers' REST APIs, judged by the official twilio and plivo libraries:
FakeCarrierREST accepts what they send, and voicegraph sends what they send."""

from __future__ import annotations

import anyio
import pytest

from voicegraph.testing.fake_rest import FakeCarrierREST, dial_number

SID = "AC" + "a" * 32
CALL = "CA" + "b" * 32
AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
UUID = "e4e6b1d4-0000-4000-8000-000000000001"


@pytest.mark.anyio
async def test_fake_twilio_accepts_the_twiml_the_twilio_library_sends_for_a_transfer() -> None:
    from twilio.rest import Client
    from twilio.twiml.voice_response import VoiceResponse

    async with FakeCarrierREST("twilio", SID, "tok") as fake:
        client = Client(SID, "tok")
        client.api.base_url = fake.base_url  # loopback only
        twiml = VoiceResponse()
        twiml.dial("+15557654321")
        assert str(twiml).startswith("<?xml")
        await anyio.to_thread.run_sync(lambda: client.calls(CALL).update(twiml=str(twiml)))
    assert fake.transfers == [(CALL, "+15557654321")]


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Dial>+15557654321</Dial></Response>",
        '<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+15557654321</Dial></Response>',
        "<Response><Dial><Number>+15557654321</Number></Dial></Response>",
    ],
)
def test_dial_documents_name_their_number(document: str) -> None:
    assert dial_number(document) == "+15557654321"


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Dial>5557654321x</Dial></Response>",
        "<Response><Hangup/></Response>",
        "<Response><Dial>+15557654321</Dial><Hangup/></Response>",
        "<Response><Dial>",
    ],
)
def test_other_documents_dial_nothing(document: str) -> None:
    assert dial_number(document) is None
