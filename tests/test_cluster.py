"""Two server processes sharing one real Redis, as two machines behind a load balancer: the
webhook may land on one and the stream on the other, a token is single use across both, a
request about a call reaches the instance holding it, a carrier's report reaches the call and
the dial handle wherever they are, and max_calls holds across both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from cluster_kit import CONTROL, NUMBER, PUBLIC, SID, TOKEN, Instance, start_instances
from redis_kit import RedisServer

from voicegraph import AgentRuntime, CallInterface
from voicegraph.server.signatures import compute_twilio_signature
from voicegraph.testing import FakeCarrierREST, TwilioCaller
from voicegraph.testing._simcall import CallRejected
from voicegraph.testing.server import echo_graph, serve_runtime

MAX_CALLS = 2


@pytest.fixture(scope="module")
def pair(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Instance]]:
    instances = start_instances(tmp_path_factory.mktemp("cluster"), redis_server.url, 2, MAX_CALLS)
    try:
        yield instances
    finally:
        for inst in instances:
            inst.stop()


def caller(inst: Instance) -> TwilioCaller:
    return TwilioCaller(inst.url, TOKEN, to=NUMBER, public_url=PUBLIC, playback_rate=20)


async def echoes(call: Any) -> bool:
    """The call is live on its instance: what the caller says comes back."""
    before = call.heard_seconds
    await call.send_audio(b"\x55" * 1600)  # real-time pace: a burst may see drops
    await call.wait_for_audio(before + 0.1)
    return True


async def webhook_status(inst: Instance) -> int:
    try:
        await caller(inst).answer("/call/incoming", "CA" + "f" * 32)
    except CallRejected as exc:
        return exc.status
    return 200


async def wait_for(predicate: Any, timeout: float = 20) -> None:
    # the instances' state is in other processes: nothing to wait on but the answers
    with anyio.fail_after(timeout):
        while not await predicate():  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def all_released(pair: list[Instance]) -> bool:
    async with httpx.AsyncClient() as client:
        for inst in pair:
            body = (await client.get(inst.url + "/readyz")).json()
            if body.get("calls"):
                return False
    return True


@pytest.mark.anyio
async def test_webhook_on_one_instance_and_stream_on_the_other_are_accepted(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    async with caller(a).dial(via=b.url) as call:
        assert await echoes(call)
    await wait_for(lambda: all_released(pair))


@pytest.mark.anyio
async def test_a_token_used_on_one_instance_is_refused_on_the_other(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    sid = "CA" + "1" * 32
    twiml = await caller(a).answer("/call/incoming", sid)
    async with caller(a).open_stream(twiml, sid, via=a.url) as first:
        assert await echoes(first)
        async with caller(a).open_stream(twiml, sid, via=b.url) as replay:
            await replay.wait_closed()
            assert replay.closed_by_server and replay.close_code == 1008
        assert await echoes(first)  # the genuine call is unaffected
    await wait_for(lambda: all_released(pair))


@pytest.mark.anyio
async def test_a_hangup_request_at_one_instance_ends_the_call_held_by_the_other(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    async with caller(a).dial(via=b.url) as call:
        assert await echoes(call)
        async with httpx.AsyncClient() as client:
            url = f"{a.url}/calls/{call.call_sid}/hangup"
            refused = await client.post(url, headers={"Authorization": "Bearer wrong"})
            resp = await client.post(url, headers={"Authorization": f"Bearer {CONTROL}"})
        assert refused.status_code == 401
        assert resp.status_code == 202 and resp.json()["delivered"] is True
        await call.wait_closed(timeout=20)
        assert call.closed_by_server
    await wait_for(lambda: all_released(pair))
    async with httpx.AsyncClient() as client:
        gone = await client.post(
            f"{a.url}/calls/{call.call_sid}/hangup", headers={"Authorization": f"Bearer {CONTROL}"}
        )
    assert gone.status_code == 404


@pytest.mark.anyio
async def test_max_calls_holds_across_both_instances(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    await wait_for(lambda: all_released(pair))
    async with caller(a).dial(via=b.url) as one, caller(b).dial(via=a.url) as two:
        assert await echoes(one) and await echoes(two)
        assert await webhook_status(a) == 503
        assert await webhook_status(b) == 503
    await wait_for(lambda: all_released(pair))
    assert await webhook_status(b) == 200


@pytest.mark.anyio
async def test_redis_down_refuses_new_calls_while_a_live_call_goes_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    redis = RedisServer(tmp_path / "redis")
    await anyio.to_thread.run_sync(redis.start)
    [inst] = await anyio.to_thread.run_sync(start_instances, tmp_path / "app", redis.url, 1, 10)
    try:
        async with caller(inst).dial() as call:
            assert await echoes(call)
            await anyio.to_thread.run_sync(redis.stop)
            assert await webhook_status(inst) == 503
            async with httpx.AsyncClient() as client:
                assert (await client.get(inst.url + "/readyz")).status_code == 503
            assert await echoes(call)  # the live call does not need Redis
            await anyio.to_thread.run_sync(redis.start)
            await wait_for(lambda: _ready(inst))
            assert await webhook_status(inst) == 200
            assert await echoes(call)
    finally:
        await anyio.to_thread.run_sync(inst.stop)
        await anyio.to_thread.run_sync(redis.stop)


async def _ready(inst: Instance) -> bool:
    async with httpx.AsyncClient() as client:
        return (await client.get(inst.url + "/readyz")).status_code == 200


async def post_twilio_report(inst: Instance, form: dict[str, str]) -> int:
    """A signed Twilio status callback, as Twilio posts it to the public status URL."""
    signature = compute_twilio_signature(PUBLIC + "/call/status", form, TOKEN)
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            inst.url + "/call/status", data=form, headers={"X-Twilio-Signature": signature}
        )
    return resp.status_code


@pytest.mark.anyio
async def test_a_status_callback_at_one_instance_reaches_the_call_and_the_dial_handle_elsewhere(
    pair: list[Instance], redis_server: Any
) -> None:
    # three workers: this test's process dials, the carrier answers at A with the stream on B,
    # and posts its reports to A
    a, b = pair
    callee_number = "+15557654321"
    async with FakeCarrierREST("twilio", SID, TOKEN, place=False) as rest:
        line = CallInterface(
            "twilio",
            NUMBER,
            account_sid=SID,
            auth_token=TOKEN,
            graph=echo_graph,
            api_base_url=rest.base_url,
        )
        dialler = AgentRuntime([line], public_url=PUBLIC, state=redis_server.url)
        async with serve_runtime(dialler):
            handle = await dialler.dial(callee_number, machine_detection=True)
            webhook = urlsplit((await rest.wait_placed()).request["Url"])
            callee = TwilioCaller(
                a.url, TOKEN, account_sid=SID, to=callee_number, from_=NUMBER, public_url=PUBLIC
            )
            report = {"CallSid": handle.call_id, "AccountSid": SID, "Direction": "outbound-api"}
            extra = {"Direction": "outbound-api", "CallStatus": "in-progress"}
            path = f"{webhook.path}?{webhook.query}"
            async with callee.dial(path, extra=extra, call_sid=handle.call_id, via=b.url) as call:
                verdict = {**report, "AnsweredBy": "machine_end_beep"}
                assert await post_twilio_report(a, verdict) == 204
                await call.wait_closed(timeout=20)  # B's graph hung up on the machine
                assert call.closed_by_server
            completed = {**report, "CallStatus": "completed", "CallDuration": "3"}
            assert await post_twilio_report(a, completed) == 204
            final = await handle.outcome(timeout=20)
    assert handle.answered_by is not None and handle.answered_by.result == "machine"
    assert final.status == "completed" and final.duration == 3.0
    await wait_for(lambda: all_released(pair))
