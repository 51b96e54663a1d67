"""The browser softphone: talk to an agent from a web page, through the graph a phone call gets.

Mount it with :func:`enable_softphone` (the one call the CLI needs), then open
:meth:`Softphone.page_url` in a browser on the same machine. For local development only: see
``docs/softphone.md`` for the token and binding advice.

Wire protocol (one WebSocket per call, at ``<path>/ws``). Text frames are JSON objects tagged by
``"type"`` (:mod:`.messages`); binary frames are audio: 16-bit little-endian mono PCM at
16 kHz, both ways.

Page -> server:

* ``{"type": "start", "sampleRate": 16000, "encoding": "pcm16", "token": "..."}`` -- first, within
  10 s. Any other format is refused (the page resamples); a wrong token closes the socket with
  code 1008.
* binary -- caller audio, 20 ms (640 bytes) per frame; whole samples, at most 32,000 bytes.
* ``{"type": "mark", "name": "...", "played": true}`` -- echo of a server ``mark`` once playback
  reached it; ``"played": false`` for marks whose audio a ``clear`` dropped.
* ``{"type": "cleared"}`` -- after a ``clear``, once everything scheduled was dropped.
* ``{"type": "dtmf", "digit": "5"}`` -- one of ``0-9 * # A-D``.
* ``{"type": "hangup"}`` -- the person ended the call.

Server -> page:

* ``{"type": "started", "callId": "...", "sampleRate": 16000}`` -- the call is running.
* binary -- agent audio, to be played back to back in arrival order.
* ``{"type": "mark", "name": "..."}`` -- echo it when the audio before it has been played.
* ``{"type": "clear"}`` -- barge-in: stop now, drop everything scheduled, echo pending marks as
  not played, then send ``cleared``.
* ``{"type": "event", "event": {"kind": "transcript", "role": "caller"|"agent", "text": ...,
  "final": ..., "utterance": ...}}`` and ``{"type": "event", "event": {"kind": "latency",
  "turn": n, "ms": {stage: ms}}}`` -- for display only (stages as in
  :mod:`voicegraph.timeline`).

The server closes the socket when the call ends (code 1000), on a protocol error (1007, the
reason says what was wrong) or when refused (1008).
"""

from .app import TOKEN_ENV, Softphone, SoftphoneConfigError, enable_softphone, tap_transcript
from .nodes import (
    SOFTPHONE_FORMAT,
    SoftphoneIn,
    SoftphoneOptions,
    SoftphoneOut,
    SoftphoneRefused,
    SoftphoneStart,
    TranscriptTap,
    accept_softphone,
    softphone_nodes,
)

__all__ = [
    "SOFTPHONE_FORMAT",
    "TOKEN_ENV",
    "Softphone",
    "SoftphoneConfigError",
    "SoftphoneIn",
    "SoftphoneOptions",
    "SoftphoneOut",
    "SoftphoneRefused",
    "SoftphoneStart",
    "TranscriptTap",
    "accept_softphone",
    "enable_softphone",
    "softphone_nodes",
    "tap_transcript",
]
