"""The `voicegraph` command line: graph printing and the errors of `serve APP`."""

from __future__ import annotations

import sys
import types

import pytest

from voicegraph.cli import COMMANDS, CommandError, load_runtime, main


def test_graph_prints_the_cascading_preset_as_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--preset", "cascading"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR")
    for node in ("carrier_in", "vad", "stt", "turns", "barge_in", "agent", "tts", "playout"):
        assert f'{node}["' in out or f'{node}(["' in out


@pytest.mark.parametrize(
    ("preset", "carrier", "node"),
    [
        ("realtime", "twilio", "OpenAIRealtime"),
        ("realtime", "plivo", "PlivoStreamIn"),
        ("managed", "twilio", "RelayIn"),
    ],
)
def test_graph_builds_every_preset(
    capsys: pytest.CaptureFixture[str], preset: str, carrier: str, node: str
) -> None:
    assert main(["graph", "--preset", preset, "--carrier", carrier]) == 0
    assert node in capsys.readouterr().out


def test_graph_refuses_managed_on_plivo_in_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--preset", "managed", "--carrier", "plivo"]) == 2
    assert "ConversationRelay" in capsys.readouterr().err


def test_serve_with_a_missing_module_says_how_to_fix_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "no_such_module_here:runtime"]) == 2
    err = capsys.readouterr().err
    assert "no module named 'no_such_module_here'" in err and "Traceback" not in err


def test_serve_app_must_name_an_attribute() -> None:
    with pytest.raises(CommandError, match="module:attribute"):
        load_runtime("json")


def test_serve_with_a_missing_attribute_names_it() -> None:
    with pytest.raises(CommandError, match="has no attribute 'nope'"):
        load_runtime("json:nope")


def test_serve_refuses_an_object_that_is_not_a_runtime() -> None:
    with pytest.raises(CommandError, match="not an AgentRuntime"):
        load_runtime("json:dumps")


def _fake_module(monkeypatch: pytest.MonkeyPatch) -> object:
    from voicegraph import AgentRuntime, CallInterface

    iface = CallInterface(
        "twilio",
        "+14155550199",
        account_sid="AC" + "0" * 32,
        auth_token="t" * 32,
        graph=lambda s: None,
    )
    runtime = AgentRuntime([iface], public_url="https://agent.example.com")
    mod = types.ModuleType("vg_cli_app")
    mod.runtime = runtime  # type: ignore[attr-defined]
    mod.make = lambda: runtime  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vg_cli_app", mod)
    return runtime


def test_serve_loads_a_runtime_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _fake_module(monkeypatch)
    assert load_runtime("vg_cli_app:runtime") is runtime


def test_serve_calls_a_zero_argument_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _fake_module(monkeypatch)
    assert load_runtime("vg_cli_app:make") is runtime


def test_serve_rejects_bad_worker_counts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_module(monkeypatch)
    assert main(["serve", "vg_cli_app:runtime", "--workers", "0"]) == 2
    assert "--workers 0" in capsys.readouterr().err


def test_subcommands_are_a_table_open_to_more() -> None:
    assert {"demo", "serve", "graph"} <= set(COMMANDS)
