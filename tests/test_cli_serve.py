"""``voicegraph serve``: says where it listens and what it serves, takes ``-v`` anywhere, and
turns listener failures into one sentence; connection errors keep their root cause."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import anyio
import pytest

from voicegraph.cli import _parser, main
from voicegraph.wsio import SocketClosed, connect_websocket

APP = (
    "from voicegraph import AgentRuntime, CallInterface\n"
    "from voicegraph.testing.server import echo_graph\n"
    "line = CallInterface('twilio', '+14155550123', account_sid='AC' + '0' * 32,\n"
    "    auth_token='t', graph=echo_graph)\n"
    "runtime = AgentRuntime([line], public_url='https://agent.example.com')\n"
)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cliapp.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cliapp", None)
    return "cliapp:runtime"


@pytest.mark.parametrize(
    "argv", [["-v", "serve", "x:y"], ["serve", "-v", "x:y"], ["serve", "x:y", "-v"]]
)
def test_verbose_is_accepted_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert _parser().parse_args(argv).verbose == 1


def test_a_port_in_use_is_one_sentence_and_exit_code_1(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", app, "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_an_unresolvable_host_is_one_sentence(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", app, "--host", "no-such-host.invalid", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot resolve --host 'no-such-host.invalid'" in err
    assert "Traceback" not in err


def test_serve_prints_its_address_and_each_line(
    app: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicegraph.server import AgentRuntime

    real_serve = AgentRuntime.serve

    async def serve_then_stop(self, *a, **kw):  # type: ignore[no-untyped-def]
        on_ready = kw.pop("on_ready")
        kw["handle_signals"] = False

        def ready(binds: list[str]) -> None:
            on_ready(binds)
            self.shutdown()  # stop right after start-up: the banner is what is checked

        await real_serve(self, *a, on_ready=ready, **kw)

    monkeypatch.setattr(AgentRuntime, "serve", serve_then_stop)
    assert main(["serve", app, "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert "voicegraph: serving on http://127.0.0.1:" in out
    assert "+14155550123  twilio  cascading  webhook /call/incoming" in out


@pytest.mark.anyio
async def test_a_failed_connection_names_its_root_cause() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: the connection is refused
        with pytest.raises(SocketClosed) as info:
            async with connect_websocket(f"ws://127.0.0.1:{port}/", connect_timeout=5):
                pass
    assert "ConnectionRefusedError" in info.value.reason  # was "handshake failed: " alone
    assert info.value.__cause__ is not None
    await anyio.lowlevel.checkpoint()
