"""FakeOpenAIRealtime: the OpenAI Realtime WebSocket protocol (beta and GA) on loopback.

It checks every client event against the protocol (strict per-dialect schemas: a beta field in
a GA session fails the way the service fails), runs an energy VAD over the appended audio,
"transcribes" each caller utterance from a script, and answers with scripted responses: real
audio of the right length in the session's format (a tone, ``ms_per_char`` per character of
the reply) with transcript deltas, or a function call. It handles ``response.cancel``,
``conversation.item.truncate`` (with the service's errors), ``function_call_output`` and
``response.create``. Latency and faults (refused auth, service down, close mid-response, stall,
malformed message) are configurable per connection.

    async with FakeOpenAIRealtime(transcripts=["hi"], replies=["Hello!"]) as fake:
        node = OpenAIRealtime(api_key=fake.api_key, base_url=fake.url)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import anyio

from ._realtime_protocol import (
    RealtimeConnection,
    RealtimeFault,
    RealtimeReply,
    Reply,
    _http_error,
)
from ._realtime_session import _Session
from .fakeserver import FakeServer, WebSocketPeer

__all__ = ["FakeOpenAIRealtime", "RealtimeConnection", "RealtimeFault", "RealtimeReply"]


class FakeOpenAIRealtime(FakeServer):
    """A scripted OpenAI Realtime service on ``127.0.0.1`` (ephemeral port).

    ``transcripts``: what the caller "said", one per utterance the VAD detects, in order (when
    they run out, transcription fails with an event saying so). ``replies``: one per response,
    in order; a string (spoken), a :class:`RealtimeReply`, or a callable taking what was heard
    (the transcript, or the ``response.create`` instructions). When replies run out the fake
    speaks an apology that says so. ``api_key``: the only key accepted (``None``: any).
    ``faults``: one per connection, in order (``None``: healthy). ``ttfb``: delay before the
    first audio; ``chunk_ms``: audio per delta; ``speed``: times real time to send audio at
    (``None``: at once); ``ms_per_char``: spoken length per character of reply text (60 ms:
    "Hi." is 0.18 s of audio).

    ``greeting``: the reply to a response the client asks for before the caller said anything
    (an agent's greeting); it never uses up ``replies``, so ``replies[0]`` answers the caller's
    first utterance. A string, :class:`RealtimeReply`, or a callable taking the response's
    instructions; ``None`` says what the instructions ask for (the text after "saying exactly:",
    as voicegraph's greeting request puts it), else "Hello.".

    :attr:`url` is the ``base_url`` to give the client; :attr:`connections` records each
    connection (:class:`RealtimeConnection`).
    """

    def __init__(
        self,
        *,
        transcripts: Sequence[str] = (),
        replies: Sequence[Reply] = (),
        api_key: str | None = "test-key",
        faults: Sequence[RealtimeFault | None] = (),
        ttfb: float = 0.0,
        chunk_ms: int = 100,
        speed: float | None = None,
        ms_per_char: int = 60,
        greeting: Reply | None = None,
    ) -> None:
        super().__init__(max_message=16 << 20)
        self.transcripts = list(transcripts)
        self.replies = list(replies)
        self.api_key = api_key
        self.faults = list(faults)
        self.ttfb = ttfb
        self.chunk_ms = chunk_ms
        self.speed = speed
        self.ms_per_char = ms_per_char
        self.greeting = greeting
        self.connections: list[RealtimeConnection] = []
        self.handshakes = 0
        self._sessions: set[_Session] = set()
        self._ids = itertools.count(1)
        self._changed = anyio.Event()
        self._transcript = 0
        self._reply = 0

    async def drop(self) -> None:
        """Close every open connection with 1011, as a service restart would."""
        for session in list(self._sessions):
            await session.ws.close(1011, "dropped by the test")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds, checked after each client event is handled.

        Raises ``TimeoutError`` after ``timeout`` seconds."""
        with anyio.fail_after(timeout):
            while not condition():
                await self._changed.wait()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/v1/realtime``."""
        return f"{self.ws_url}/v1/realtime"

    def _next_transcript(self) -> str | None:
        if self._transcript >= len(self.transcripts):
            return None
        self._transcript += 1
        return self.transcripts[self._transcript - 1]

    def _next_reply(self, heard: str) -> RealtimeReply:
        if self._reply >= len(self.replies):
            return RealtimeReply(text="The fake realtime script has no reply left.")
        item = self.replies[self._reply]
        self._reply += 1
        if callable(item):
            item = item(heard)
        return RealtimeReply(text=item) if isinstance(item, str) else item

    def _greeting_reply(self, instructions: str) -> RealtimeReply:
        item = self.greeting
        if item is None:
            # voicegraph asks "...saying exactly: <text>" (greeting) or "...nothing else: <text>"
            for marker in ("saying exactly:", "nothing else:"):
                _, said, asked = instructions.partition(marker)
                if said:
                    return RealtimeReply(text=asked.strip() or "Hello.")
            return RealtimeReply(text="Hello.")
        if callable(item):
            item = item(instructions)
        return RealtimeReply(text=item) if isinstance(item, str) else item

    async def websocket(self, ws: WebSocketPeer) -> None:
        index = self.handshakes
        self.handshakes += 1
        planned = self.faults[index] if index < len(self.faults) else None
        fault = planned.kind if planned is not None else None
        if ws.path != "/v1/realtime":
            await ws.reject(404, body=b"Not Found")
            return
        model = ws.param("model")
        if not model:
            await ws.reject(400, body=_http_error("Missing required parameter: 'model'."))
            return
        auth = ws.headers.get("authorization", "")
        if fault == "refuse_auth" or (
            self.api_key is not None and auth != f"Bearer {self.api_key}"
        ):
            await ws.reject(401, body=_http_error("Incorrect API key provided.", "invalid_api_key"))
            return
        if fault == "down":
            await ws.reject(503, body=_http_error("The server is overloaded.", "server_error"))
            return
        dialect = "beta" if ws.headers.get("openai-beta") == "realtime=v1" else "ga"
        await ws.accept()
        conn = RealtimeConnection(dialect, model)
        self.connections.append(conn)
        session = _Session(self, ws, conn, fault)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
