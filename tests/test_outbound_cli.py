"""``voicegraph dial``: serve an app's runtime, place one call, follow it to its end."""

from __future__ import annotations

import socket
import sys
from typing import Any

import anyio
import pytest
from e2ekit import TOKEN

from voicegraph.cli import main
from voicegraph.testing.fake_dial import Callee
from voicegraph.testing.fake_rest import FakeCarrierREST

APP = """
from voicegraph import AgentRuntime, CallInterface
from voicegraph.testing.server import echo_graph

runtime = AgentRuntime(
    [CallInterface("twilio", "+14155550199", account_sid="AC" + "0" * 32, auth_token={token!r},
                   graph=echo_graph, api_base_url={api!r})],
    public_url="http://127.0.0.1",
)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
async def test_dial_prints_the_reports_and_exits_1_when_busy(
    tmp_path: Any, monkeypatch: Any, capsys: Any
) -> None:
    port = _free_port()
    async with FakeCarrierREST(
        "twilio", "AC" + "0" * 32, TOKEN, callee=Callee("busy"), reach=f"http://127.0.0.1:{port}"
    ) as rest:
        (tmp_path / "dialapp.py").write_text(APP.format(token=TOKEN, api=rest.base_url))
        monkeypatch.syspath_prepend(str(tmp_path))
        argv = ["dial", "dialapp:runtime", "+15557654321", "--port", str(port)]
        code = await anyio.to_thread.run_sync(main, argv)
        placed = rest.placed[0]
    sys.modules.pop("dialapp", None)
    out = capsys.readouterr().out
    assert code == 1
    assert f"calling +15557654321 from +14155550199: {placed.call_id}" in out
    assert "  ringing" in out and "  busy" in out


def test_dial_refuses_a_number_that_is_not_e164(
    tmp_path: Any, monkeypatch: Any, capsys: Any
) -> None:
    (tmp_path / "dialapp2.py").write_text(APP.format(token=TOKEN, api="http://127.0.0.1:9"))
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["dial", "dialapp2:runtime", "5557654321", "--port", str(_free_port())])
    sys.modules.pop("dialapp2", None)
    assert code == 2 and "is not E.164" in capsys.readouterr().err
