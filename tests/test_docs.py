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
