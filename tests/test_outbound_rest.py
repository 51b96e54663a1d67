"""Placing calls and hearing about them, at the HTTP level: our create-call requests are what
the carriers' own libraries send (twilio-python and plivo-python, pointed at the loopback fake,
are the judges), the fake accepts exactly those, refusals surface as clear errors, and status
reports signed by the carriers' libraries reach the call's handle."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import httpx
import pytest
from e2ekit import PUBLIC, TOKEN, interface

from voicegraph import AgentRuntime
from voicegraph.interface import IncompatibleOptionsError, InvalidOptionError
from voicegraph.server.outbound import DialError, OutboundLimitError
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.server import serve_runtime
from voicegraph.transports.plivo.rest import PlivoREST
from voicegraph.transports.twilio.rest import TwilioREST

TWILIO_SID = "AC" + "0" * 32
PLIVO_ID = "MA" + "X" * 18
LINE, CALLEE = "+14155550199", "+15557654321"
WEBHOOK = "http://127.0.0.1/call/incoming?dial=amd"
STATUS = "http://127.0.0.1/call/status"


@pytest.mark.anyio
async def test_our_twilio_create_call_sends_what_twilio_python_sends() -> None:
    from twilio.rest import Client

    async with FakeCarrierREST("twilio", TWILIO_SID, TOKEN, place=False) as rest:
        client = Client(TWILIO_SID, TOKEN)
        client.api.base_url = rest.base_url  # loopback only
        theirs = await anyio.to_thread.run_sync(
            lambda: client.calls.create(
                to=CALLEE,
                from_=LINE,
                url=WEBHOOK,
                method="POST",
                status_callback=STATUS,
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                status_callback_method="POST",
                timeout=30,
                time_limit=3660,
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=STATUS,
                async_amd_status_callback_method="POST",
                record=True,
                recording_channels="dual",
                recording_status_callback=STATUS,
                recording_status_callback_method="POST",
            )
        )
        ours = await TwilioREST(TWILIO_SID, TOKEN, base_url=rest.base_url).create_call(
            CALLEE,
            LINE,
            WEBHOOK,
            status_callback=STATUS,
            timeout=30,
            time_limit=3660,
            machine_detection=True,
            record=True,
        )
    assert theirs.sid == rest.placed[0].call_id and ours == rest.placed[1].call_id
    assert rest.placed[0].request == rest.placed[1].request  # field for field, value for value


@pytest.mark.anyio
async def test_our_plivo_create_call_sends_what_plivo_python_sends(monkeypatch: Any) -> None:
    import plivo
    import plivo.rest.client

    async with FakeCarrierREST("plivo", PLIVO_ID, TOKEN, place=False) as rest:
        monkeypatch.setattr(plivo.rest.client, "API_VOICE_BASE_URI", rest.base_url + "/v1/Account")
        client = plivo.RestClient(PLIVO_ID, TOKEN)
        theirs = await anyio.to_thread.run_sync(
            lambda: client.calls.create(
                from_=LINE[1:],
                to_=CALLEE[1:],
                answer_url=WEBHOOK,
                answer_method="POST",
                hangup_url=STATUS,
                hangup_method="POST",
                ring_url=STATUS,
                ring_method="POST",
                ring_timeout=30,
                time_limit=3660,
                machine_detection="true",
                machine_detection_url=STATUS,
                machine_detection_method="POST",
            )
        )
        ours = await PlivoREST(PLIVO_ID, TOKEN, base_url=rest.base_url).create_call(
            CALLEE,
            LINE,
            WEBHOOK,
            hangup_url=STATUS,
            ring_url=STATUS,
            ring_timeout=30,
            time_limit=3660,
            machine_detection=True,
            machine_detection_url=STATUS,
        )
    assert theirs.request_uuid == rest.placed[0].request_id and ours == rest.placed[1].request_id
    lib, mine = rest.placed[0].request, rest.placed[1].request
    assert mine.items() <= lib.items()  # every field we send, as the library sends it
    # what only the library sends are its own defaults, which are Plivo's defaults too
    assert set(lib) - set(mine) == {
        "fallback_method",
        "machine_detection_time",
        "error_if_parent_not_found",
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("carrier", "status", "word"),
    [
        ("twilio", 400, "code 21205"),
        ("twilio", 401, "credentials"),
        ("plivo", 400, "answer_url is not a valid URL"),
        ("plivo", 401, "credentials"),
    ],
)
async def test_a_carrier_refusal_is_a_dial_error_that_says_why(
    carrier: str, status: int, word: str
) -> None:
    ident = TWILIO_SID if carrier == "twilio" else PLIVO_ID
    token = "wrong-token" if status == 401 else TOKEN
    url = "not-a-url" if status == 400 else WEBHOOK
    async with FakeCarrierREST(carrier, ident, TOKEN, place=False) as rest:
        with pytest.raises(DialError) as info:
            if carrier == "twilio":
                await TwilioREST(ident, token, base_url=rest.base_url).create_call(
                    CALLEE, LINE, url, status_callback=STATUS
                )
            else:
                await PlivoREST(ident, token, base_url=rest.base_url).create_call(
                    CALLEE, LINE, url, hangup_url=STATUS
                )
    assert info.value.status == status and word in str(info.value)
    assert "wrong-token" not in str(info.value) and TOKEN not in str(info.value)


@pytest.mark.anyio
async def test_a_refused_connection_is_retried_within_bounds_then_reported() -> None:
    from voicegraph.transports._rest import RetryPolicy

    rest = TwilioREST(
        TWILIO_SID,
        TOKEN,
        base_url="http://127.0.0.1:9",
        policy=RetryPolicy(retries=1, backoff=0.01),
    )
    with pytest.raises(DialError, match="connection refused.*2 attempts"):
        await rest.create_call(CALLEE, LINE, WEBHOOK, status_callback=STATUS)


def _runtime(carrier: str, rest_url: str, **kw: Any) -> AgentRuntime:
    from voicegraph.testing.server import echo_graph

    iface = interface(carrier, graph=echo_graph, api_base_url=rest_url)
    return AgentRuntime([iface], public_url=PUBLIC, **kw)


@pytest.mark.anyio
@pytest.mark.parametrize("to", ["5557654321", "+0123", "+1 555 765 4321", 15557654321])
async def test_dial_refuses_a_number_that_is_not_e164(to: Any) -> None:
    runtime = _runtime("twilio", "http://127.0.0.1:9")
    with pytest.raises(InvalidOptionError, match="E.164"):
        await runtime.dial(to)


@pytest.mark.anyio
async def test_dial_needs_a_line_when_there_are_several() -> None:
    from voicegraph.testing.server import echo_graph

    a = interface("twilio", graph=echo_graph)
    b = interface("plivo", graph=echo_graph, webhook_path="/p/in", stream_path="/p/ws")
    b.phone_number = "+14155550111"
    runtime = AgentRuntime([a, b], public_url=PUBLIC)
    with pytest.raises(InvalidOptionError, match="pass line="):
        await runtime.dial(CALLEE)
    with pytest.raises(InvalidOptionError, match="not a number this runtime serves"):
        await runtime.dial(CALLEE, line="+14155550000")


@pytest.mark.anyio
async def test_machine_detection_is_refused_in_managed_mode() -> None:
    from voicegraph import Agent
    from voicegraph.nodes import OpenAIChatLLM

    llm = OpenAIChatLLM(api_key="test-key", base_url="http://127.0.0.1:9/v1")
    iface = interface("twilio", pipeline="managed", agent=Agent("x", llm=llm))
    runtime = AgentRuntime([iface], public_url=PUBLIC)
    with pytest.raises(IncompatibleOptionsError, match="cascading"):
        await runtime.dial(CALLEE, machine_detection=True)


@pytest.mark.anyio
async def test_outbound_calls_in_flight_are_bounded() -> None:
    async with FakeCarrierREST("twilio", TWILIO_SID, TOKEN, place=False) as rest:
        runtime = _runtime("twilio", rest.base_url, max_outbound=2)
        first = [await runtime.dial(CALLEE), await runtime.dial(CALLEE)]
        with pytest.raises(OutboundLimitError, match="max_outbound"):
            await runtime.dial(CALLEE)
        # a final status frees a slot
        from voicegraph import CallStatus

        await runtime.registry.deliver(
            first[0].call_id, CallStatus(call_id=first[0].call_id, status="busy", duration=0.0)
        )
        third = await runtime.dial(CALLEE)
    assert first[0].final is not None and third.call_id == rest.placed[2].call_id


# ---------------------------------------------------------------- status callbacks


@pytest.mark.anyio
async def test_a_twilio_status_signed_by_twilio_python_reaches_the_handle() -> None:
    from twilio.request_validator import RequestValidator

    async with FakeCarrierREST("twilio", TWILIO_SID, TOKEN, place=False) as rest:
        runtime = _runtime("twilio", rest.base_url)
        async with serve_runtime(runtime) as url:
            handle = await runtime.dial(CALLEE)
            form = {
                "AccountSid": TWILIO_SID,
                "CallSid": handle.call_id,
                "CallStatus": "completed",
                "CallDuration": "42",
                "Direction": "outbound-api",
            }
            sig = RequestValidator(TOKEN).compute_signature(PUBLIC + "/call/status", form)
            async with httpx.AsyncClient() as client:
                bad = await client.post(
                    url + "/call/status",
                    data={**form, "CallDuration": "1"},
                    headers={"X-Twilio-Signature": sig},
                )
                ok = await client.post(
                    url + "/call/status", data=form, headers={"X-Twilio-Signature": sig}
                )
            final = await handle.outcome(timeout=5)
    assert (bad.status_code, ok.status_code) == (403, 204)
    assert final.status == "completed" and final.duration == 42.0


@pytest.mark.anyio
async def test_a_plivo_hangup_signed_like_plivo_python_reaches_the_handle() -> None:
    from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

    async with FakeCarrierREST("plivo", PLIVO_ID, TOKEN, place=False) as rest:
        runtime = _runtime("plivo", rest.base_url)
        async with serve_runtime(runtime) as url:
            handle = await runtime.dial(CALLEE)
            call_uuid = "0f0e0d0c-0000-4000-8000-000000000001"
            form = {
                "CallUUID": call_uuid,
                "RequestUUID": handle.request_id,
                "CallStatus": "busy",
                "Duration": "0",
                "HangupCauseName": "Busy Line",
                "Event": "Hangup",
            }
            nonce = secrets.token_hex(10)
            base = construct_post_url(PUBLIC + "/call/status", dict(form))
            sig = get_signature_v3(TOKEN, base, nonce).decode()
            headers = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": nonce}
            async with httpx.AsyncClient() as client:
                resp = await client.post(url + "/call/status", data=form, headers=headers)
            final = await handle.outcome(timeout=5)
    assert resp.status_code == 204
    assert final.status == "busy" and final.reason == "Busy Line"
    assert handle.call_id == call_uuid  # the request UUID now names the call


@pytest.mark.anyio
async def test_a_report_that_beats_the_create_answer_is_kept_for_the_handle() -> None:
    from voicegraph import CallStatus
    from voicegraph.server.outbound import CallRegistry, OutboundCall

    registry = CallRegistry()
    await registry.deliver("CA1", CallStatus(call_id="CA1", status="ringing"))
    from voicegraph.testing.server import echo_graph

    handle = OutboundCall(CALLEE, interface("twilio", graph=echo_graph), False)
    handle.call_id = "CA1"
    await registry.add(handle)
    assert handle.status == "ringing"


@pytest.mark.anyio
async def test_a_call_whose_final_report_never_comes_is_closed_as_failed() -> None:
    async with FakeCarrierREST("twilio", TWILIO_SID, TOKEN, place=False) as rest:
        runtime = _runtime("twilio", rest.base_url, max_outbound=1)
        handle = await runtime.dial(CALLEE)
        handle.expires = 0.0  # as if ring time and the line's time limit had passed
        again = await runtime.dial(CALLEE)  # the lost call no longer holds the slot
    assert handle.final is not None and handle.final.status == "failed"
    assert "no final report" in handle.final.reason and again.final is None


@pytest.mark.anyio
async def test_our_twilio_hangup_sends_what_twilio_python_sends() -> None:
    from twilio.rest import Client

    sid = "CA" + "1" * 32
    async with FakeCarrierREST("twilio", TWILIO_SID, TOKEN, place=False) as rest:
        client = Client(TWILIO_SID, TOKEN)
        client.api.base_url = rest.base_url  # loopback only
        await anyio.to_thread.run_sync(lambda: client.calls(sid).update(status="completed"))
        rest.ended.clear()  # let ours reach the same call
        assert await TwilioREST(TWILIO_SID, TOKEN, base_url=rest.base_url).hangup(sid)
    theirs, ours = rest.requests
    assert (ours.method, ours.path, ours.form) == (theirs.method, theirs.path, theirs.form)


@pytest.mark.anyio
async def test_our_plivo_cancel_of_a_ringing_call_is_plivo_pythons_cancel(monkeypatch: Any) -> None:
    import plivo
    import plivo.rest.client

    async with FakeCarrierREST("plivo", PLIVO_ID, TOKEN, place=False) as rest:
        monkeypatch.setattr(plivo.rest.client, "API_VOICE_BASE_URI", rest.base_url + "/v1/Account")
        ours = PlivoREST(PLIVO_ID, TOKEN, base_url=rest.base_url)
        first = await ours.create_call(CALLEE, LINE, WEBHOOK, hangup_url=STATUS)
        second = await ours.create_call(CALLEE, LINE, WEBHOOK, hangup_url=STATUS)
        client = plivo.RestClient(PLIVO_ID, TOKEN)
        await anyio.to_thread.run_sync(lambda: client.calls.cancel(first))
        assert await ours.cancel_request(second) is True
        assert await ours.cancel_request(second) is False  # gone: nothing left to cancel
    theirs, mine, again = rest.requests
    assert (mine.method, mine.path.replace(second, first)) == (theirs.method, theirs.path)
    assert (theirs.status, mine.status, again.status) == (204, 204, 404)


@pytest.mark.anyio
async def test_our_plivo_recording_request_is_plivo_pythons(monkeypatch: Any) -> None:
    import plivo
    import plivo.rest.client

    from voicegraph.testing.fake_dial import Callee

    async with FakeCarrierREST("plivo", PLIVO_ID, TOKEN, place=False, callee=Callee()) as rest:
        monkeypatch.setattr(plivo.rest.client, "API_VOICE_BASE_URI", rest.base_url + "/v1/Account")
        ours = PlivoREST(PLIVO_ID, TOKEN, base_url=rest.base_url)
        for _ in range(2):  # two answered calls to record
            await ours.create_call(CALLEE, LINE, WEBHOOK, hangup_url=STATUS)
        for placed in rest.placed:
            placed.picked_up = True
        first, second = (p.call_id for p in rest.placed)
        client = plivo.RestClient(PLIVO_ID, TOKEN)
        await anyio.to_thread.run_sync(
            lambda: client.calls.record(
                first,
                time_limit=3660,
                file_format="wav",
                callback_url=STATUS,
                callback_method="POST",
                record_channel_type="stereo",
            )
        )
        url = await ours.record(second, callback_url=STATUS, time_limit=3660)
        theirs, mine = (p.recording for p in rest.placed)
    assert theirs is not None and mine is not None and url == mine["record_url"]
    # field for field, value for value (each names its own call)
    assert mine["request"] == {**theirs["request"], "call_uuid": second}
    lib, req = rest.requests[-2:]
    assert (req.method, req.path.replace(second, first)) == (lib.method, lib.path)
    assert (lib.status, req.status) == (202, 202)
