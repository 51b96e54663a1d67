"""The caller's side of a call benchmark: speech-like audio and :class:`Line`, one caller's
phone line on a live simulated Twilio call, paced like a carrier and timed on the caller's side.

Clocks: every time here is ``time.monotonic()``, the clock ``TimelineMark`` uses.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import anyio
import numpy as np

CHUNK = 0.02
SILENCE = b"\xff" * 160  # 20 ms of µ-law silence


def voiced(seconds: float, rate: int = 8000, f0: float = 120.0) -> np.ndarray[Any, Any]:
    """A speech-like signal (the test kit's :func:`~voicegraph.testing.speech_like`)."""
    from voicegraph.testing.speech import speech_like

    return speech_like(seconds, rate, f0)


def speech_chunks(seconds: float) -> list[bytes]:
    """``seconds`` of caller speech as 20 ms µ-law chunks."""
    from voicegraph.nodes.audio.g711 import pcm16_to_ulaw

    data = pcm16_to_ulaw(voiced(seconds).tobytes())
    return [data[i : i + 160] for i in range(0, len(data) - 159, 160)]


class Line:
    """One caller's phone line on a live simulated Twilio call.

    Like a carrier, it sends 20 ms of audio every 20 ms, each chunk once its 20 ms have been
    spoken (so the last speech chunk leaves exactly at the end of the speech), silence unless
    :meth:`say` queued speech. It records, on the caller's side: when speech started and ended
    in the caller's own audio, when agent audio arrived, and when ``clear`` arrived."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._speech: deque[bytes] = deque()
        self.onsets: list[float] = []
        self.speech_ends: list[float] = []
        self.first_audio: list[float | None] = []  # first agent audio after each speech end
        self.clears: list[float] = []
        self.last_audio = 0.0
        self.audio_bytes = 0
        self._await_reply = False
        self._said = 0
        self._changed = anyio.Event()
        playback = call.playback
        add_audio, clear = playback.add_audio, playback.clear

        def on_audio(data: bytes) -> None:
            now = time.monotonic()
            self.last_audio = now
            self.audio_bytes += len(data)
            if self._await_reply:
                self._await_reply = False
                self.first_audio[-1] = now
                self._notify()
            add_audio(data)

        def on_clear() -> list[str]:
            self.clears.append(time.monotonic())
            return clear()  # type: ignore[no-any-return]

        # Instrument this call's playback buffer: the first point where the caller has the
        # agent's audio (the receive loop hands it over right after decoding the message).
        playback.add_audio = on_audio
        playback.clear = on_clear

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def say(self, chunks: list[bytes]) -> None:
        self._speech.extend(chunks)
        self._said += 1

    async def run(self, metronome: Any = None) -> None:
        """Stream until the call closes (run it in the dial block's task group). With a
        ``metronome`` (``await metronome.wait()`` returns every 20 ms), lines share one clock
        instead of a timer each."""
        from voicegraph.wsio import SocketClosed

        call = self.call
        due = anyio.current_time()
        speaking = False
        try:
            while not call.closed:
                if metronome is None:
                    due += CHUNK
                    await anyio.sleep_until(due)
                else:
                    await metronome.wait()
                if self._speech:
                    chunk = self._speech.popleft()
                    if not speaking:
                        speaking = True
                        self.onsets.append(time.monotonic() - CHUNK)
                    await call.send_audio(chunk, speed=0)
                    if not self._speech:
                        speaking = False
                        self.speech_ends.append(time.monotonic())
                        self.first_audio.append(None)
                        self._await_reply = True
                        self._notify()
                else:
                    await call.send_audio(SILENCE, speed=0)
        except SocketClosed:
            pass

    async def wait_spoken(self) -> None:
        """Wait until everything queued with :meth:`say` was sent."""
        while len(self.speech_ends) < self._said:
            await self._changed.wait()

    async def wait_quiet(self, gap: float = 0.3, timeout: float = 15.0) -> None:
        """Wait until no agent audio arrived for ``gap`` seconds and playback has drained."""
        with anyio.fail_after(timeout):
            while True:
                idle = time.monotonic() - self.last_audio
                if idle >= gap and self.call.playback.queued_seconds == 0:
                    return
                await anyio.sleep(max(CHUNK, gap - idle))

    async def wait_reply(self, timeout: float = 10.0) -> float:
        """Wait for the first agent audio after the last speech end; returns its time."""
        with anyio.fail_after(timeout):
            while (t := self.first_audio[-1]) is None:
                await self._changed.wait()
        return t
