"""docs/architecture.md opens with a map of the folders: every file and folder it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDENT = 2  # spaces per folder level in the map


def _map_block() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Where things live", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def named_paths() -> list[str]:
    """Every path the map names: its entries (nested by indentation) and the ``*.py`` files
    its descriptions mention, relative to the folder they are written in."""
    folders: list[str] = []
    paths: list[str] = []
    for line in _map_block():
        depth = (len(line) - len(line.lstrip())) // INDENT
        entry, _, description = line.strip().partition(" ")
        del folders[depth:]
        where = "/".join(folders)
        paths.append(f"{where}/{entry}" if where else entry)
        if entry.endswith("/"):
            folders.append(entry.rstrip("/"))
            here = "/".join(folders)
        else:
            here = where
        paths += [f"{here}/{name}" for name in re.findall(r"\b\w+\.py\b", description)]
    return paths


def test_every_path_in_the_architecture_map_exists() -> None:
    missing = [p for p in named_paths() if not (ROOT / p).exists()]
    assert missing == []


def test_the_map_names_every_top_level_folder_and_the_server_package() -> None:
    paths = named_paths()
    for folder in ("voicegraph/", "nodes/", "transports/", "voicegraph/server/"):
        assert folder in paths
    assert "nodes/conversation/agent.py" in paths
    assert "voicegraph/server/state/memory.py" in paths  # named in a description


def test_the_map_opens_the_page() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    first_section = re.search(r"^## (.+)$", text, re.M)
    assert first_section is not None and first_section[1] == "Where things live"
