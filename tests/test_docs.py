"""Docs stay in step with the code: pictures in docs are what the code renders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

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


def test_asyncio_page_serving_example_runs_on_the_default_backend(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from voicegraph import AgentRuntime

    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "doc-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-doc-test")
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(AgentRuntime, "run", lambda self, **kw: calls.append(kw))
    code = _blocks((DOCS / "asyncio.md").read_text(), "python")[0]
    exec(compile(code, "asyncio.md", "exec"), {})
    assert calls == [{"host": "127.0.0.1", "port": 8000}]  # no backend given: asyncio


def test_asyncio_page_fastapi_example_mounts_the_runtime_under_its_prefix(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "doc-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-doc-test")
    code = _blocks((DOCS / "asyncio.md").read_text(), "python")[1]
    scope: dict[str, object] = {}
    exec(compile(code, "asyncio.md", "exec"), scope)
    from starlette.routing import Mount

    mounts = {r.path: r.app for r in scope["app"].routes if isinstance(r, Mount)}  # type: ignore[attr-defined]
    assert mounts == {"/voice": scope["runtime"].app}  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_asyncio_page_fastapi_example_runs_the_runtimes_background_work(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from voicegraph.server.state import CallRecord

    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "doc-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-doc-test")
    scope: dict[str, Any] = {}
    exec(
        compile(_blocks((DOCS / "asyncio.md").read_text(), "python")[1], "asyncio.md", "exec"),
        scope,
    )
    app, runtime = scope["app"], scope["runtime"]
    got = anyio.Event()

    async def ping(runtime: Any, call_id: str, message: dict[str, Any]) -> None:
        got.set()

    runtime.call_handlers["ping"] = ping
    async with app.router.lifespan_context(app):
        await runtime.state.register(CallRecord("CA1", runtime.state.worker_id))
        assert await runtime.state.publish("CA1", {"type": "ping"})
        with anyio.fail_after(10):
            await got.wait()  # handled: the state's channel runs in the app's lifespan


def test_asyncio_page_pytest_example_passes_under_both_plugins(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = _blocks((DOCS / "asyncio.md").read_text(), "python")[2]
    (tmp_path / "test_doc_example.py").write_text(code)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_doc_example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "3 passed" in run.stdout, run.stdout + run.stderr


def test_asyncio_page_virtual_clock_example_runs() -> None:
    code = _blocks((DOCS / "asyncio.md").read_text(), "python")[3]
    exec(compile(code, "asyncio.md", "exec"), {})


@pytest.mark.anyio
@pytest.mark.parametrize("page", ["README.md", "docs/outbound.md"])
async def test_the_dial_examples_place_a_call_through_the_fake_carrier(page: str) -> None:
    import socket

    from voicegraph import AgentRuntime, CallInterface
    from voicegraph.testing.fake_dial import Callee
    from voicegraph.testing.fake_rest import FakeCarrierREST
    from voicegraph.testing.server import echo_graph

    code = next(b for b in _blocks((DOCS.parent / page).read_text(), "python") if ".dial(" in b)
    scope: dict[str, Any] = {}
    exec(compile(code, page, "exec"), scope)
    function = next(v for k, v in scope.items() if callable(v) and k in ("call_back", "remind"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sid, token = "AC" + "0" * 32, "doc-token"
    async with FakeCarrierREST(
        "twilio", sid, token, callee=Callee("no-answer"), reach=f"http://127.0.0.1:{port}"
    ) as rest:
        line = CallInterface(
            "twilio",
            "+15551234567",
            account_sid=sid,
            auth_token=token,
            graph=echo_graph,
            api_base_url=rest.base_url,
        )
        runtime = AgentRuntime([line], public_url="http://127.0.0.1")
        result = await function(runtime, "+15557654321", "127.0.0.1", port)
    outcome = result[1] if isinstance(result, tuple) else result
    assert outcome.status == "no-answer" and rest.placed[0].request["MachineDetection"]


def test_turn_taking_example_runs() -> None:
    code = _blocks((DOCS / "turn-taking.md").read_text(), "python")[0]
    scope: dict[str, object] = {}
    exec(compile(code, "turn-taking.md", "exec"), scope)
    assert scope["policy"].language == "es"  # type: ignore[attr-defined]
