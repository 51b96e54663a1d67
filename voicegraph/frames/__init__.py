"""Typed frames: the only values that travel over graph edges.

Frames are frozen ``msgspec.Struct`` s: cheap to build, hashable, and serialisable to msgpack or
JSON for recording and replay (:func:`encode_frame` / :func:`decode_frame`). The taxonomy is small
and closed per class: every class states its scheduling class once, in the class variable
``kind``:

* ``Kind.MEDIA`` -- ordered data (audio, transcripts, agent text, playback marks). Queued in the
  edge's media lane; may be dropped only on edges whose policy says so.
* ``Kind.CONTROL`` -- overtakes queued media (speech started/stopped, interrupt, clear, end of
  turn, hang-up, DTMF). Never dropped.
* ``Kind.EVENT`` -- facts and metrics (mark acknowledged, timeline marks, errors). Ordered with
  media on an edge, never dropped, and also publishable on the call's event bus.

Times: ``timestamp`` is media time in seconds from the start of the stream the frame belongs to;
``capture_time`` is ``time.monotonic()`` when the frame (or the audio it derives from) entered the
process. Both are floats in seconds.

User code may define further frame classes by subclassing :class:`Frame` (and setting ``kind``);
they take part in msgpack round trips automatically.

The frames live by family -- :mod:`.base` (``Frame``, ``Kind``, the codec), :mod:`.audio`
(audio and its playback), :mod:`.speech` (voice activity, transcripts, turns, the agent's
words), :mod:`.realtime` (requests to a speaking model, tool calls) and :mod:`.call` (the
stream, hang-up, carrier reports, runtime facts) -- and this package re-exports every one, so
``from voicegraph.frames import X`` names any frame.
"""

from __future__ import annotations

from .audio import (
    AudioDone,
    AudioFormat,
    AudioFrame,
    Clear,
    Cleared,
    Encoding,
    MarkAck,
    PlaybackMark,
    PlayedPosition,
    bytes_per_sample,
)
from .base import Frame, Kind, decode_frame, encode_frame
from .call import (
    DTMF,
    AnsweredBy,
    CallStatus,
    Delivered,
    ErrorEvent,
    Hangup,
    RecordingReady,
    StreamStarted,
    TimelineMark,
)
from .realtime import Say, ToolCallRequest, ToolCallResult
from .speech import (
    AgentText,
    EndOfTurn,
    Interrupt,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    Word,
    WordTimestamps,
)

__all__ = [
    "AgentText",
    "AnsweredBy",
    "AudioFormat",
    "AudioDone",
    "AudioFrame",
    "CallStatus",
    "Cleared",
    "Clear",
    "DTMF",
    "Delivered",
    "Encoding",
    "EndOfTurn",
    "ErrorEvent",
    "Frame",
    "Hangup",
    "Interrupt",
    "Kind",
    "MarkAck",
    "PlaybackMark",
    "PlayedPosition",
    "RecordingReady",
    "Say",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStopped",
    "StreamStarted",
    "TimelineMark",
    "ToolCallRequest",
    "ToolCallResult",
    "Transcript",
    "Word",
    "WordTimestamps",
    "bytes_per_sample",
    "decode_frame",
    "encode_frame",
]
