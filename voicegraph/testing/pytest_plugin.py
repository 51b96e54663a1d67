"""voicegraph's pytest plugin: fixtures for testing your own agent (registered as the
``pytest11`` entry point ``voicegraph``, so installing voicegraph makes them available).

Every fixture is a plain, synchronous fixture that hands you something to *enter inside your
async test* (``async with``). Nothing starts before your test runs, in your test's own event
loop, so the same test works under anyio's pytest plugin (asyncio or trio) and under
pytest-asyncio (strict or auto mode) alike.

* ``fake_chat``, ``fake_deepgram``, ``fake_cartesia``, ``fake_realtime`` -- a fresh, not yet
  started fake of each provider. Script it (``fake_chat.replies = [...]``,
  ``fake_deepgram.transcripts = [...]``...), then ``async with fake_chat: ...``.
* ``serve_app`` -- :func:`~voicegraph.testing.served.serve_app`: ``async with serve_app(runtime)
  as app`` serves your runtime (or bare interfaces) on loopback.
* ``twilio_caller``, ``plivo_caller``, ``relay_caller`` -- ``twilio_caller(app, **options)``
  makes a simulated caller that fits the served app (number, credentials, public URL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .fake_cartesia import FakeCartesia
from .fake_chat import FakeChatCompletions
from .fake_deepgram import FakeDeepgram
from .fake_openai_realtime import FakeOpenAIRealtime
from .plivo_caller import PlivoCaller
from .relay_caller import RelayCaller
from .served import ServedApp, serve_app as _serve_app
from .twilio_caller import TwilioCaller


@pytest.fixture
def fake_chat() -> FakeChatCompletions:
    """A fresh :class:`FakeChatCompletions` (set ``.replies``; enter with ``async with``;
    ``.llm()`` is a client for it)."""
    return FakeChatCompletions()


@pytest.fixture
def fake_deepgram() -> FakeDeepgram:
    """A fresh :class:`FakeDeepgram` (set ``.transcripts``; enter with ``async with``)."""
    return FakeDeepgram()


@pytest.fixture
def fake_cartesia() -> FakeCartesia:
    """A fresh :class:`FakeCartesia` (enter with ``async with``)."""
    return FakeCartesia()


@pytest.fixture
def fake_realtime() -> FakeOpenAIRealtime:
    """A fresh :class:`FakeOpenAIRealtime` (set ``.transcripts``, ``.replies``, ``.greeting``;
    enter with ``async with``)."""
    return FakeOpenAIRealtime()


@pytest.fixture
def serve_app() -> Callable[..., Any]:
    """:func:`voicegraph.testing.serve_app` (``async with serve_app(runtime) as app``)."""
    return _serve_app


@pytest.fixture
def twilio_caller() -> Callable[..., TwilioCaller]:
    """``twilio_caller(app, **options)``: a Media Streams caller for a served app."""
    return lambda app, **options: _served(app).twilio_caller(**options)


@pytest.fixture
def plivo_caller() -> Callable[..., PlivoCaller]:
    """``plivo_caller(app, **options)``: an Audio Streams caller for a served app."""
    return lambda app, **options: _served(app).plivo_caller(**options)


@pytest.fixture
def relay_caller() -> Callable[..., RelayCaller]:
    """``relay_caller(app, **options)``: a ConversationRelay caller for a served app."""
    return lambda app, **options: _served(app).relay_caller(**options)


def _served(app: Any) -> ServedApp:
    if not isinstance(app, ServedApp):
        raise TypeError("pass the app yielded by `async with serve_app(...) as app`")
    return app
