"""Hang-up over the carriers' REST APIs, against FakeCarrierREST on loopback."""

from __future__ import annotations

import pytest

from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.transports._rest import HangupError, RetryPolicy
from voicegraph.transports.plivo.rest import PlivoREST
from voicegraph.transports.twilio.rest import TwilioREST

SID = "AC" + "a" * 32
CALL = "CA" + "b" * 32
AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
UUID = "e4e6b1d4-0000-4000-8000-000000000001"
FAST = RetryPolicy(retries=2, timeout=2.0, backoff=0.01, deadline=5.0)


@pytest.mark.anyio
async def test_twilio_hangup_posts_status_completed_with_basic_auth() -> None:
    async with FakeCarrierREST("twilio", SID, "tok") as fake:
        rest = TwilioREST(SID, "tok", base_url=fake.base_url, policy=FAST)
        assert await rest.hangup(CALL) is True
    [req] = fake.requests
    assert (req.method, req.authorised, req.form) == ("POST", True, {"Status": ["completed"]})
    assert req.path == f"/2010-04-01/Accounts/{SID}/Calls/{CALL}.json"


@pytest.mark.anyio
async def test_twilio_hangup_of_ended_call_reports_already_ended() -> None:
    async with FakeCarrierREST("twilio", SID, "tok", ended={CALL}) as fake:
        assert (
            await TwilioREST(SID, "tok", base_url=fake.base_url, policy=FAST).hangup(CALL) is False
        )


@pytest.mark.anyio
async def test_hangup_retries_server_errors_then_succeeds() -> None:
    async with FakeCarrierREST("twilio", SID, "tok", fail_first=2) as fake:
        assert await TwilioREST(SID, "tok", base_url=fake.base_url, policy=FAST).hangup(CALL)
    assert [r.status for r in fake.requests] == [503, 503, 200]


@pytest.mark.anyio
async def test_hangup_gives_up_after_bounded_retries() -> None:
    async with FakeCarrierREST("twilio", SID, "tok", fail_first=10) as fake:
        with pytest.raises(HangupError, match="HTTP 503"):
            await TwilioREST(SID, "tok", base_url=fake.base_url, policy=FAST).hangup(CALL)
    assert len(fake.requests) == 3


@pytest.mark.anyio
async def test_wrong_token_is_rejected_without_retry_and_without_leaking_it() -> None:
    async with FakeCarrierREST("twilio", SID, "tok") as fake:
        rest = TwilioREST(SID, "wrong-secret", base_url=fake.base_url, policy=FAST)
        with pytest.raises(HangupError, match="credentials") as info:
            await rest.hangup(CALL)
    assert "wrong-secret" not in str(info.value) and "wrong-secret" not in repr(rest)
    assert len(fake.requests) == 1


@pytest.mark.anyio
async def test_malformed_call_sid_is_refused_before_any_request() -> None:
    with pytest.raises(HangupError, match="not a Twilio call SID"):
        await TwilioREST(SID, "tok", base_url="http://127.0.0.1:9").hangup("../../x")


@pytest.mark.anyio
async def test_plivo_hangup_deletes_the_call() -> None:
    async with FakeCarrierREST("plivo", AUTH_ID, "tok") as fake:
        assert await PlivoREST(AUTH_ID, "tok", base_url=fake.base_url, policy=FAST).hangup(UUID)
        assert await fake.wait_for_hangup(UUID, timeout=1)
    [req] = fake.requests
    assert (req.method, req.path, req.status) == (
        "DELETE",
        f"/v1/Account/{AUTH_ID}/Call/{UUID}/",
        204,
    )


@pytest.mark.anyio
async def test_unreachable_carrier_raises_after_deadline() -> None:
    rest = TwilioREST(SID, "tok", base_url="http://127.0.0.1:9", policy=FAST)
    with pytest.raises(HangupError, match="failed"):
        await rest.hangup(CALL)
