"""docs/testing.md's examples run, each as a pytest module of its own, under the runners the
page shows: anyio's plugin (on asyncio, voicegraph's default; the text-mode example on trio
too) and pytest-asyncio."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
BACKEND = "import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return {!r}\n"
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def run(pytester: pytest.Pytester, code: str, *args: str, trio: bool = False) -> pytest.RunResult:
    # anyio's own fixture runs each test on every installed backend: choose one
    pytester.makeconftest(BACKEND.format("trio" if trio else "asyncio"))
    pytester.makeini(INI)
    pytester.makepyfile(test_example=code)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_the_page_has_the_three_levels_and_both_runners() -> None:
    assert len(blocks()) == 5


@pytest.mark.parametrize("level", [0, 1, 2], ids=["text-mode", "scenario", "full-call"])
def test_each_levels_example_passes_on_the_default_backend(
    pytester: pytest.Pytester, level: int
) -> None:
    run(pytester, blocks()[level]).assert_outcomes(passed=1)


def test_the_text_mode_example_passes_on_trio(pytester: pytest.Pytester) -> None:
    run(pytester, blocks()[0], trio=True).assert_outcomes(passed=1)


def test_the_anyio_plugin_example_passes_on_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    result = run(pytester, blocks()[3], "-v")  # one PASSED line per backend
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*test_with_anyio?asyncio? PASSED*", "*test_with_anyio?trio? PASSED*"]
    )


def test_the_pytest_asyncio_example_passes(pytester: pytest.Pytester) -> None:
    run(pytester, blocks()[4]).assert_outcomes(passed=1)


def test_the_pytest_asyncio_example_passes_in_auto_mode(pytester: pytest.Pytester) -> None:
    code = blocks()[4].replace("@pytest.mark.asyncio\n", "")
    run(pytester, code, "-o", "asyncio_mode=auto").assert_outcomes(passed=1)


@pytest.mark.anyio
async def test_the_managed_quickstarts_test_snippet_calls_its_own_app(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from voicegraph.testing import FakeChatCompletions, serve_runtime

    page = (PAGE.parent / "quickstart-managed.md").read_text()
    app_code, snippet = re.findall(r"```python\n(.*?)```", page, flags=re.S)[:2]
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "quickstart-token")
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    app: dict[str, object] = {}
    exec(compile(app_code, "quickstart-managed.md", "exec"), app)
    printed: list[str] = []
    body = "async def snippet():\n" + "".join(f"    {line}\n" for line in snippet.splitlines())
    async with FakeChatCompletions(["Monday we are closed."]) as fake:
        app["line"].agent.llm = fake.llm()  # type: ignore[attr-defined]
        async with serve_runtime(app["runtime"]) as base_url:  # type: ignore[arg-type]
            scope = {
                "base_url": base_url,
                "auth_token": "quickstart-token",
                "print": printed.append,
            }
            exec(compile(body, "quickstart-managed.md", "exec"), scope)
            await scope["snippet"]()  # type: ignore[operator]
    assert printed == ["Monday we are closed."]
