"""What the simulated callers share: the webhook POST, following the answer to a WebSocket, and
a live call object with a receive loop, a playback clock and a send lock."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import msgspec

from voicegraph.frames import AudioFormat
from voicegraph.wsio import MessageSocket, SocketClosed

from ._playback import Playback
from .wav import AudioSource, to_wire, wire_to_pcm16, write_wav

__all__ = ["CallRejected", "SimulatedCall"]

MAX_ANSWER = 100 * 1024


HANGUP_TIMEOUT = 5.0
"""Seconds leaving a simulated call may spend on its goodbye and close."""


class CallRejected(Exception):
    """The server did not answer the webhook with a stream: HTTP error, or TwiML/XML without
    one (e.g. ``<Say>…</Say><Hangup/>``). ``status`` and ``body`` say what came back."""

    def __init__(self, message: str, status: int = 0, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


async def post_webhook(
    url: str, form: dict[str, str], headers: dict[str, str], timeout: float, client: Any = None
) -> ET.Element:
    """POST ``form`` to ``url`` and parse the XML answer; ``CallRejected`` unless it is 200 XML.
    ``client``: an ``httpx.AsyncClient`` to post with (default: a new one for this request)."""
    import httpx

    if client is not None:
        resp = await client.post(url, data=form, headers=headers)
    else:
        async with httpx.AsyncClient(timeout=timeout) as own:
            resp = await own.post(url, data=form, headers=headers)
    body = resp.text[:MAX_ANSWER]
    if resp.status_code != 200:
        raise CallRejected(f"webhook answered HTTP {resp.status_code}", resp.status_code, body)
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise CallRejected(f"webhook answer is not XML: {exc}", resp.status_code, body) from None


def local_target(url: str, base_url: str, public_url: str | None) -> str:
    """Where to connect for a stream URL the answer named: the same URL, or -- when the server's
    public URL differs from where it really listens -- that URL moved onto ``base_url``."""
    if public_url is None:
        return url
    pub, base, target = urlsplit(public_url), urlsplit(base_url), urlsplit(url)
    if target.netloc != pub.netloc:
        return url
    scheme = "wss" if base.scheme == "https" else "ws"
    return urlunsplit((scheme, base.netloc, target.path, target.query, ""))


class Dialer:
    """What every simulated caller keeps: where to call, the token to sign with (never shown),
    the numbers, the URL the server checks signatures against, and timing options."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        *,
        to: str,
        from_: str,
        public_url: str | None,
        playback_rate: float,
        timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth_token = auth_token
        self.to = to
        self.from_ = from_
        self.public_url = public_url.rstrip("/") if public_url else None
        self.playback_rate = playback_rate
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, to={self.to!r})"  # never the token


