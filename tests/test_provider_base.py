"""The shared provider base: secrets, backoff, send buffer, TTFB, connect/reconnect/close."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio
import pytest
from hypothesis import given, strategies as st

from voicegraph import Actor, AgentText, Call, Graph, In, Out
from voicegraph.nodes.providers import (
    MissingSecret,
    ProviderAuthError,
    ProviderMetrics,
    ProviderUnavailable,
    ReconnectPolicy,
    Secret,
    SendBuffer,
    WebSocketProvider,
)
from voicegraph.testing.fakeserver import FakeServer, WebSocketPeer
from voicegraph.wsio import SocketClosed

FAST = ReconnectPolicy(
    connect_timeout=2.0, max_attempts=3, initial_backoff=0.05, max_backoff=0.1, drain_timeout=1.0
)


class EchoServer(FakeServer):
    """Echoes text; ``drop_on`` closes the first connection with 1011 when that text arrives;
    ``refuse`` answers every handshake with that HTTP status."""

    def __init__(self, drop_on: str | None = None, refuse: int | None = None) -> None:
        super().__init__()
        self.drop_on = drop_on
        self.refuse = refuse
        self.connections: list[list[str | bytes]] = []
        self.handshakes = 0
        self.disconnected = anyio.Event()

    async def websocket(self, ws: WebSocketPeer) -> None:
        self.handshakes += 1
        if self.refuse is not None:
            await ws.reject(self.refuse, body=b"no")
            return
        await ws.accept()
        got: list[str | bytes] = []
        self.connections.append(got)
        try:
            while True:
                msg = await ws.receive()
                got.append(msg)
                if msg == self.drop_on and len(self.connections) == 1:
                    await ws.close(1011, "going away")
                    self.disconnected.set()
                    return
                await ws.send(msg)
        except SocketClosed:
            self.disconnected.set()
            raise


class EchoProvider(WebSocketProvider):
    provider = "echo"
    inputs = (In("in", AgentText),)
    outputs = (Out("out", AgentText),)

    def __init__(self, url: str, keepalive: float | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._url = url
        self.keepalive_interval = keepalive

    def url(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Token secret-value"}

    def keepalive_message(self) -> str:
        return "ka"

    async def handle(self, port: str, frame: AgentText) -> None:  # type: ignore[override]
        await self.transmit(frame.text)

    async def on_message(self, message: str | bytes) -> None:
        assert isinstance(message, str)
        await self.send("out", AgentText(text=message))


Script = Callable[["Feeder"], Awaitable[None]]


class Feeder(Actor):
    outputs = (Out("out", AgentText),)

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script

    async def run(self) -> None:
        await self.script(self)

    async def say(self, text: str) -> None:
        await self.send("out", AgentText(text=text))


class Sink(Actor):
    inputs = (In("in", AgentText),)

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def handle(self, port: str, frame: AgentText) -> None:  # type: ignore[override]
        self.texts.append(frame.text)


def build(provider: EchoProvider, script: Script, sink: Sink | None = None) -> tuple[Call, Sink]:
    g = Graph("t")
    g.add("feed", Feeder(script))
    g.add("p", provider)
    sink = sink or Sink()
    g.add("sink", sink)
    g.chain("feed", "p", "sink")
    return Call(g, "test-call"), sink


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        # Polling: the conditions are plain attributes of fakes and nodes, not events.
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.01)


# ------------------------------------------------------------------ secrets


def test_secret_repr_and_str_never_show_the_value() -> None:
    s = Secret("sk-very-secret")
    assert "sk-very-secret" not in repr(s)
    assert "sk-very-secret" not in str(s)
    assert "sk-very-secret" not in f"{s!r} {s}"
    assert s.reveal() == "sk-very-secret"


def test_secret_loads_from_env_when_no_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VG_TEST_KEY", "from-env")
    assert Secret.load(None, "VG_TEST_KEY", "echo").reveal() == "from-env"


def test_secret_argument_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VG_TEST_KEY", "from-env")
    assert Secret.load("from-arg", "VG_TEST_KEY", "echo").reveal() == "from-arg"


def test_missing_secret_error_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VG_TEST_KEY", raising=False)
    with pytest.raises(MissingSecret, match="VG_TEST_KEY"):
        Secret.load(None, "VG_TEST_KEY", "echo")


# ----------------------------------------------------------------- backoff


@given(attempt=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_backoff_stays_within_jittered_exponential_bounds(attempt: int, seed: int) -> None:
    p = ReconnectPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=3.0, jitter=0.3)
    base = min(3.0, 0.1 * 2.0 ** (attempt - 1))
    d = p.backoff(attempt, random.Random(seed))
    assert base * 0.7 - 1e-9 <= d <= base + 1e-9


def test_backoff_without_jitter_doubles_until_the_cap() -> None:
    p = ReconnectPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=0.5, jitter=0.0)
    assert [round(p.backoff(n), 3) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_reconnect_policy_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ReconnectPolicy(max_attempts=0)


# ------------------------------------------------------------- send buffer


def test_send_buffer_drops_oldest_past_message_limit_and_counts() -> None:
    m = ProviderMetrics()
    buf = SendBuffer(max_messages=3, max_bytes=1000, metrics=m)
    for i in range(5):
        buf.append(bytes([i]) * 10)
    assert [buf.popleft()[0] for _ in range(len(buf))] == [2, 3, 4]
    assert (m.dropped_messages, m.dropped_bytes) == (2, 20)


def test_send_buffer_drops_oldest_past_byte_limit() -> None:
    m = ProviderMetrics()
    buf = SendBuffer(max_messages=100, max_bytes=25, metrics=m)
    for i in range(4):
        buf.append(bytes([i]) * 10)
    assert len(buf) == 2 and buf.nbytes == 20
    assert m.dropped_messages == 2


# ------------------------------------------------------------------- ttfb


@pytest.mark.anyio
async def test_ttfb_is_recorded_once_per_request() -> None:
    m = ProviderMetrics()
    m.request_started("u1", at=anyio.current_time() - 0.25)
    first = m.first_byte("u1")
    assert first is not None and first >= 0.25
    assert m.first_byte("u1") is None
    assert list(m.ttfb) == [first] and m.last_ttfb == first


# ------------------------------------------------------- connection life


@pytest.mark.anyio
async def test_messages_reach_the_provider_and_replies_flow_downstream() -> None:
    async with EchoServer() as srv:
        p = EchoProvider(srv.ws_url, reconnect=FAST)
        sink = Sink()

        async def script(f: Feeder) -> None:
            for t in ("one", "two", "three"):
                await f.say(t)
            await wait_for(lambda: len(sink.texts) == 3)

        call, _ = build(p, script, sink)
        result = await call.run()
    assert result.reason == "completed", result.error
    assert srv.connections == [["one", "two", "three"]]
    assert sink.texts == ["one", "two", "three"]


@pytest.mark.anyio
async def test_dropped_socket_reconnects_and_sends_buffered_messages_in_order() -> None:
    async with EchoServer(drop_on="drop") as srv:
        p = EchoProvider(srv.ws_url, reconnect=FAST)
        sink = Sink()

        async def script(f: Feeder) -> None:
            await f.say("drop")
            await wait_for(lambda: srv.disconnected.is_set() and not p.connected)
            for t in ("a", "b", "c"):
                await f.say(t)
            await wait_for(lambda: len(sink.texts) == 3)

        call, _ = build(p, script, sink)
        result = await call.run()
    assert result.reason == "completed", result.error
    assert srv.connections[1] == ["a", "b", "c"]
    assert p.metrics.reconnects == 1
    assert p.metrics.dropped_messages == 0
    assert sink.texts == ["a", "b", "c"]


@pytest.mark.anyio
async def test_provider_that_stays_down_raises_provider_unavailable() -> None:
    async with EchoServer(refuse=503) as srv:
        p = EchoProvider(srv.ws_url, reconnect=FAST)

        async def script(f: Feeder) -> None:
            await f.say("hello")
            await anyio.sleep(10)

        call, _ = build(p, script)
        result = await call.run()
    assert result.reason == "error"
    assert result.error is not None and isinstance(result.error.exc, ProviderUnavailable)
    assert srv.handshakes == 1 + FAST.max_attempts


@pytest.mark.anyio
async def test_refused_key_raises_auth_error_without_retrying() -> None:
    async with EchoServer(refuse=401) as srv:
        p = EchoProvider(srv.ws_url, reconnect=FAST)

        async def script(f: Feeder) -> None:
            await anyio.sleep(10)

        call, _ = build(p, script)
        result = await call.run()
    assert result.error is not None and isinstance(result.error.exc, ProviderAuthError)
    assert "secret-value" not in str(result.error)
    assert srv.handshakes == 1


@pytest.mark.anyio
async def test_keepalive_is_sent_while_no_input_flows() -> None:
    async with EchoServer() as srv:
        p = EchoProvider(srv.ws_url, keepalive=0.05, reconnect=FAST)

        async def script(f: Feeder) -> None:
            await f.say("x")
            await wait_for(lambda: bool(srv.connections) and srv.connections[-1].count("ka") >= 2)

        call, _ = build(p, script)
        result = await call.run()
    assert result.reason == "completed", result.error
    assert srv.connections[0][0] == "x"


@pytest.mark.anyio
async def test_stopping_the_call_closes_the_provider_socket() -> None:
    async with EchoServer() as srv:
        p = EchoProvider(srv.ws_url, reconnect=FAST)

        async def script(f: Feeder) -> None:
            await f.say("x")
            await anyio.sleep(10)

        call, _ = build(p, script)
        async with anyio.create_task_group() as tg:
            tg.start_soon(call.run)
            await wait_for(lambda: bool(srv.connections) and srv.connections[0] == ["x"])
            call.stop("test")
        with anyio.fail_after(3):
            await srv.disconnected.wait()


# ------------------------------------------------------------ events for observers


def provider_events(call: Call) -> list[tuple[str, bool, bool, str]]:
    from voicegraph.events import ProviderEvent

    return [
        (e.what, e.ok, e.reconnect, e.error)
        for e in call.recent_events
        if isinstance(e, ProviderEvent) and e.what != "request"
    ]


@pytest.mark.anyio
async def test_a_dropped_socket_publishes_its_connect_drop_and_reconnect() -> None:
    async with EchoServer(drop_on="drop") as srv:
        p = EchoProvider(srv.ws_url, reconnect=FAST)

        async def script(f: Feeder) -> None:
            await f.say("drop")
            await wait_for(lambda: srv.disconnected.is_set() and not p.connected)
            await f.say("a")
            await wait_for(lambda: p.metrics.reconnects == 1)

        call, _ = build(p, script)
        await call.run()
    assert provider_events(call) == [
        ("connect", True, False, ""),
        ("disconnect", False, False, "disconnected"),
        ("connect", True, True, ""),
    ]


@pytest.mark.anyio
async def test_a_provider_that_stays_down_publishes_each_failed_attempt_then_gives_up() -> None:
    async with EchoServer(refuse=503) as srv:
        p = EchoProvider(srv.ws_url, reconnect=FAST)

        async def script(f: Feeder) -> None:
            await anyio.sleep(10)

        call, _ = build(p, script)
        await call.run()
    events = provider_events(call)
    assert events[:-1] == [("connect", False, False, "connect_failed")] * (1 + FAST.max_attempts)
    assert events[-1] == ("failed", False, False, "unavailable")


@pytest.mark.anyio
async def test_a_first_response_publishes_the_request_with_its_time_to_first_byte() -> None:
    from voicegraph.events import ProviderEvent

    p = EchoProvider("ws://127.0.0.1:9/unused")
    call, _ = build(p, Feeder.say)  # not run: the event bus works from construction
    p.metrics.request_started("k")
    assert p.metrics.first_byte("k") is not None
    (ev,) = [e for e in call.recent_events if isinstance(e, ProviderEvent)]
    assert (ev.what, ev.provider, ev.node) == ("request", "echo", "p")
    assert ev.start <= ev.first == ev.end
