"""The offline demo call: AgentRuntime on loopback, the cascading preset on espeak-ng and
pocketsphinx, and a simulated Twilio caller speaking a scripted (synthesised) part.

:func:`run_demo` serves the front desk (:mod:`voicegraph.demo.agent`) on 127.0.0.1, dials it
with :class:`~voicegraph.testing.TwilioCaller`, speaks the caller's lines over a continuous
line (silence between them, as a phone sends), barges in on the agent's long confirmation,
and says goodbye. It prints the live transcript and each turn's latency, then writes
``call.wav`` (caller left, agent right, time-aligned, 8 kHz: the line's
:class:`~voicegraph.nodes.audio.recorder.CallRecorder`, ``CallInterface(record=...)``) and
``call.json``. Everything runs
in real time: playout paces the agent's audio as a carrier would play it.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from typing import Any, TextIO

import anyio
import msgspec

from voicegraph.frames import AudioFormat, Frame, TimelineMark

from .agent import GRAMMAR, GREETING, FrontDesk, ToolCallRecord
from .record import CallRecord
from .tap import TranscriptTap, add_tap

__all__ = ["CALLER_SCRIPT", "DemoError", "DemoOptions", "demo_interface", "run_demo"]

CALLER_SCRIPT = (
    "I would like to book a table for two.",
    "Wait, make it three people.",
    "That's all, thank you.",
)
"""The caller's lines: a booking, a barge-in during the agent's confirmation, a goodbye."""

_PHONE = "+14155550199"
_ACCOUNT = "AC" + "0" * 32
_ULAW = AudioFormat("mulaw", 8000)
_LINE_TICK = 0.04  # seconds of silence sent at a time while the caller is quiet


class DemoError(Exception):
    """The demo could not run or its call went wrong; the message says what to do."""


class DemoOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options of :func:`run_demo`.

    ``out_dir``: where ``call.wav`` and ``call.json`` go (created if missing).
    ``caller_voice`` / ``caller_wpm``: the espeak-ng voice of the scripted caller.
    ``barge_in_after``: seconds of the agent's confirmation the caller hears before
    interrupting. ``reply_timeout``: how long the caller waits for an answer before saying a
    line again. ``step_timeout``: longest wait for any one step of the script.
    ``max_call_seconds``: the call's own limit (AgentRuntime ends it there)."""

    out_dir: str = "demo-output"
    caller_voice: str = "en-us"
    caller_wpm: int = 150
    barge_in_after: float = 3.5
    reply_timeout: float = 6.0
    step_timeout: float = 30.0
    max_call_seconds: float = 120.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.barge_in_after <= 10:
            raise ValueError("barge_in_after must be 0.5..10 seconds")
        if not 1 <= self.reply_timeout <= 60:
            raise ValueError("reply_timeout must be 1..60 seconds")
        if not 1 <= self.step_timeout <= 300:
            raise ValueError("step_timeout must be 1..300 seconds")
        if not 10 <= self.max_call_seconds <= 3600:
            raise ValueError("max_call_seconds must be 10..3600 seconds")


def _offline_nodes() -> tuple[Any, Any, Any, Any, Any]:
    try:
        from voicegraph.nodes import (
            EspeakTTS,
            EspeakTTSOptions,
            PocketsphinxSTT,
            PocketsphinxSTTOptions,
        )
        from voicegraph.nodes.offline.espeak import EspeakSynth

        EspeakSynth("en-us")  # loads the library now, so a missing one fails here
        PocketsphinxSTT(PocketsphinxSTTOptions(grammar=GRAMMAR))
    except ImportError as exc:
        raise DemoError(
            f"the demo needs the offline speech engines ({exc.name or exc}); "
            "install them with: pip install 'voicegraph[offline]' (or run: make demo)"
        ) from None
    return EspeakTTS, EspeakTTSOptions, PocketsphinxSTT, PocketsphinxSTTOptions, EspeakSynth


