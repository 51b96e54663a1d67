"""The fusion example in docs/architecture.md runs as printed (its asserts are the check)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_fusion_example_runs_and_fused_equals_unfused() -> None:
    text = (DOCS / "architecture.md").read_text()
    section = text.split("### Fusion: what a stage may do", 1)[1].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    scope: dict[str, object] = {"__name__": "fusion_example"}
    exec(compile(code, "architecture.md", "exec"), scope)
    assert scope["fused"] == scope["unfused"]
    assert len(scope["fused"]) == 5  # type: ignore[arg-type]
