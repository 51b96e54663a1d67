"""PocketsphinxSTT: offline streaming recognition, checked on speech synthesised by espeak-ng."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import numpy as np
import pytest
import soxr

from voicegraph import (
    Actor,
    AudioFormat,
    AudioFrame,
    Call,
    CallResult,
    Frame,
    Graph,
    In,
    Out,
    SpeechStarted,
    SpeechStopped,
    Transcript,
)
from voicegraph.nodes.audio.pcm import AudioInputError
from voicegraph.nodes.offline._sphinx import SphinxConfigError, phrases_grammar
from voicegraph.nodes.offline.espeak import EspeakSynth
from voicegraph.nodes.offline.pocketsphinx_stt import PocketsphinxSTT, PocketsphinxSTTOptions

BOOKING = """#JSGF V1.0;
grammar booking;
public <request> = [i would like to] book a table for (one | two | three | four) [people];
"""
PAD = 0.5  # seconds of silence around each utterance


def speech(text: str, rate: int = 16000) -> np.ndarray:
    audio = EspeakSynth().synthesize(text)
    return np.asarray(soxr.resample(audio, 22050, rate)).astype(np.int16)


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)


def frames(samples: np.ndarray, start: float = 0.0, rate: int = 16000) -> list[AudioFrame]:
    step = rate // 50  # 20 ms, as carriers send
    return [
        AudioFrame(
            data=samples[i : i + step].tobytes(),
            sample_rate=rate,
            timestamp=start + i / rate,
            capture_time=1.0,
        )
        for i in range(0, len(samples), step)
    ]


class Source(Actor):
    outputs = (Out("out", AudioFrame, SpeechStarted, SpeechStopped),)

    def __init__(self, items: Sequence[Frame]) -> None:
        super().__init__()
        self.items = list(items)

    async def run(self) -> None:
        for f in self.items:
            await self.send("out", f)


class Sink(Actor):
    inputs = (In("in"),)

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Transcript] = []

    async def handle(self, port: str, frame: Frame) -> None:
        assert isinstance(frame, Transcript)
        self.got.append(frame)


async def recognise(
    items: Sequence[Frame], options: PocketsphinxSTTOptions
) -> tuple[CallResult, list[Transcript]]:
    g = Graph("stt")
    sink = Sink()
    g.add("src", Source(items))
    g.add("stt", PocketsphinxSTT(options))
    g.add("sink", sink)
    g.chain("src", "stt", "sink")
    with anyio.fail_after(30):
        result = await Call(g, call_id="s1").run()
    return result, sink.got


def finals(got: list[Transcript]) -> list[str]:
    return [t.text for t in got if t.is_final]


@pytest.mark.anyio
async def test_round_trip_recognises_espeak_speech_with_a_grammar() -> None:
    audio = np.concatenate(
        [silence(PAD), speech("I would like to book a table for two"), silence(2 * PAD)]
    )
    result, got = await recognise(frames(audio), PocketsphinxSTTOptions(grammar=BOOKING))
    assert result.reason == "completed"
    assert finals(got) == ["i would like to book a table for two"]
    final = got[-1]
    assert final.is_final and final.speech_final
    assert [w.text for w in final.words] == "i would like to book a table for two".split()
    assert final.capture_time == 1.0


@pytest.mark.anyio
async def test_interim_results_come_before_the_final_and_grow() -> None:
    audio = np.concatenate(
        [silence(PAD), speech("I would like to book a table for two"), silence(2 * PAD)]
    )
    _, got = await recognise(frames(audio), PocketsphinxSTTOptions(grammar=BOOKING))
    interims = [t.text for t in got if not t.is_final]
    assert len(interims) >= 2
    assert got[-1].is_final and all(not t.is_final for t in got[:-1])
    assert all(not t.speech_final for t in got[:-1])
    assert len(interims[-1].split()) > len(interims[0].split())


@pytest.mark.anyio
async def test_word_times_are_ordered_and_inside_the_utterance() -> None:
    spoken = speech("book a table for four")
    audio = np.concatenate([silence(PAD), spoken, silence(2 * PAD)])
    _, got = await recognise(frames(audio), PocketsphinxSTTOptions(grammar=BOOKING))
    final = got[-1]
    assert final.text == "book a table for four"
    starts = [w.start for w in final.words]
    assert starts == sorted(starts)
    assert all(w.start < w.end for w in final.words)
    # The endpointer opens the utterance near the real speech start, not at 0.
    assert PAD - 0.3 <= final.start <= final.words[0].start
    assert final.words[-1].end <= PAD + len(spoken) / 16000 + 0.3


class Timeline:
    """Builds a stream of 20 ms audio frames with continuous media timestamps, plus VAD-style
    control frames stamped with the media time at which they are inserted."""

    def __init__(self) -> None:
        self.items: list[Frame] = []
        self.t = 0.0

    def audio(self, samples: np.ndarray) -> None:
        self.items += frames(samples, self.t)
        self.t += len(samples) / 16000

    def started(self) -> None:
        self.items.append(SpeechStarted(timestamp=self.t))

    def stopped(self) -> None:
        self.items.append(SpeechStopped(timestamp=self.t))


@pytest.mark.anyio
async def test_external_endpointing_finalises_on_speech_stopped() -> None:
    tl = Timeline()
    tl.audio(silence(PAD))
    tl.started()
    tl.audio(speech("book a table for one"))
    tl.stopped()
    tl.audio(silence(PAD))
    tl.started()
    tl.audio(speech("book a table for three"))
    tl.stopped()
    tl.audio(silence(PAD))
    opts = PocketsphinxSTTOptions(grammar=BOOKING, endpointing="external")
    result, got = await recognise(tl.items, opts)
    assert result.reason == "completed"
    assert finals(got) == ["book a table for one", "book a table for three"]


@pytest.mark.anyio
async def test_a_stop_overtaking_its_audio_waits_for_that_audio() -> None:
    tl = Timeline()
    tl.started()
    tl.audio(speech("book a table for two"))
    tl.stopped()
    # Put the stop first, as the control lane would deliver it ahead of queued audio.
    stop = tl.items.pop()
    tl.items.insert(1, stop)
    opts = PocketsphinxSTTOptions(grammar=BOOKING, endpointing="external", stop_wait=5.0)
    _, got = await recognise(tl.items, opts)
    assert finals(got) == ["book a table for two"]


@pytest.mark.anyio
async def test_external_endpointing_ignores_audio_outside_speech() -> None:
    tl = Timeline()
    tl.audio(speech("book a table for two"))
    tl.audio(silence(PAD))
    opts = PocketsphinxSTTOptions(grammar=BOOKING, endpointing="external")
    _, got = await recognise(tl.items, opts)
    assert got == []


@pytest.mark.anyio
async def test_phrases_option_recognises_a_list_of_commands() -> None:
    # "book a table": a one-word command ("cancel") is recognised unreliably from espeak-ng
    # speech, whose samples vary with what the process synthesised before
    audio = np.concatenate([silence(PAD), speech("book a table"), silence(2 * PAD)])
    opts = PocketsphinxSTTOptions(phrases=("book a table", "cancel", "speak to a person"))
    _, got = await recognise(frames(audio), opts)
    assert finals(got) == ["book a table"]


@pytest.mark.anyio
async def test_keyphrases_are_spotted_inside_free_speech() -> None:
    audio = np.concatenate([silence(PAD), speech("Could you please call me back"), silence(PAD)])
    opts = PocketsphinxSTTOptions(keyphrases=("please", "operator"))
    _, got = await recognise(frames(audio), opts)
    final = [t for t in got if t.is_final]
    assert final and {w.text for t in final for w in t.words} == {"please"}


@pytest.mark.anyio
async def test_8k_input_is_accepted_on_a_port_declaring_8k() -> None:
    stt = PocketsphinxSTT(PocketsphinxSTTOptions(sample_rate=8000, grammar=BOOKING))
    assert stt.input("audio").format == AudioFormat("pcm16", 8000)
    audio = np.concatenate([silence(PAD, 8000), speech("book a table", 8000), silence(PAD, 8000)])
    result, _ = await recognise(
        frames(audio, rate=8000), PocketsphinxSTTOptions(sample_rate=8000, grammar=BOOKING)
    )
    assert result.reason == "completed"


@pytest.mark.anyio
async def test_audio_in_the_wrong_format_ends_the_call_with_a_clear_error() -> None:
    wrong = [AudioFrame(data=bytes(320), sample_rate=8000)]
    result, _ = await recognise(wrong, PocketsphinxSTTOptions(grammar=BOOKING))
    assert result.reason == "error"
    assert isinstance(result.error.exc, AudioInputError)  # type: ignore[union-attr]
    assert "expects pcm16/16000" in str(result.error.exc)  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_invalid_grammar_fails_at_start_naming_what_jsgf_needs() -> None:
    result, _ = await recognise([], PocketsphinxSTTOptions(grammar="book a table"))
    assert result.reason == "error"
    assert result.error is not None and result.error.phase == "start"
    assert isinstance(result.error.exc, SphinxConfigError)
    assert "'#JSGF V1.0;' header" in str(result.error.exc)


def test_grammar_word_missing_from_the_dictionary_is_named() -> None:
    from voicegraph.nodes.offline._sphinx import Recognizer

    grammar = "#JSGF V1.0;\ngrammar g;\npublic <a> = book a zzqxv table;\n"
    with pytest.raises(SphinxConfigError, match="zzqxv"):
        Recognizer(PocketsphinxSTTOptions(grammar=grammar))


def test_keyphrase_word_missing_from_the_dictionary_is_named() -> None:
    from voicegraph.nodes.offline._sphinx import Recognizer

    with pytest.raises(SphinxConfigError, match="qqzzx"):
        Recognizer(PocketsphinxSTTOptions(keyphrases=("hello qqzzx",)))


def test_grammar_and_keyphrases_together_are_refused() -> None:
    with pytest.raises(SphinxConfigError, match="one of grammar, phrases or keyphrases"):
        PocketsphinxSTTOptions(grammar=BOOKING, keyphrases=("cancel",))


def test_unsupported_input_rate_is_refused() -> None:
    with pytest.raises(SphinxConfigError, match="sample_rate must be 8000 or 16000"):
        PocketsphinxSTTOptions(sample_rate=44100)


def test_phrases_grammar_lists_the_phrases_as_alternatives() -> None:
    assert phrases_grammar(("Book a table!", "cancel")) == (
        "#JSGF V1.0;\ngrammar phrases;\npublic <say> = (book a table | cancel)+;\n"
    )
