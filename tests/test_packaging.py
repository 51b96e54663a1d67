"""The distribution ships every package: nodes/ and transports/ map into voicegraph.*."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {
    "voicegraph": "voicegraph",
    "nodes": "voicegraph.nodes",
    "transports": "voicegraph.transports",
}


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top, dotted in MAPPING.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([dotted, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these listed packages have no directory"


def test_subpackages_import_under_voicegraph_names() -> None:
    import voicegraph.nodes
    import voicegraph.transports

    assert Path(voicegraph.nodes.__file__).parent.name == "nodes"
    assert Path(voicegraph.transports.__file__).parent.name == "transports"


# Every module stays on anyio except the backend adapters, each of which exists to know it.
BACKEND_ADAPTERS = {
    "voicegraph/backends.py": "chooses and starts the event loop",
    "voicegraph/wsio.py": "picows or websockets on asyncio, trio-websocket on Trio",
    "voicegraph/_picows.py": "picows is an asyncio library (client and media listener sockets)",
    "voicegraph/server/state/_bridge.py": "awaits redis-py's asyncio client from Trio",
    "voicegraph/testing/clock.py": "an asyncio event loop on virtual time (Trio has MockClock)",
    "voicegraph/server/_media_picows.py": "picows is an asyncio library (the media listener)",
    "voicegraph/testing/_fakeserver_picows.py": "picows is an asyncio library (the fakes' engine)",
    "voicegraph/testing/_fakeserver_http.py": "the fakes' HTTP engine is an asyncio protocol",
    "nodes/llm/_http.py": "aiohttp on asyncio (its pool belongs to one event loop), httpx on Trio",
}
IMPORTS_OF_A_BACKEND = re.compile(
    r"^\s*(?:import|from)\s+(?:asyncio|trio|trio_websocket|uvloop)\b", re.M
)


def _anyio_only_modules() -> list[Path]:
    files = []
    for top in ("voicegraph", "nodes", "transports"):
        files += [
            path
            for path in sorted((ROOT / top).rglob("*.py"))
            # voicegraph/nodes and voicegraph/transports are symlinks to the top-level folders
            if not path.is_relative_to(ROOT / "voicegraph" / "nodes")
            and not path.is_relative_to(ROOT / "voicegraph" / "transports")
            and str(path.relative_to(ROOT)) not in BACKEND_ADAPTERS
        ]
    return files


def test_every_backend_adapter_named_exists() -> None:
    assert [name for name in BACKEND_ADAPTERS if not (ROOT / name).is_file()] == []


def test_engine_nodes_and_transports_do_not_import_asyncio_or_trio() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in _anyio_only_modules()
        if IMPORTS_OF_A_BACKEND.search(path.read_text())
    ]
    assert offenders == [], "these modules must use anyio only (no asyncio/trio imports)"


def test_the_backend_import_check_sees_both_forms() -> None:
    for line in ("import asyncio", "    from trio import sleep", "import trio.testing"):
        assert IMPORTS_OF_A_BACKEND.search(line)
    for line in ("import anyio", "# asyncio is the default", "import asyncpg"):
        assert not IMPORTS_OF_A_BACKEND.search(line)


def test_license_is_an_spdx_string_so_builds_print_no_deprecation() -> None:
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in meta["build-system"]["requires"]  # the first to accept SPDX


def _lazy_table_and_checked_imports(init: Path) -> tuple[dict[str, str], dict[str, str]]:
    import ast

    tree = ast.parse(init.read_text())
    table: dict[str, str] = {}
    seen: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "_LAZY":
            assert node.value is not None
            table = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    assert alias.asname == alias.name, "re-export explicitly: `X as X`"
                    seen[alias.name] = "." * imp.level + (imp.module or "")
    return table, seen


def test_every_lazy_name_has_its_type_for_editors_and_type_checkers() -> None:
    # A lazily exported name is Any to pyright/mypy/editors unless the package also imports it
    # under TYPE_CHECKING: the two lists must name the same things from the same modules.
    for init in (ROOT / "voicegraph" / "__init__.py", ROOT / "nodes" / "__init__.py"):
        table, seen = _lazy_table_and_checked_imports(init)
        assert table, f"{init.name}: no _LAZY table found"
        assert seen == table, f"{init.relative_to(ROOT)}: TYPE_CHECKING imports differ from _LAZY"


def test_lazy_names_load_from_the_modules_their_table_names() -> None:
    import importlib

    for package in ("voicegraph", "voicegraph.nodes"):
        module = importlib.import_module(package)
        for name, sub in module._LAZY.items():
            assert getattr(module, name) is getattr(importlib.import_module(sub, package), name), (
                f"{package}.{name}"
            )
