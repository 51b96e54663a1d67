"""The carrier's answer to a call webhook: TwiML or Plivo XML that opens the call's stream.

Kept apart from the server so the documents can be read (and tested) on their own. Every
value is XML-escaped; the stream parameters carry the stream token (see
:mod:`voicegraph.server.stream_token`).
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

from ..interface import CallInterface

__all__ = ["answer_document", "hangup_document"]

_XML = '<?xml version="1.0" encoding="UTF-8"?>'


def _attrs(pairs: Mapping[str, str | None]) -> str:
    return "".join(f" {k}={quoteattr(v)}" for k, v in pairs.items() if v is not None)


def _parameters(params: Mapping[str, str]) -> str:
    return "".join(f"<Parameter{_attrs({'name': k, 'value': v})}/>" for k, v in params.items())


def answer_document(iface: CallInterface, stream_url: str, params: Mapping[str, str]) -> str:
    """The XML that connects the call to ``stream_url`` with ``params``.

    Twilio cascading/realtime: ``<Connect><Stream>``; Twilio managed:
    ``<Connect><ConversationRelay>`` with the interface's voice settings; Plivo:
    bidirectional ``<Stream keepCallAlive>`` with the parameters in ``extraHeaders``."""
    if iface.telephony == "plivo":
        extra = ",".join(f"{k}={v}" for k, v in params.items())
        attrs = _attrs(
            {
                "bidirectional": "true",
                "keepCallAlive": "true",
                "audioTrack": "inbound",
                "contentType": iface.plivo_content_type,
                # the stream outlives max duration a little so the goodbye can finish
                "streamTimeout": str(int(iface.max_call_duration_seconds) + 60),
                "extraHeaders": extra,
            }
        )
        return f"{_XML}<Response><Stream{attrs}>{escape(stream_url)}</Stream></Response>"
    if iface.pipeline == "managed":
        attrs = _attrs(
            {
                "url": stream_url,
                "welcomeGreeting": iface.greeting,
                "welcomeGreetingInterruptible": iface.interruptible if iface.greeting else None,
                "language": iface.language,
                "ttsProvider": iface.managed_tts_provider,
                "voice": iface.voice,
                "transcriptionProvider": iface.managed_stt_provider,
                "interruptible": iface.interruptible,
                "interruptSensitivity": iface.interrupt_sensitivity,
                "dtmfDetection": "true",
            }
        )
        inner = f"<ConversationRelay{attrs}>{_parameters(params)}</ConversationRelay>"
    else:
        inner = f"<Stream{_attrs({'url': stream_url})}>{_parameters(params)}</Stream>"
    return f"{_XML}<Response><Connect>{inner}</Connect></Response>"


def hangup_document(telephony: str) -> str:
    """An answer that ends the call at once (used when no line matches)."""
    del telephony  # TwiML and Plivo XML spell it the same
    return f"{_XML}<Response><Hangup/></Response>"
