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

from voicegraph.frames import AudioFormat

from .agent import GRAMMAR, GREETING, FrontDesk
from .caller import CALLER_SCRIPT, CallerLine, speak_script
from .console import Console, Conversation
from .options import DemoError, DemoOptions
from .record import CallRecord
from .tap import TranscriptTap, add_tap

__all__ = ["demo_interface", "run_demo"]

_PHONE = "+14155550199"
_ACCOUNT = "AC" + "0" * 32
_ULAW = AudioFormat("mulaw", 8000)


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

    console = Console(out)
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
    conv = Conversation(console, t0_mono)
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
                line = CallerLine(call)
                tg.start_soon(line.run)
                await speak_script(call, line, lines, options)
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
