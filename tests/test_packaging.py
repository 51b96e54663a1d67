"""The distribution ships every package: nodes/ and transports/ map into voicegraph.*."""

from __future__ import annotations

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


def test_engine_does_not_import_trio_directly() -> None:
    for name in ("frames", "channel", "node", "graph", "runtime"):
        text = (ROOT / "voicegraph" / f"{name}.py").read_text()
        assert "import trio" not in text, f"voicegraph/{name}.py must use anyio only"


def test_license_is_an_spdx_string_so_builds_print_no_deprecation() -> None:
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in meta["build-system"]["requires"]  # the first to accept SPDX
