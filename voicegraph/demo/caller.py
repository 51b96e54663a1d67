"""The scripted caller's part of the demo call: its lines, a phone line that sends silence
between them in real time, and the script that waits for the agent, barges in on its long
confirmation and says goodbye."""

from __future__ import annotations

from typing import Any

import anyio

from voicegraph.frames import AudioFormat

from .options import DemoError, DemoOptions

__all__ = ["CALLER_SCRIPT", "CallerLine", "speak_script"]

CALLER_SCRIPT = (
    "I would like to book a table for two.",
    "Wait, make it three people.",
    "That's all, thank you.",
)
"""The caller's lines: a booking, a barge-in during the agent's confirmation, a goodbye."""

_ULAW = AudioFormat("mulaw", 8000)
_LINE_TICK = 0.04  # seconds of silence sent at a time while the caller is quiet


class CallerLine:
    """The caller's side of the phone line: silence, or a queued line of speech, always paced
    in real time."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._speech: bytes | None = None
        self._sent = anyio.Event()

    async def run(self) -> None:
        """Send the line's audio until the call closes: the queued speech, else silence."""
        from voicegraph.wsio import SocketClosed

        silence = b"\xff" * _ULAW.bytes_for(_LINE_TICK)
        try:
            while True:
                data, self._speech = self._speech or silence, None
                await self.call.send_audio(data)
                if data is not silence:
                    self._sent.set()
        except SocketClosed:
            return

    async def say(self, wire: bytes) -> None:
        """Queue ``wire`` (µ-law 8 kHz) and return once it was sent."""
        self._sent = anyio.Event()
        self._speech = wire
        await self._sent.wait()


async def _agent_speaks(call: Any, beyond: float, timeout: float) -> bool:
    """Wait until the caller has heard more than ``beyond`` seconds of agent audio."""
    with anyio.move_on_after(timeout):
        while call.heard_seconds <= beyond and not call.closed:
            with anyio.move_on_after(0.05):  # closing does not wake playback waiters
                await call.playback.wait_changed()
    heard: float = call.heard_seconds
    return heard > beyond


async def _agent_quiet(call: Any, quiet: float, timeout: float) -> None:
    """Wait until no agent audio was heard for ``quiet`` seconds (or the call ended)."""
    with anyio.move_on_after(timeout):
        last, since = call.heard_seconds, anyio.current_time()
        while not call.closed and anyio.current_time() - since < quiet:
            await anyio.sleep(0.02)
            if call.heard_seconds != last:
                last, since = call.heard_seconds, anyio.current_time()


async def speak_script(call: Any, line: CallerLine, wires: list[bytes], o: DemoOptions) -> None:
    """The caller's part. A caller who gets no answer says it again, as people do: the
    recogniser may miss a line of synthetic speech on 8 kHz audio."""
    if not await _agent_speaks(call, 0.0, o.step_timeout):
        raise DemoError(f"the agent said no greeting within {o.step_timeout:g}s")
    await _agent_quiet(call, 0.8, o.step_timeout)
    for _ in range(3):  # ask for the table; barge in once the answer has played a while
        heard = call.heard_seconds
        await line.say(wires[0])
        if await _agent_speaks(call, heard + o.barge_in_after, o.reply_timeout):
            break
        await _agent_quiet(call, 0.8, o.step_timeout)
    else:
        raise DemoError("the agent never answered the booking request; run with -v to see why")
    await line.say(wires[1])
    if await _agent_speaks(call, call.heard_seconds, o.reply_timeout):
        await _agent_quiet(call, 0.8, o.step_timeout)
    for _ in range(2):  # say goodbye until the agent hangs up
        await line.say(wires[2])
        with anyio.move_on_after(o.step_timeout):
            await call.wait_closed(o.step_timeout)
        if call.closed:
            return
    raise DemoError("the agent did not hang up after the caller's goodbye")
