"""docs/architecture.md opens with a map of the folders: every file and folder it names exists."""

from __future__ import annotations

import ast
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


# A module does one thing; past this many lines it must say, in its module docstring, why it
# is one piece (for example one class whose parts share state) -- or be split.
MAX_LINES = 420
ONE_PIECE = "one piece"
SOURCES = ("voicegraph", "nodes", "transports")


def _source_files() -> list[Path]:
    files: list[Path] = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if parts[0] == "voicegraph" and parts[1] in ("nodes", "transports"):
                continue  # a source checkout's link to the top-level folder: counted there
            files.append(path)
    return files


def oversized(paths: list[Path]) -> dict[str, int]:
    """The modules over MAX_LINES whose docstring does not say they are one piece, with their
    line counts."""
    found: dict[str, int] = {}
    for path in paths:
        text = path.read_text()
        lines = len(text.splitlines())
        if lines <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text, str(path))) or ""
        if ONE_PIECE not in " ".join(docstring.split()).lower():
            found[str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)] = lines
    return found


def test_no_module_is_over_the_limit_without_saying_why_it_is_one_piece() -> None:
    assert oversized(_source_files()) == {}


def test_a_long_module_passes_only_with_the_one_piece_note(tmp_path: Path) -> None:
    body = "x = 1\n" * MAX_LINES
    short = tmp_path / "short.py"
    short.write_text('"""Short."""\n' + "x = 1\n" * (MAX_LINES - 1))
    bare = tmp_path / "bare.py"
    bare.write_text('"""A long module."""\n' + body)
    noted = tmp_path / "noted.py"
    noted.write_text(
        '"""A long module.\n\nOne class whose parts share state: it is one\npiece."""\n' + body
    )
    assert oversized([short, bare, noted]) == {str(bare): MAX_LINES + 1}


def test_the_walk_sees_every_source_folder_once() -> None:
    files = {str(p.relative_to(ROOT)) for p in _source_files()}
    assert {"voicegraph/graph.py", "nodes/audio/g711.py", "transports/_base.py"} <= files
    assert not any(f.startswith(("voicegraph/nodes/", "voicegraph/transports/")) for f in files)
