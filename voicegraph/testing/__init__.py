"""Test kit: simulated callers and protocol-faithful fakes of every remote peer.

Users test their own agents with these, without a phone or API keys. Everything binds to
127.0.0.1 on an ephemeral port. Names are imported lazily so importing the kit stays cheap.
"""

from __future__ import annotations

from voicegraph._lazy import lazy_exports

# name -> submodule that defines it; each submodule adds its own public names here.
_LAZY: dict[str, str] = {
    "EchoNode": ".server",
    "FakeCarrierREST": ".fake_rest",
    "Callee": ".fake_dial",
    "PlacedCall": ".fake_dial",
    "RecordedHangup": ".fake_rest",
    "echo_graph": ".server",
    "serve_runtime": ".server",
    "MemorySocket": ".memsocket",
    "socket_pair": ".memsocket",
    "CallRejected": "._simcall",
    "TwilioCall": ".twilio_caller",
    "TwilioCaller": ".twilio_caller",
    "PlivoCall": ".plivo_caller",
    "PlivoCaller": ".plivo_caller",
    "RelayCall": ".relay_caller",
    "RelayCaller": ".relay_caller",
    "read_wav": ".wav",
    "write_wav": ".wav",
    "ChatFault": ".fake_chat",
    "ChatReply": ".fake_chat",
    "FakeChatCompletions": ".fake_chat",
    "ScriptedToolCall": ".fake_chat",
    "FakeOpenAIRealtime": ".fake_openai_realtime",
    "FakeServer": ".fakeserver",
    "FakeDeepgram": ".fake_deepgram",
    "DeepgramFaults": ".fake_deepgram",
    "FakeCartesia": ".fake_cartesia",
    "CartesiaFaults": ".fake_cartesia",
    "PassRate": ".scenario",
    "Scenario": ".scenario",
    "ScenarioResult": ".scenario",
    "TurnResult": ".scenario",
    "FakeProviders": ".fakeline",
    "ServedApp": ".served",
    "serve_app": ".served",
    "caller_speech": ".speech",
    "speech_like": ".speech",
    "CallEndedError": ".textmode",
    "TextReply": ".textmode",
    "TextSession": ".textmode",
    "ToolCallRecord": ".textmode",
    "VirtualClockEventLoop": ".clock",
    "virtual_clock": ".clock",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
