"""The softphone page end to end in headless Chromium: its fake microphone plays a WAV of a spoken
request, the page streams it to a cascading graph (pocketsphinx, scripted agent, espeak-ng), plays
the reply on the Web Audio clock and echoes its marks.

Chromium comes from Debian's ``chromium`` package; the set-up installs it with apt when it is
absent and apt is usable, and the test is skipped (saying why) only when it cannot be installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from e2ekit import interface, speech

from voicegraph import AgentRuntime
from voicegraph.frames import (
    AudioFrame,
    Clear,
    Cleared,
    Frame,
    Hangup,
    MarkAck,
    PlaybackMark,
    PlayedPosition,
    StreamStarted,
)
from voicegraph.graph import Graph
from voicegraph.node import Actor, In, Out
from voicegraph.testing.server import serve_runtime
from voicegraph.testing.wav import write_wav
from voicegraph.transports.softphone import enable_softphone

CHROMIUM = "/usr/bin/chromium"
REQUEST = "I would like to book a table for two"
DEADLINE = 45.0  # seconds for the whole call, from launching the browser


def _install_chromium() -> str | None:
    """Install Debian's chromium; returns why it could not be, or None."""
    apt = shutil.which("apt-get")
    if apt is None:
        return "apt-get is not available to install chromium"
    if os.geteuid() != 0:
        return "installing chromium with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd, limit in (
            ([apt, "update", "-q"], 180),
            ([apt, "install", "-y", "-q", "chromium"], 600),
        ):
            done = subprocess.run(cmd, env=env, capture_output=True, timeout=limit, check=False)
            if done.returncode != 0:
                tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
                return f"{' '.join(cmd[1:3])} failed: {tail[0] if tail else done.returncode}"
    except subprocess.TimeoutExpired as exc:
        return f"{' '.join(map(str, exc.cmd[1:3]))} took longer than {exc.timeout:g}s"
    return None if os.path.exists(CHROMIUM) else "apt-get ran but installed no /usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        why = _install_chromium()
        if why is not None:
            pytest.skip(f"headless Chromium unavailable: {why}")
    return CHROMIUM


@pytest.fixture
def microphone(tmp_path: Path) -> Path:
    """The fake microphone: a second of silence, the request, five seconds of silence, the
    request again (a person repeats themselves when not understood: on a loaded machine the
    first attempt may be garbled), four seconds of silence."""
    rate = 16000
    pad = np.zeros(rate, dtype=np.int16)
    request = speech(REQUEST, rate)
    audio = np.concatenate([pad, request, *[pad] * 5, request, *[pad] * 4])
    path = tmp_path / "request.wav"
    write_wav(path, audio.tobytes(), rate)
    return path


async def browse(
    chromium: str,
    runtime: AgentRuntime,
    iface: Any,
    done: anyio.Event,
    tmp_path: Path,
    microphone: Path | None = None,
) -> str:
    """Serve ``runtime`` with the softphone, open the page in headless Chromium (calling at
    once), wait for ``done`` (at most ``DEADLINE`` seconds), close the browser; returns the tail
    of its log for failure messages."""
    phone = enable_softphone(runtime, iface)
    log_path = tmp_path / "chromium.log"
    mic = [f"--use-file-for-fake-audio-capture={microphone}%noloop"] if microphone else []
    with log_path.open("wb") as log:
        async with serve_runtime(runtime) as base:
            args = [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                *mic,
                "--autoplay-policy=no-user-gesture-required",
                phone.page_url(base, autostart=True),
            ]
            process = await anyio.open_process(args, stdout=log, stderr=log)
            try:
                with anyio.move_on_after(DEADLINE):
                    await done.wait()
            finally:
                process.terminate()
                with anyio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    return log_path.read_text(errors="replace")[-2000:]


class Booking:
    """A scripted agent that books a table when it hears "table"."""

    def __init__(self) -> None:
        self.turns: list[str] = []
        self.heard = anyio.Event()

    async def respond(self, turn: Any) -> AsyncIterator[str]:
        self.turns.append(turn.text)
        if "table" in turn.text:
            self.heard.set()
            yield "Booked a table for two."
        else:
            yield "Sorry, say that again?"


