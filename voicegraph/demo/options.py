"""What :func:`~voicegraph.demo.run.run_demo` takes (:class:`DemoOptions`) and the one error
it raises (:class:`DemoError`)."""

from __future__ import annotations

import msgspec

__all__ = ["DemoError", "DemoOptions"]


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
