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


@pytest.mark.anyio
async def test_plivo_transfer_sends_what_the_plivo_library_sends(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import plivo.rest.client

    from voicegraph.transports.plivo.rest import PlivoREST

    document_url = "http://127.0.0.1:9/call/incoming/transfer?call=x"  # never answered
    async with FakeCarrierREST("plivo", AUTH_ID, "tok") as fake:
        monkeypatch.setattr(plivo.rest.client, "API_VOICE_BASE_URI", fake.base_url + "/v1/Account")
        client = plivo.RestClient(AUTH_ID, "tok")
        await anyio.to_thread.run_sync(
            lambda: client.calls.transfer(
                UUID, legs="aleg", aleg_url=document_url, aleg_method="POST"
            )
        )
        assert await PlivoREST(AUTH_ID, "tok", base_url=fake.base_url).transfer(UUID, document_url)
    library, ours = fake.requests
    assert (ours.method, ours.path, ours.form) == (library.method, library.path, library.form)
    assert library.status == ours.status == 202
    assert library.form["aleg_url"] == [document_url] and library.form["legs"] == ["aleg"]


# ------------------------------------------------------ the runtime's Plivo transfer document


def _plivo_runtime():  # type: ignore[no-untyped-def]
    from e2ekit import interface

    from voicegraph import Agent
    from voicegraph.nodes import EspeakTTS, OpenAIChatLLM, PocketsphinxSTT

    llm = OpenAIChatLLM(api_key="test-key", base_url="http://127.0.0.1:9/v1")  # never called
    return interface(
        "plivo", pipeline="cascading", agent=Agent("x", llm=llm), stt=PocketsphinxSTT, tts=EspeakTTS
    )


@pytest.mark.anyio
async def test_the_runtime_serves_a_signed_transfer_link_as_plivo_dial_xml() -> None:
    import httpx
    from e2ekit import TOKEN, served

    from voicegraph.server.signatures import compute_plivo_v3_signature
    from voicegraph.server.transfer import TransferLinks

    async with served(_plivo_runtime()) as (url, _):
        path = "/call/incoming/transfer?" + TransferLinks(TOKEN).query(UUID, "+15557654321")
        form = {"CallUUID": UUID}
        sig = compute_plivo_v3_signature("POST", "http://127.0.0.1" + path, form, "n1", TOKEN)
        headers = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": "n1"}
        async with httpx.AsyncClient() as client:
            ok = await client.post(url + path, data=form, headers=headers)
            unsigned = await client.get(url + path)
            bad_sig = await client.post(url + path, data={"CallUUID": "other"}, headers=headers)
    assert ok.status_code == unsigned.status_code == 200
    assert ok.headers["content-type"].startswith("application/xml")
    assert dial_number(ok.text) == "+15557654321" and "<Number>15557654321</Number>" in ok.text
    assert bad_sig.status_code == 403


@pytest.mark.parametrize(
    "change",
    [
        lambda q: q.replace("to=%2B15557654321", "to=%2B19005550000"),  # another number
        lambda q: q.replace("sig=", "sig=0"),  # altered MAC
        lambda q: q.split("&sig=")[0],  # no MAC
    ],
)
@pytest.mark.anyio
async def test_the_runtime_refuses_forged_transfer_links(change) -> None:  # type: ignore[no-untyped-def]
    import httpx
    from e2ekit import TOKEN, served

    from voicegraph.server.transfer import TransferLinks

    async with served(_plivo_runtime()) as (url, _):
        query = change(TransferLinks(TOKEN).query(UUID, "+15557654321"))
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{url}/call/incoming/transfer?{query}")
    assert resp.status_code == 403 and "Dial" not in resp.text


def test_transfer_links_expire() -> None:
    from urllib.parse import parse_qs

    from voicegraph.server.transfer import TransferLinks

    now = [1000.0]
    links = TransferLinks("tok", ttl=60, clock=lambda: now[0])
    query = parse_qs(links.query(UUID, "+15557654321"))
    assert links.check(query) == "+15557654321"
    now[0] += 61
    assert links.check(query) is None
