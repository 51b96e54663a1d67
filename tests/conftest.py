"""Shared test set-up: every async test runs on anyio's trio backend."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "trio"
