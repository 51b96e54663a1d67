"""Deepgram's live ``/v1/listen`` protocol as FakeDeepgram checks it: the fault knobs, the
record of what a client sent, the query parameters a handshake may carry and their checks, the
control messages (``KeepAlive``, ``Finalize``, ``CloseStream``), and the ``Results`` and
``Metadata`` messages the fake answers with."""

from __future__ import annotations

from typing import Any

import msgspec

from .fakeserver import WebSocketPeer

ENCODINGS = {"linear16", "mulaw", "alaw", "flac", "opus", "ogg-opus", "speex", "amr-nb"}
ENCODINGS |= {"amr-wb", "g729", "linear32"}
BOOL_PARAMS = ("interim_results", "vad_events", "smart_format", "punctuate")
NET0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)


class DeepgramFaults(msgspec.Struct, kw_only=True):
    """Fault injection. Each knob applies to the ``connection`` -th connection onwards
    (1-based) unless said otherwise; mutate between connections to script scenarios."""

    refuse_auth: bool = False
    """Refuse every handshake with 401 (as for a wrong key)."""
    fail_connects: int = 0
    """Refuse the next this-many handshakes with 503 (decremented per refusal)."""
    close_after_audio: float | None = None
    """Close ``1011 NET-0000`` once this many seconds of audio arrived on a connection
    (first connection only, so a reconnect succeeds)."""
    stall: bool = False
    """Accept and read, but never answer."""
    malformed_first: bool = False
    """Send one non-JSON text message before the first result."""


class ReceivedMessage(msgspec.Struct, frozen=True):
    """One client message as the fake saw it: ``kind`` is ``"audio"`` or the JSON ``type``."""

    connection: int
    kind: str
    size: int = 0


class _KeepAlive(msgspec.Struct, tag="KeepAlive", tag_field="type", forbid_unknown_fields=True):
    pass


class _Finalize(msgspec.Struct, tag="Finalize", tag_field="type", forbid_unknown_fields=True):
    channel: int = 0


class _CloseStream(msgspec.Struct, tag="CloseStream", tag_field="type", forbid_unknown_fields=True):
    pass


_control = msgspec.json.Decoder(_KeepAlive | _Finalize | _CloseStream)


class _Reject(Exception):
    def __init__(self, status: int, error: str) -> None:
        self.status = status
        self.error = error


class _Config:
    def __init__(self, ws: WebSocketPeer) -> None:
        enc = ws.param("encoding")
        if enc is not None and enc not in ENCODINGS:
            raise _Reject(400, f"unknown encoding {enc!r}")
        if enc is not None and not (ws.param("sample_rate") or "").isdigit():
            raise _Reject(400, "sample_rate is required (an integer) when encoding is given")
        for name in BOOL_PARAMS:
            v = ws.param(name)
            if v is not None and v not in ("true", "false"):
                raise _Reject(400, f"{name} must be true or false, got {v!r}")
        ep = ws.param("endpointing") or "10"
        if ep != "false" and not ep.isdigit():
            raise _Reject(400, f"endpointing must be an integer or false, got {ep!r}")
        ue = ws.param("utterance_end_ms")
        if ue is not None and not ue.isdigit():
            raise _Reject(400, f"utterance_end_ms must be an integer, got {ue!r}")
        self.interim = ws.param("interim_results") == "true"
        if ue is not None and not self.interim:
            raise _Reject(400, "utterance_end_ms requires interim_results=true")
        if enc not in ("mulaw", "linear16"):
            raise _Reject(400, "this fake understands raw encoding=mulaw or linear16 only")
        self.encoding = enc
        self.rate = int(ws.param("sample_rate") or 0)
        self.endpointing = None if ep == "false" else int(ep) / 1000
        self.utterance_end = None if ue is None else int(ue) / 1000
        self.vad_events = ws.param("vad_events") == "true"


class _Segment:
    def __init__(self, start: float, text: str) -> None:
        self.start = start
        self.end = start
        self.words = text.split()
        self.interims = 0
        self.silence = 0.0


def _results(
    rid: str,
    seg: _Segment,
    words: list[str],
    is_final: bool,
    speech_final: bool,
    from_finalize: bool,
) -> dict[str, Any]:
    """A ``Results`` message with ``words`` of ``seg`` (spread evenly over the segment)."""
    n = max(1, len(seg.words))
    span = max(seg.end - seg.start, 0.02)
    step = span / n
    wl = [
        {
            "word": w.strip(".,!?").lower(),
            "start": round(seg.start + i * step, 3),
            "end": round(seg.start + (i + 0.9) * step, 3),
            "confidence": 0.98,
            "punctuated_word": w,
        }
        for i, w in enumerate(words)
    ]
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": round(span, 3),
        "start": round(seg.start, 3),
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {
            "alternatives": [{"transcript": " ".join(words), "confidence": 0.98, "words": wl}]
        },
        "metadata": {
            "request_id": rid,
            "model_info": {"name": "fake-nova-3", "version": "fake", "arch": "nova-3"},
            "model_uuid": "00000000-0000-0000-0000-000000000000",
        },
    }


def _metadata(rid: str, duration: float) -> dict[str, Any]:
    """The ``Metadata`` message sent before closing on ``CloseStream``."""
    return {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": rid,
        "sha256": "0" * 64,
        "created": "2026-01-01T00:00:00.000Z",
        "duration": round(duration, 3),
        "channels": 1,
    }
