"""Docs stay in step with the code: pictures in docs are what the code renders."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_architecture_picture_is_what_its_code_renders() -> None:
    text = (DOCS / "architecture.md").read_text()
    code, picture = _blocks(text, "python")[0], _blocks(text, "mermaid")[0]
    scope: dict[str, object] = {}
    exec(compile(code, "architecture.md", "exec"), scope)
    assert scope["g"].to_mermaid() == picture  # type: ignore[attr-defined]


def test_preset_pictures_are_what_the_presets_render() -> None:
    from voicegraph.presets import sketch

    text = (DOCS / "presets.md").read_text()
    pictures = _blocks(text, "mermaid")
    expected = [
        sketch(*k).to_mermaid()
        for k in [
            ("cascading", "twilio"),
            ("cascading", "plivo"),
            ("realtime", "twilio"),
            ("managed", "twilio"),
        ]
    ]
    assert pictures == expected


def test_taking_a_preset_apart_example_runs() -> None:
    text = (DOCS / "presets.md").read_text()
    code = _blocks(text, "python")[-1]
    scope: dict[str, object] = {}
    exec(compile(code, "presets.md", "exec"), scope)
    g = scope["g"]
    assert sorted(e.dst for e in g.edges if e.src == "meter") == ["stt", "vad"]  # type: ignore[attr-defined]
    assert [e.src for e in g.edges if e.dst == "meter"] == ["carrier_in"]  # type: ignore[attr-defined]


def test_readme_graph_is_what_voicegraph_graph_prints() -> None:
    from voicegraph.cli import preset_graph

    readme = (DOCS.parent / "README.md").read_text()
    assert (
        _blocks(readme, "mermaid")[0] == preset_graph("cascading", "twilio", "offline").to_mermaid()
    )


def test_quick_start_and_readme_examples_build_their_runtimes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from voicegraph import AgentRuntime

    for var in (
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "PLIVO_AUTH_ID",
        "PLIVO_AUTH_TOKEN",
        "DEEPGRAM_API_KEY",
        "CARTESIA_API_KEY",
        "OPENAI_API_KEY",
    ):
        monkeypatch.setenv(var, "AC" + "0" * 32 if var == "TWILIO_ACCOUNT_SID" else "doc-test")
    ran: list[object] = []
    monkeypatch.setattr(AgentRuntime, "run", lambda self, **kw: ran.append(self))
    pages = [
        "quickstart-managed.md",
        "quickstart-cascading.md",
        "quickstart-realtime.md",
        "interface.md",
    ]
    sources = [(p, _blocks((DOCS / p).read_text(), "python")[0]) for p in pages]
    sources.append(("README.md", _blocks((DOCS.parent / "README.md").read_text(), "python")[0]))
    for name, code in sources:
        scope: dict[str, object] = {}
        exec(compile(code, name, "exec"), scope)
        assert "runtime" in scope or ran, name
    assert len(ran) == 2  # README and interface.md call run()


def test_turn_taking_example_runs() -> None:
    code = _blocks((DOCS / "turn-taking.md").read_text(), "python")[0]
    scope: dict[str, object] = {}
    exec(compile(code, "turn-taking.md", "exec"), scope)
    assert scope["policy"].language == "es"  # type: ignore[attr-defined]