class _Console:
    """Writes the live transcript. Caller lines as recognised, agent lines as heard."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def say(self, who: str, text: str) -> None:
        self.line(f"  {who:<7} {text}")


class _Conversation:
    """What the demo observes of its one call (filled in from the graph and the event bus)."""

    def __init__(self, console: _Console, t0: float) -> None:
        self.console = console
        self.t0 = t0
        self.transcript: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []
        self.call: Any = None
        self.timeline: Any = None
        self.agent: FrontDesk | None = None
        self.agent_node: Any = None
        self._decision: float | None = None
        self.barge_ins: list[dict[str, Any]] = []

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def caller(self, text: str) -> None:
        self.transcript.append({"t": self.now(), "speaker": "caller", "text": text})
        self.console.say("caller", text)

    def agent_said(self, uid: int, text: str, heard: str) -> None:
        cut = heard != text
        entry = {"t": self.now(), "speaker": "agent", "utterance": uid, "text": text}
        entry.update(heard=heard, interrupted=cut)
        self.transcript.append(entry)
        if cut:
            rest = text[len(heard) :].strip()
            self.console.say("agent", f"{heard} [interrupted; never heard: {rest!r}]")
        else:
            self.console.say("agent", text)

    def tool(self, rec: ToolCallRecord) -> None:
        self.tools.append(
            {"t": self.now(), "name": rec.name, "arguments": rec.arguments, "result": rec.result}
        )
        self.console.say("tool", f"{rec.name}({rec.arguments}) -> {rec.result}")

    def on_event(self, ev: Frame) -> None:
        if not isinstance(ev, TimelineMark):
            return
        if ev.stage == "barge_in_decision":
            self._decision = ev.time
        elif ev.stage == "clear_sent" and self._decision is not None:
            ms = 1000 * (ev.time - self._decision)
            self.barge_ins.append({"t": round(self._decision - self.t0, 3), "clear_ms": ms})
            self._decision = None
            self.console.say("", f"[barge-in: playout cleared {ms:.0f} ms after the decision]")
        elif ev.stage == "first_mark_ack" and self.timeline is not None:
            rec = next((r for r in reversed(self.timeline.turns) if r.turn == ev.turn), None)
            ms = rec.durations_ms() if rec is not None else {}
            if ms:
                self.console.say("", _latency_line(ms))


_LABELS = (
    ("stt_final", "STT final"),
    ("agent_first_token", "agent first text"),
    ("tts_first_audio", "TTS first audio"),
    ("first_audio_sent", "first audio sent"),
    ("first_mark_ack", "first audio played"),
)


def _latency_line(ms: dict[str, float]) -> str:
    parts = [f"{label} {ms[k]:.0f}" for k, label in _LABELS if k in ms]
    return "[latency ms after caller stopped: " + ", ".join(parts) + "]"


class _Line:
    """The caller's side of the phone line: silence, or a queued line of speech, always paced
    in real time."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._speech: bytes | None = None
        self._sent = anyio.Event()

    async def run(self) -> None:
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


async def _script(call: Any, line: _Line, wires: list[bytes], o: DemoOptions) -> None:
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


def demo_interface(
    *,
    auth_token: str | None = None,
    agent: Callable[[], Any] = FrontDesk,
    graph: Callable[[Any], Any] | None = None,
    api_base_url: str | None = None,
    max_call_seconds: float = 600.0,
    record: Any = None,
) -> Any:
    """The demo's phone line: Twilio, cascading preset, pocketsphinx with the front desk's
    grammar, espeak-ng speaking µ-law 8 kHz, and the :class:`FrontDesk` agent. Needs the
    ``offline`` extra. ``auth_token`` defaults to a random one (nothing real calls it);
    ``record`` is the line's ``CallInterface(record=...)``."""
    from voicegraph.interface import CallInterface

    tts_cls, tts_opts, stt_cls, stt_opts, _ = _offline_nodes()
    return CallInterface(
        "twilio",
        _PHONE,
        account_sid=_ACCOUNT,
        auth_token=auth_token or secrets.token_hex(16),
        pipeline="cascading",
        stt=lambda: stt_cls(stt_opts(grammar=GRAMMAR, endpointing="external")),
        tts=lambda: tts_cls(tts_opts(encoding="mulaw", sample_rate=8000)),
        agent=agent,
        greeting=GREETING,
        graph=graph,
        api_base_url=api_base_url,
        max_call_duration_seconds=max_call_seconds,
        record=record,
    )


