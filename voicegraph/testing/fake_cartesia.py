"""A protocol-faithful fake of Cartesia's TTS WebSocket (``/tts/websocket``), on 127.0.0.1.

It checks the handshake (``X-API-Key`` or ``Authorization: Bearer``, or the legacy ``api_key``
query; ``cartesia_version`` query or ``Cartesia-Version`` header) and every client message:
generation requests need ``model_id``, ``transcript``, ``voice``, a raw ``output_format`` with a
supported encoding and rate, and a ``context_id``; inputs on one context must keep every field
but ``transcript``/``continue``/``flush``. A bad message gets an ``error`` message (current
shape with ``title``/``message``/``error_code``, or the legacy ``error`` string) and the socket
stays open, as the service does.

Contexts behave as documented: inputs are generated in order, ``timestamps`` follow each
input's audio, ``done`` comes after the ``continue: false`` input, ``flush`` is acknowledged with
``flush_done``, and ``cancel`` stops inputs *not yet started* while the one generating keeps
streaming (so clients must drop late audio themselves). Audio is real: a tone per word, or
espeak-ng speech with ``audio="speech"`` (extra ``offline``), in the requested encoding/rate.

This module is the server and its connections; the wire (message schema and checks, error
messages, the tone audio) is in ``_cartesia_protocol.py``.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from typing import Any, Literal

import anyio
import anyio.lowlevel
import msgspec
import numpy as np

from voicegraph.wsio import SocketClosed

from ._cartesia_protocol import (
    SECONDS_PER_CHAR,
    CartesiaFaults,
    CartesiaRequest,
    _Bad,
    _decode,
    _encode_audio,
    _error_message,
    _Format,
    _Request,
    _tone_audio,
    _validate,
)
from .fakeserver import Accept, Engine, FakeServer, Refuse, WebSocketPeer

__all__ = ["SECONDS_PER_CHAR", "CartesiaFaults", "CartesiaRequest", "FakeCartesia"]


class FakeCartesia(FakeServer):
    """Fake Cartesia TTS. Use as ``async with FakeCartesia(...) as c``; point the client at
    :attr:`url`.

    ``ttfb``: seconds before a context's first chunk. ``chunk_ms``: audio per chunk.
    ``realtime``: pace chunks at this multiple of real time (``None``: as fast as possible).
    ``audio``: ``"tone"`` or ``"speech"`` (espeak-ng). ``error_shape``: ``"current"`` or
    ``"legacy"`` error messages. ``accept_query_key``: accept the legacy ``?api_key=``.
    ``known_voices``: voice ids that exist (``None``: any). ``seconds_per_char``: length of the
    tone audio per character of text, spaces included (default :data:`SECONDS_PER_CHAR`,
    0.06 s); espeak-ng speech has its own length. ``engine``: ``"hypercorn"`` or ``"picows"``
    (asyncio only; cheaper per message), see :class:`~voicegraph.testing.fakeserver.FakeServer`.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-cartesia-key",
        ttfb: float = 0.06,
        chunk_ms: int = 100,
        realtime: float | None = None,
        audio: Literal["tone", "speech"] = "tone",
        error_shape: Literal["current", "legacy"] = "current",
        accept_query_key: bool = True,
        known_voices: Collection[str] | None = None,
        faults: CartesiaFaults | None = None,
        seconds_per_char: float = SECONDS_PER_CHAR,
        engine: Engine = "hypercorn",
    ) -> None:
        super().__init__(engine=engine)
        if audio == "speech":
            from voicegraph.nodes.offline.espeak import EspeakSynth

            self._synth: Any = EspeakSynth()  # raises EspeakNotInstalled with the fix
        self.api_key = api_key
        self.ttfb = ttfb
        self.chunk_ms = chunk_ms
        self.realtime = realtime
        self.audio = audio
        self.error_shape = error_shape
        self.accept_query_key = accept_query_key
        self.known_voices = None if known_voices is None else set(known_voices)
        self.faults = faults or CartesiaFaults()
        if not 0 < seconds_per_char <= 1:
            raise ValueError(f"seconds_per_char must be in (0, 1], got {seconds_per_char}")
        self.seconds_per_char = seconds_per_char
        self.received: list[CartesiaRequest] = []
        self.sent: list[dict[str, Any]] = []
        self.handshakes = 0
        self.connections = 0
        self.chunks_sent = 0

    @property
    def url(self) -> str:
        """Base URL for ``CartesiaOptions(base_url=...)``."""
        return self.ws_url

    def requests(self, kind: str = "generate") -> list[CartesiaRequest]:
        return [r for r in self.received if r.kind == kind]

    def handshake(self, ws: WebSocketPeer) -> Accept | Refuse:
        self.handshakes += 1
        if ws.path != "/tts/websocket":
            return Refuse(404, body=b"not found")
        key = ws.headers.get("x-api-key")
        scheme, _, bearer = ws.headers.get("authorization", "").partition(" ")
        if key is None and scheme.lower() == "bearer":
            key = bearer
        if key is None and self.accept_query_key:
            key = ws.param("api_key")
        if self.faults.refuse_auth or key != self.api_key:
            return Refuse(401, body=b'{"error":"Invalid API key"}')
        if not (ws.param("cartesia_version") or ws.headers.get("cartesia-version")):
            return Refuse(400, body=b'{"error":"Cartesia-Version is required"}')
        if self.faults.fail_connects > 0:
            self.faults.fail_connects -= 1
            return Refuse(503, body=b'{"error":"unavailable"}')
        return Accept()

    async def websocket(self, ws: WebSocketPeer) -> None:
        self.connections += 1
        await _Conn(self, ws, self.connections).run()

    # ------------------------------------------------------------- audio

    async def render(
        self, text: str, encoding: str, rate: int
    ) -> tuple[bytes, list[tuple[str, float, float]]]:
        """Audio for ``text`` in ``encoding``/``rate`` and its word timings (seconds)."""
        if self.audio == "speech" and text.strip():
            import soxr

            syn = await anyio.to_thread.run_sync(self._synth.synthesize_words, text)
            x = soxr.resample(syn.audio, syn.sample_rate, rate).astype(np.int16)
            words = [(w.text, w.start, w.end) for w in syn.words]
            return _encode_audio(x, encoding), words
        audio, tone_words = _tone_audio(text, encoding, rate, self.seconds_per_char)
        return audio, list(tone_words)


