"""``CallInterface(language=..., voice=...)`` applied to every provider that takes them.

Language and voice are set once, on the interface, and each call's provider nodes are
configured from them:

==================  ===========================================  ==============================
provider            language                                     voice
==================  ===========================================  ==============================
DeepgramSTT         ``language`` as given (``es-ES``)            (none)
CartesiaTTS         ``language``: the primary subtag (``es``)    ``voice_id`` (a Cartesia id)
OpenAIRealtime      caller transcription ``language`` (``es``)   the model's ``voice``
EspeakTTS           voice ``en-us``, else the subtag (``es``)  an espeak-ng voice name
PocketsphinxSTT     English only with the wheel's model          (none)
==================  ===========================================  ==============================

A provider template that was given its own, different language or voice is refused, and so is
a combination that cannot be honoured (a Cartesia voice that is not an id, a realtime voice the
model does not have, Spanish with pocketsphinx's English model): :func:`check_interface` raises
at ``CallInterface`` construction for provider instances; providers given as factories are
checked when a call's graph is built. Other nodes (your own) are passed through unchanged.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import msgspec

__all__ = ["LocalizationError", "check_interface", "localize"]

_CARTESIA_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_DEFAULT_LANGUAGE = "en-US"


class LocalizationError(ValueError):
    """A provider cannot take the interface's language or voice (the message says what to
    change)."""


def _is(node: Any, module: str, name: str) -> bool:
    """Whether ``node`` is the provider class ``name`` of ``voicegraph.nodes.<module>``. A node
    of that class exists only if its module was imported, so nothing is imported here (the
    offline providers load native libraries)."""
    mod = sys.modules.get(f"voicegraph.nodes.{module}")
    cls = getattr(mod, name, None) if mod is not None else None
    return cls is not None and isinstance(node, cls)


def _primary(language: str) -> str:
    return language.split("-")[0].lower()


def _rebuild(node: Any, **changes: Any) -> Any:
    """A fresh provider node like ``node`` with some options changed."""
    options = msgspec.structs.replace(node.options, **changes)
    return type(node)(options, api_key=node._key, reconnect=node.reconnect_policy)


def _conflict(what: str, node: Any, theirs: str, ours: str, arg: str) -> LocalizationError:
    return LocalizationError(
        f"{type(node).__name__}({what}={theirs!r}) disagrees with CallInterface({arg}={ours!r}); "
        f"set the {arg} once, on CallInterface"
    )


def localize(node: Any, language: str, voice: str | None) -> Any:
    """``node`` (a fresh per-call provider) configured for ``language`` and ``voice``.

    Raises :class:`LocalizationError` when the node cannot honour them."""
    if language == "multi" or node is None:
        return node
    if _is(node, "stt.deepgram", "DeepgramSTT"):
        from voicegraph.nodes.stt.deepgram import DeepgramOptions

        mine = node.options.language
        if mine not in (DeepgramOptions().language, language):
            raise _conflict("language", node, mine, language, "language")
        return node if mine == language else _rebuild(node, language=language)
    if _is(node, "tts.cartesia", "CartesiaTTS"):
        from voicegraph.nodes.tts.cartesia import CartesiaOptions

        o, default = node.options, CartesiaOptions()
        lang = _primary(language)
        if o.language not in (default.language, lang):
            raise _conflict("language", node, o.language, language, "language")
        changes: dict[str, str] = {} if o.language == lang else {"language": lang}
        if voice is not None:
            if not _CARTESIA_ID.fullmatch(voice):
                raise LocalizationError(
                    f"CallInterface(voice={voice!r}) is not a Cartesia voice id; Cartesia voices "
                    "are ids like 'a0e99841-438c-4a64-b679-ae501e7d6091'"
                )
            if o.voice_id not in (default.voice_id, voice):
                raise _conflict("voice_id", node, o.voice_id, voice, "voice")
            if o.voice_id != voice:
                changes["voice_id"] = voice
        return _rebuild(node, **changes) if changes else node
    if _is(node, "realtime.openai", "OpenAIRealtime"):
        return _realtime(node, language, voice)
    if _is(node, "offline.espeak_tts", "EspeakTTS"):
        # espeak-ng's "en" is British English; "en-us" is American
        espeak = voice or ("en-us" if language.lower() == "en-us" else _primary(language))
        if node.options.voice not in ("en-us", espeak):
            raise _conflict("voice", node, node.options.voice, voice or language, "language")
        if node.options.voice == espeak:
            return node
        return type(node)(msgspec.structs.replace(node.options, voice=espeak))
    if _is(node, "offline.pocketsphinx_stt", "PocketsphinxSTT"):
        if _primary(language) != "en" and node.options.model_dir is None:
            raise LocalizationError(
                f"PocketsphinxSTT's built-in model is English; for language={language!r} give it "
                "a model_dir for that language, or use DeepgramSTT"
            )
    return node


def _realtime(node: Any, language: str, voice: str | None) -> Any:
    from voicegraph.nodes.realtime.openai import BETA_VOICES, GA_VOICES

    o = node.options
    voices = GA_VOICES if o.dialect == "ga" else BETA_VOICES
    if voice is not None and voice not in voices:
        raise LocalizationError(
            f"CallInterface(voice={voice!r}) is not a voice of the realtime model "
            f"({o.dialect} dialect); use one of {', '.join(voices)}"
        )
    if voice is not None and o.voice not in (None, voice):
        raise _conflict("voice", node, o.voice, voice, "voice")
    lang = _primary(language)
    if o.transcription_language not in (None, lang):
        raise _conflict("transcription_language", node, o.transcription_language, lang, "language")
    if o.voice == (voice or o.voice) and o.transcription_language == lang:
        return node
    copy = node.clone()
    copy.options = msgspec.structs.replace(o, voice=voice or o.voice, transcription_language=lang)
    return copy


def check_interface(iface: Any) -> None:
    """Raise :class:`LocalizationError` now if a provider instance given to ``iface`` cannot
    take its language or voice (factories are checked per call, when they are built)."""
    from voicegraph.node import Node

    for template in (iface.stt, iface.tts, iface.realtime):
        if isinstance(template, Node):
            localize(template, iface.language, iface.voice)