async def run_demo(options: DemoOptions, out: TextIO) -> CallRecord:
    """Run the whole demo call (see module docs) and return its record. Raises
    :class:`DemoError` with one sentence on what went wrong."""
    from voicegraph.presets import build_for_session
    from voicegraph.server import AgentRuntime
    from voicegraph.testing.fake_rest import FakeCarrierREST
    from voicegraph.testing.server import serve_runtime
    from voicegraph.testing.twilio_caller import TwilioCaller
    from voicegraph.testing.wav import to_wire

    console = _Console(out)
    console.line("voicegraph demo: a phone call to an offline agent, on this machine only")
    console.line("  loading espeak-ng and pocketsphinx ...")
    synth_cls = _offline_nodes()[4]
    try:
        os.makedirs(options.out_dir, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create {options.out_dir!r} ({exc}); pass --out DIR") from None

    console.line("  synthesising the caller's lines ...")
    synth = synth_cls(options.caller_voice, rate_wpm=options.caller_wpm)
    lines = []
    for text in CALLER_SCRIPT:
        samples = await anyio.to_thread.run_sync(synth.synthesize, text)
        lines.append(to_wire(samples, _ULAW, synth.sample_rate))

    t0_mono = time.monotonic()
    conv = _Conversation(console, t0_mono)
    token = secrets.token_hex(16)  # the simulated carrier's auth token, this run only

    def agent() -> FrontDesk:
        conv.agent = FrontDesk(on_tool=conv.tool)
        return conv.agent

    def graph(session: Any) -> Any:
        g = build_for_session(session)
        add_tap(g, TranscriptTap(conv.caller, conv.agent_said))
        conv.agent_node = g["agent"]
        return g

    def on_call(call: Any, session: Any, timeline: Any) -> None:
        conv.call, conv.timeline = call, timeline
        call.subscribe(conv.on_event)

    recordings: list[Any] = []  # the line's recorder node hands over the call's recording
    async with FakeCarrierREST("twilio", _ACCOUNT, token) as rest:
        iface = demo_interface(
            auth_token=token,
            agent=agent,
            graph=graph,
            api_base_url=rest.base_url,
            max_call_seconds=options.max_call_seconds,
            record=recordings.append,
        )
        runtime = AgentRuntime([iface], public_url="http://127.0.0.1", on_call=on_call)
        async with serve_runtime(runtime) as url:
            console.line(f"  AgentRuntime (cascading preset) listening on {url}")
            console.line("  dialling it with the simulated Twilio caller ...")
            console.line("")
            caller = TwilioCaller(
                url, token, account_sid=_ACCOUNT, to=_PHONE, public_url="http://127.0.0.1"
            )
            async with caller.dial() as call, anyio.create_task_group() as tg:
                line = _Line(call)
                tg.start_soon(line.run)
                await _script(call, line, lines, options)
                tg.cancel_scope.cancel()
            clears = call.clears
            with anyio.move_on_after(10):
                # the runtime announces no end of call to observers: poll, bounded
                while conv.call is None or conv.call.result is None:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        hangups = len(rest.requests)
    result = conv.call.result if conv.call is not None else None
    if result is None:
        raise DemoError("the call did not end within 10 s of the caller's last line")
    if conv.timeline is not None:
        conv.timeline.flush()

    if not recordings:
        raise DemoError("the call ended without a recording; run with -v to see why")
    recording = recordings[0]
    wav = os.path.join(options.out_dir, "call.wav")
    await anyio.Path(wav).write_bytes(recording.wav())
    history = conv.agent_node.llm_history() if conv.agent_node is not None else []
    record = CallRecord(
        call_id=result.call_id,
        carrier="twilio (simulated, loopback)",
        pipeline="cascading",
        reason=result.reason,
        duration_s=round(result.duration, 3),
        transcript=conv.transcript,
        history=history,
        tool_calls=conv.tools,
        barge_ins=conv.barge_ins,
        latency=[r.as_dict() for r in conv.timeline.turns] if conv.timeline else [],
        audio={
            "file": "call.wav",
            "sample_rate": _ULAW.sample_rate,
            "channels": ["caller", "agent"],
            "caller_seconds": round(len(recording.caller) / 2 / _ULAW.sample_rate, 3),
            "agent_seconds": round(len(recording.agent) / 2 / _ULAW.sample_rate, 3),
            "carrier_clears": clears,
            "rest_hangups": hangups,
        },
        caller_script=list(CALLER_SCRIPT),
    )
    record.write(os.path.join(options.out_dir, "call.json"))
    console.line("")
    console.line(f"  call ended ({result.reason}) after {result.duration:.1f} s")
    console.line(f"  wrote {wav} (stereo: caller left, agent right)")
    console.line(f"  wrote {os.path.join(options.out_dir, 'call.json')}")
    return record