class SimulatedCall:
    """A live simulated call on one carrier WebSocket (base of the carriers' call objects).

    Cancellation: every background task lives in the ``dial`` context's task group and ends
    with it. ``closed_by_server`` tells whether the server ended the stream."""

    def __init__(
        self,
        socket: MessageSocket,
        fmt: AudioFormat | None,
        *,
        playback_rate: float = 1.0,
        max_playback: float = 600.0,
    ) -> None:
        self.socket = socket
        self.format = fmt
        self.marks_echoed: list[str] = []
        self.messages: list[msgspec.Struct] = []
        self.errors: list[str] = []
        self.closed_by_server = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._closed = anyio.Event()
        self._hung_up = False
        self._lock = anyio.Lock()
        self._encoder = msgspec.json.Encoder()
        self.playback = (
            Playback(fmt, self._echo_mark, rate=playback_rate, max_seconds=max_playback)
            if fmt is not None
            else None
        )

    async def _echo_mark(self, name: str) -> None:
        try:
            await self._mark_reached(name)
        except SocketClosed:
            # the server hung up while this audio was "playing": nothing is left to echo to,
            # as on a real line; the receive loop records how the socket closed
            self._closed.set()

    # ------------------------------------------------------------------ subclass hooks

    async def _mark_reached(self, name: str) -> None:
        raise NotImplementedError

    async def _handle(self, raw: str | bytes) -> None:
        raise NotImplementedError

    async def _goodbye(self) -> None:
        """Carrier-specific last message before closing (Twilio ``stop``)."""

    # ----------------------------------------------------------------------- plumbing

    async def send_message(self, message: msgspec.Struct) -> None:
        """Send one wire message as a JSON text frame."""
        text = self._encoder.encode(message).decode()
        async with self._lock:
            await self.socket.send(text)

    async def _receive_loop(self) -> None:
        try:
            while True:
                raw = await self.socket.receive()
                await self._handle(raw)
        except SocketClosed as exc:
            if not self._hung_up:
                self.closed_by_server = True
            self.close_code, self.close_reason = exc.code, exc.reason
        finally:
            self._closed.set()

    async def _begin(self) -> None:
        """Send the carrier's first messages (each carrier's call object defines them)."""
        raise NotImplementedError

    async def _run(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._receive_loop)
            if self.playback is not None:
                tg.start_soon(self.playback.run)
            task_status.started()
            await self._closed.wait()
            tg.cancel_scope.cancel()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SimulatedCall]:
        """Open the call (carrier's first messages), run it, and hang up on exit (shielded, so
        leaving by an error or cancellation still ends the call)."""
        async with anyio.create_task_group() as tg:
            await self._begin()
            await tg.start(self._run)
            try:
                yield self
            finally:
                # Shielded so an error or cancellation still hangs up, and bounded: a server
                # that no longer reads must not hold the exit forever (nothing else could end
                # a shielded wait).
                with anyio.CancelScope(shield=True), anyio.move_on_after(HANGUP_TIMEOUT):
                    await self.hangup()
                tg.cancel_scope.cancel()

    def _bad(self, what: str) -> None:
        # a real carrier would log the server's mistake and carry on; tests read self.errors
        if len(self.errors) < 1000:
            self.errors.append(what)

    # ----------------------------------------------------------------------- public

    @property
    def closed(self) -> bool:
        """Whether the stream has ended (either side)."""
        return self._closed.is_set()

    @property
    def heard(self) -> bytes:
        """All audio played to the caller so far, in the stream's wire format. Audio dropped by
        a clear before it played is not in it."""
        return bytes(self.playback.heard) if self.playback is not None else b""

    @property
    def heard_seconds(self) -> float:
        return self.playback.heard_seconds if self.playback is not None else 0.0

    def heard_pcm16(self) -> bytes:
        """What the caller heard, as PCM16 LE at the stream's rate."""
        assert self.format is not None
        return wire_to_pcm16(self.heard, self.format)

    def save_wav(self, path: str | os.PathLike[str]) -> None:
        """Write what the caller heard to a 16-bit WAV file at the stream's rate."""
        if self.format is None:
            raise TypeError("this call carries text, not audio; there is nothing to save")
        write_wav(path, self.heard_pcm16(), self.format.sample_rate)

    async def _wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            while not done():
                if self.playback is not None:
                    with anyio.move_on_after(0.05):
                        await self.playback.wait_changed()
                else:
                    await anyio.sleep(0.01)
            return
        raise TimeoutError(f"{what} within {timeout:g}s")

    async def wait_for_audio(self, seconds: float, timeout: float = 10.0) -> None:
        """Wait until the caller has heard at least ``seconds`` of audio.

        Raises ``TimeoutError`` after ``timeout`` seconds, saying how much was heard."""
        await self._wait(
            lambda: self.heard_seconds >= seconds,
            f"heard only {self.heard_seconds:.2f}s of audio, not {seconds:g}s,",
            timeout,
        )

    async def wait_for_mark(self, name: str, timeout: float = 10.0) -> None:
        """Wait until mark/checkpoint ``name`` was acknowledged; ``TimeoutError`` otherwise."""
        await self._wait(lambda: name in self.marks_echoed, f"mark {name!r} not echoed", timeout)

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the stream ends (e.g. the agent hung up); ``TimeoutError`` otherwise."""
        with anyio.move_on_after(timeout):
            await self._closed.wait()
            return
        raise TimeoutError(f"stream still open after {timeout:g}s")

    async def hangup(self) -> None:
        """Hang up: the carrier's goodbye (if it has one), then close the socket. Idempotent.
        The goodbye waits at most ``HANGUP_TIMEOUT`` seconds for a server that stopped
        reading; the socket is closed either way."""
        if self._hung_up or self.closed:
            self._hung_up = True
            return
        self._hung_up = True
        with anyio.move_on_after(HANGUP_TIMEOUT / 2):
            try:
                await self._goodbye()
            except SocketClosed:
                pass
        await self.socket.close(1000, "caller hung up")

    # -------------------------------------------------------------------- audio out

    async def _quiet(self, data: bytes, speed: float) -> None:
        """Send silence; once the server ended the call, stop without an error (a quiet caller
        on a line the agent hung up sends nothing). :attr:`closed_by_server` then says so."""
        if self.closed and not self._hung_up:
            return
        try:
            await self.send_audio(data, speed=speed)  # type: ignore[attr-defined]
        except SocketClosed:
            # the receive loop records who closed; give it a moment to see the close
            with anyio.move_on_after(1.0):
                await self._closed.wait()
            if self._hung_up:
                raise
            self.closed_by_server = True

    def _wire(self, audio: AudioSource, sample_rate: int | None) -> bytes:
        assert self.format is not None
        return to_wire(audio, self.format, sample_rate)

    async def _pace(
        self, chunks: list[bytes], send_one: Callable[[bytes], Any], speed: float
    ) -> None:
        """Send chunks paced at ``speed`` × real time (``0``: as fast as possible)."""
        assert self.format is not None
        start = anyio.current_time()
        played = 0.0
        for chunk in chunks:
            await send_one(chunk)
            played += self.format.duration_of(len(chunk))
            if speed > 0:
                await anyio.sleep_until(start + played / speed)
            else:
                await anyio.lowlevel.checkpoint()