@pytest.mark.anyio
async def test_the_agent_answers_a_request_spoken_into_the_browser(
    chromium: str, microphone: Path, tmp_path: Path
) -> None:
    from voicegraph.nodes import (
        EspeakTTS,
        EspeakTTSOptions,
        PocketsphinxSTT,
        PocketsphinxSTTOptions as SttOpts,
    )

    agent = Booking()
    iface = interface(
        "plivo",
        stt=lambda: PocketsphinxSTT(SttOpts(phrases=(REQUEST.lower(), "yes please"))),
        tts=lambda: EspeakTTS(EspeakTTSOptions(encoding="pcm16", sample_rate=16000)),
        agent=agent,
    )
    calls: list[tuple[Any, Any]] = []
    replies: list[PlayedPosition] = []
    answered = anyio.Event()

    def on_call(call: Any, session: Any, timeline: Any) -> None:
        calls.append((call, session))

        def played(ev: Any) -> None:
            # the reply is utterance 1 (no greeting); complete = every mark was echoed as played
            if isinstance(ev, PlayedPosition) and ev.complete and agent.heard.is_set():
                replies.append(ev)
                answered.set()

        call.subscribe(played)

    runtime = AgentRuntime([iface], public_url="http://127.0.0.1", on_call=on_call)
    browser_log = await browse(chromium, runtime, iface, answered, tmp_path, microphone)
    assert calls, f"the page never started a call; Chromium said:\n{browser_log}"
    assert any("table" in t for t in agent.turns), f"agent heard {agent.turns!r}"
    assert replies, "the reply was never acknowledged as played by the page"
    reply = replies[0]
    assert reply.played == reply.sent > 0.5  # "Booked a table for two." is over half a second
    carrier_in = calls[0][1].carrier_in
    assert carrier_in.played_marks > 0


class ClearProbe(Actor):
    """Once the stream starts: sends two seconds of tone as 100 marked 20 ms chunks, clears
    playback after ``after`` seconds, and records the mark echoes and the clear confirmation."""

    def __init__(self, after: float = 0.3) -> None:
        super().__init__()
        self.inputs = (
            In("audio", AudioFrame, policy="drop_oldest"),
            In("control", Frame),
            In("events", StreamStarted, MarkAck, Cleared),
        )
        self.outputs = (Out("out", AudioFrame, PlaybackMark, Clear, Hangup),)
        self.after = after
        self.acked: list[str] = []
        self.cleared = anyio.Event()

    async def handle(self, port: str, frame: Frame) -> None:
        if isinstance(frame, StreamStarted):
            tone = (3000 * np.sin(np.arange(320) * 2 * np.pi * 440 / 16000)).astype(np.int16)
            for i in range(100):
                await self.send("out", AudioFrame(data=tone.tobytes(), sample_rate=16000))
                await self.send("out", PlaybackMark(name=f"m{i}"))
            await anyio.sleep(self.after)
            await self.send("out", Clear())
        elif isinstance(frame, MarkAck):
            self.acked.append(frame.name)
        elif isinstance(frame, Cleared):
            self.cleared.set()
        elif isinstance(frame, Hangup):
            await self.send("out", frame)


@pytest.mark.anyio
async def test_a_clear_stops_the_page_and_only_played_marks_are_acknowledged(
    chromium: str, tmp_path: Path
) -> None:
    probe = ClearProbe()
    sessions: list[Any] = []

    def graph(session: Any) -> Graph:
        sessions.append(session)
        g = Graph("clear-probe")
        g.add("carrier_in", session.carrier_in)
        g.add("probe", probe)
        g.add("carrier_out", session.carrier_out)
        for port in ("audio", "control", "events"):
            g.connect(f"carrier_in.{port}", f"probe.{port}")
        g.connect("probe", "carrier_out")
        return g

    iface = interface("plivo", graph=graph)
    runtime = AgentRuntime([iface], public_url="http://127.0.0.1")
    browser_log = await browse(chromium, runtime, iface, probe.cleared, tmp_path)
    assert probe.cleared.is_set(), (
        f"the page never confirmed the clear; Chromium said:\n{browser_log}"
    )
    carrier_in = sessions[0].carrier_in
    # the tone played for a while before the clear, and the clear dropped the rest
    assert 0 < carrier_in.played_marks < 100
    assert carrier_in.played_marks + carrier_in.unplayed_marks == 100
    assert probe.acked == [f"m{i}" for i in range(carrier_in.played_marks)]
