"""Drain: readiness turns 503, calls left at the deadline get a goodbye and a REST hang-up, and a
second signal cuts the wait short instead of killing the process silently."""

from __future__ import annotations

import logging
import os
import signal
from functools import partial

import anyio
import httpx
import pytest
from e2ekit import PUBLIC, TOKEN
from test_polite_end import _line

from voicegraph import AgentRuntime
from voicegraph.nodes.providers import ReconnectPolicy
from voicegraph.testing.fake_cartesia import FakeCartesia
from voicegraph.testing.fake_deepgram import FakeDeepgram
from voicegraph.testing.fake_rest import FakeCarrierREST
from voicegraph.testing.server import serve_runtime
from voicegraph.testing.twilio_caller import TwilioCaller

POLICY = ReconnectPolicy(initial_backoff=0.01, max_backoff=0.02)


async def _until(predicate: object) -> None:
    with anyio.fail_after(20):  # a safety net, not a timing claim
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_calls_left_at_the_drain_deadline_hear_a_goodbye_then_are_hung_up() -> None:
    async with (
        FakeDeepgram([]) as dg,
        FakeCartesia() as tts,
        FakeCarrierREST("twilio", "AC" + "0" * 32, TOKEN) as rest,
    ):
        line = _line(dg, tts, rest, POLICY)
        line.greeting = None  # whatever the caller hears is the goodbye
        runtime = AgentRuntime([line], public_url=PUBLIC, drain_timeout=0.1)
        async with serve_runtime(runtime) as url:
            caller = TwilioCaller(url, TOKEN, public_url=PUBLIC, playback_rate=4.0)
            async with caller.dial() as call:
                await _until(lambda: runtime.calls)
                runtime.shutdown()
                assert await rest.wait_for_hangup(call.call_sid, timeout=20)
                heard = call.heard_seconds
    assert heard > 1.0  # the goodbye sentence was played, then the REST hang-up came
    assert runtime.calls == {}


@pytest.mark.anyio
async def test_readiness_turns_503_while_draining_and_liveness_stays_200() -> None:
    from test_shutdown import make_runtime

    runtime = make_runtime(drain_timeout=30)
    async with serve_runtime(runtime) as url, httpx.AsyncClient() as client:
        assert (await client.get(url + "/readyz")).status_code == 200
        runtime.draining = True  # what drain() sets first
        assert (await client.get(url + "/readyz")).status_code == 503
        assert (await client.get(url + "/healthz")).status_code == 200
        runtime.draining = False


@pytest.mark.anyio
async def test_a_second_signal_is_logged_and_ends_the_drain_now(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from test_server_twilio import answered, call_sid, signed_headers, start_msg, ws_url
    from test_shutdown import make_runtime

    from voicegraph.wsio import connect_websocket

    caplog.set_level(logging.INFO, "voicegraph.server")
    runtime = make_runtime(drain_timeout=3600)  # only the second signal can end this drain
    served = anyio.Event()

    async def serve(*, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        await runtime.serve("127.0.0.1", 0, handle_signals=True, task_status=task_status)
        served.set()

    async with anyio.create_task_group() as tg:
        [base] = await tg.start(partial(serve))
        params = await answered(base, call_sid(1))
        async with connect_websocket(ws_url(base), signed_headers()) as ws:
            await ws.send(start_msg(call_sid(1), params))
            await _until(lambda: runtime.calls)
            os.kill(os.getpid(), signal.SIGTERM)
            await _until(lambda: runtime.draining)
            os.kill(os.getpid(), signal.SIGTERM)
            with anyio.fail_after(20):
                await served.wait()
    assert runtime.calls == {}
    assert any("again" in r.getMessage() for r in caplog.records)


def test_default_shutdown_fits_a_30_second_grace_period() -> None:
    from test_shutdown import make_runtime

    runtime = make_runtime(drain_timeout=20)
    assert AgentRuntime.__init__.__kwdefaults__["drain_timeout"] == 20.0  # type: ignore[index]
    # drain wait + goodbyes (+1 s slack) + final stop wait (2 s) + listener close (1 s)
    assert runtime.drain_timeout + runtime.goodbye_timeout + 1 + 2 + 1 <= 30