class _Context:
    def __init__(self, first: _Request) -> None:
        self.first = first
        self.send, self.recv = anyio.create_memory_object_stream[_Request | None](1000)
        self.cancelled = False
        self.closed = False
        self.flush_id = 0
        self.audio_time = 0.0
        self.chunks = 0


class _Conn:
    def __init__(self, fake: FakeCartesia, ws: WebSocketPeer, n: int) -> None:
        self.fake, self.ws, self.n = fake, ws, n
        self.contexts: dict[str, _Context] = {}
        self.malformed_sent = False

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self.tg = tg
            try:
                while True:
                    await self.on_message(await self.ws.receive())
            except SocketClosed:
                pass
            finally:
                tg.cancel_scope.cancel()

    async def on_message(self, raw: str | bytes) -> None:
        fake = self.fake
        try:
            if isinstance(raw, bytes):
                raise _Bad("invalid_message", "Invalid message", "send JSON text frames", None)
            try:
                req = _decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _Bad("invalid_request", "Invalid request", str(exc), None) from None
            if req.context_id is None:
                raise _Bad("invalid_request", "Invalid request", "context_id is required", None)
            if req.cancel:
                fake.received.append(CartesiaRequest(self.n, "cancel", req.context_id))
                ctx = self.contexts.get(req.context_id)
                if ctx is not None:
                    ctx.cancelled = True
                return
            open_ctx = self.contexts.get(req.context_id)
            first = None if open_ctx is None else open_ctx.first
            closed = open_ctx is not None and open_ctx.closed
            _validate(req, self.fake.known_voices, first, closed)
        except _Bad as bad:
            fake.received.append(
                CartesiaRequest(self.n, "invalid", bad.context_id, error=bad.message)
            )
            await self.error(bad)
            return
        assert req.context_id is not None and req.transcript is not None
        fake.received.append(
            CartesiaRequest(
                self.n,
                "generate",
                req.context_id,
                req.transcript,
                req.continue_,
                req.flush,
                language=req.language,
                voice_id=req.voice.id if req.voice is not None else None,
            )
        )
        ctx = self.contexts.get(req.context_id)
        if ctx is None:
            ctx = self.contexts[req.context_id] = _Context(req)
            self.tg.start_soon(self.generate, req.context_id, ctx)
        if not req.continue_:
            ctx.closed = True
        await ctx.send.send(req)

    async def error(self, bad: _Bad) -> None:
        await self.send(_error_message(bad, self.fake.error_shape))

    async def send(self, msg: dict[str, Any]) -> None:
        fake = self.fake
        if fake.faults.stall:
            return
        if fake.faults.malformed_first and not self.malformed_sent and msg["type"] == "chunk":
            self.malformed_sent = True
            await self.ws.send("{oops")
        fake.sent.append(msg)
        await self.ws.send(msgspec.json.encode(msg).decode())

    async def generate(self, cid: str, ctx: _Context) -> None:
        fake = self.fake
        first = True
        try:
            async for req in ctx.recv:
                if ctx.cancelled or req is None:
                    return  # cancel stops inputs that have not started generating
                fmt = req.output_format
                assert fmt is not None and req.transcript is not None
                if first and req.transcript.strip():
                    first = False
                    await anyio.sleep(fake.ttfb)
                await self.speak(cid, ctx, req, fmt)
                if req.flush:
                    ctx.flush_id += 1
                    await self.send(
                        {
                            "type": "flush_done",
                            "context_id": cid,
                            "done": False,
                            "flush_done": True,
                            "flush_id": ctx.flush_id,
                            "status_code": 206,
                        }
                    )
                if not req.continue_:
                    await self.send(
                        {"type": "done", "context_id": cid, "done": True, "status_code": 206}
                    )
                    return
        except SocketClosed:
            pass

    async def speak(self, cid: str, ctx: _Context, req: _Request, fmt: _Format) -> None:
        fake = self.fake
        try:
            audio, words = await fake.render(req.transcript or "", fmt.encoding, fmt.sample_rate)
        except _Bad as bad:
            bad.context_id = cid
            await self.error(bad)
            return
        bps = {"pcm_f32le": 4, "pcm_s16le": 2}.get(fmt.encoding, 1)
        step = max(bps, fmt.sample_rate * fake.chunk_ms // 1000 * bps)
        base = ctx.audio_time
        for i in range(0, len(audio), step):
            piece = audio[i : i + step]
            await self.send({"type": "chunk", "context_id": cid, "data": base64.b64encode(piece).decode(), "done": False, "status_code": 206, "step_time": 1.0})  # fmt: skip
            fake.chunks_sent += 1
            limit = fake.faults.close_after_chunks
            if limit is not None and self.n == 1 and fake.chunks_sent >= limit:
                await self.ws.close(1011, "internal error")
                raise SocketClosed(1011, "fault injected")
            if fake.realtime:
                await anyio.sleep(len(piece) / bps / fmt.sample_rate / fake.realtime)
            else:
                await anyio.lowlevel.checkpoint()
        ctx.audio_time = base + len(audio) / bps / fmt.sample_rate
        if req.add_timestamps and words:
            await self.send({
                "type": "timestamps", "context_id": cid, "done": False, "status_code": 206,
                "word_timestamps": {
                    "words": [w for w, _, _ in words],
                    "start": [round(base + s, 3) for _, s, _ in words],
                    "end": [round(base + e, 3) for _, _, e in words],
                },
            })  # fmt: skip
