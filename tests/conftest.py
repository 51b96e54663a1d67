"""Shared test set-up: async tests run on anyio's asyncio backend (voicegraph's default).

Modules whose behaviour must hold on both backends (engine, channel, runtime, playout, one
end-to-end call per mode and carrier) override ``anyio_backend`` with
``enginekit.BOTH_BACKENDS``.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real redis-server on a free loopback port for the whole session."""
    from redis_kit import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
