"""espeak-ng in process: the ctypes binding, phrase cutting, and the EspeakTTS node."""

from __future__ import annotations

import threading

import anyio
import numpy as np
import pytest
from hypothesis import given, strategies as st

from voicegraph import (
    Actor,
    AgentText,
    AudioDone,
    AudioFormat,
    AudioFrame,
    Call,
    Frame,
    Graph,
    In,
    Interrupt,
    Out,
    TimelineMark,
    WordTimestamps,
)
from voicegraph.nodes.offline.espeak import EspeakError, EspeakSynth
from voicegraph.nodes.offline.espeak_tts import EspeakTTS, EspeakTTSOptions, TTSBacklogFull
from voicegraph.nodes.offline.phrases import PhraseSplitter

SENTENCE = "I would like to book a table for two."


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


# ------------------------------------------------------------------ binding


def test_synthesize_returns_speech_of_plausible_duration() -> None:
    synth = EspeakSynth()
    audio = synth.synthesize(SENTENCE)
    assert synth.sample_rate == 22050
    assert audio.dtype == np.int16
    # Nine words at 175 wpm is about three seconds; allow for the pauses espeak-ng adds.
    assert 1.5 < len(audio) / synth.sample_rate < 5.0
    assert rms(audio) > 300  # speech, not silence
    windows = audio[: len(audio) // 400 * 400].reshape(-1, 400)
    loud = np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1)) > 300
    assert 0.3 < loud.mean() < 0.98  # speech has both voiced stretches and gaps


def test_synthesize_words_times_each_word_in_order() -> None:
    result = EspeakSynth().synthesize_words(SENTENCE)
    assert [w.text for w in result.words] == SENTENCE.rstrip(".").split()
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(w.start <= w.end <= result.duration for w in result.words)


def test_faster_rate_gives_shorter_audio() -> None:
    slow = EspeakSynth(rate_wpm=120).synthesize(SENTENCE)
    fast = EspeakSynth(rate_wpm=300).synthesize(SENTENCE)
    assert len(fast) < 0.7 * len(slow)


def test_empty_text_gives_empty_audio() -> None:
    assert len(EspeakSynth().synthesize("  \n ")) == 0


def test_unknown_voice_raises_naming_the_voice() -> None:
    with pytest.raises(EspeakError, match="no voice 'xx-nonexistent'"):
        EspeakSynth("xx-nonexistent")


def test_out_of_range_rate_raises_naming_the_option() -> None:
    with pytest.raises(ValueError, match="rate_wpm must be an integer from 80 to 450"):
        EspeakSynth(rate_wpm=5)


def test_text_over_max_chars_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds max_chars=10"):
        EspeakSynth(max_chars=10).synthesize("this text is longer than ten characters")


def test_should_stop_cuts_synthesis_short() -> None:
    synth = EspeakSynth()
    text = "This sentence is long enough to take several seconds to say out loud. " * 3
    full = synth.synthesize_words(text)
    cut = synth.synthesize_words(text, should_stop=lambda: True)
    assert cut.stopped and not full.stopped
    assert 0 < len(cut.audio) < len(full.audio) / 4
    # The library is usable again after an aborted synthesis (espeak-ng varies a few samples
    # from run to run, so compare durations).
    after = synth.synthesize_words(text)
    assert not after.stopped
    assert after.duration == pytest.approx(full.duration, rel=0.02)


def test_concurrent_calls_from_threads_are_serialised() -> None:
    # Different voices and very different lengths: if two syntheses interleaved, audio would
    # land in the wrong result or with the wrong voice and the lengths would not match.
    jobs = {
        "en": (EspeakSynth("en-us"), "good morning"),
        "de": (EspeakSynth("de", rate_wpm=120), "Guten Morgen, wie geht es Ihnen heute Abend?"),
    }
    expected = {key: len(synth.synthesize(text)) for key, (synth, text) in jobs.items()}
    results: list[tuple[str, int]] = []

    def work(key: str) -> None:
        synth, text = jobs[key]
        for _ in range(5):
            results.append((key, len(synth.synthesize(text))))

    threads = [threading.Thread(target=work, args=(key,)) for key in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 10
    for key, n in results:
        assert n == pytest.approx(expected[key], rel=0.02)


# ------------------------------------------------------------------ phrases


def test_splitter_cuts_at_sentence_end_once_the_next_character_arrives() -> None:
    s = PhraseSplitter()
    assert s.feed("Hello there.") == []
    assert s.feed(" How are") == ["Hello there."]
    assert s.flush() == "How are"


def test_splitter_does_not_cut_inside_a_number() -> None:
    assert PhraseSplitter().feed("It costs 3.50 dollars. ") == ["It costs 3.50 dollars."]


def test_splitter_cuts_at_a_comma_only_after_min_clause_chars() -> None:
    s = PhraseSplitter(min_clause_chars=20)
    assert s.feed("Well, ") == []
    assert s.feed("I think we can do that, ") == ["Well, I think we can do that,"]


def test_splitter_cuts_long_unpunctuated_text_at_a_space() -> None:
    s = PhraseSplitter(max_chars=20)
    phrases = s.feed("one two three four five six seven eight")
    assert phrases and all(len(p) <= 20 for p in phrases)
    assert " ".join([*phrases, s.flush()]) == "one two three four five six seven eight"


@given(st.lists(st.text(alphabet="ab ,.!?\n", max_size=30), max_size=12))
def test_splitter_keeps_every_character_in_order(deltas: list[str]) -> None:
    s = PhraseSplitter(max_chars=25, min_clause_chars=5)
    phrases = [p for d in deltas for p in s.feed(d)]
    phrases.append(s.flush())
    assert all(0 < len(p) <= 25 for p in phrases[:-1])
    assert "".join("".join(phrases).split()) == "".join("".join(deltas).split())


# --------------------------------------------------------------------- node


class Feeder(Actor):
    """Sends whatever the test puts into it; ends when the test closes it."""

    outputs = (Out("out", AgentText, Interrupt),)

    def __init__(self) -> None:
        super().__init__()
        self.tx, self.rx = anyio.create_memory_object_stream[Frame](16)

    async def run(self) -> None:
        async with self.rx:
            async for frame in self.rx:
                await self.send("out", frame)


class Collector(Actor):
    """Records frames; ``audio_delay`` slows it down to put back-pressure on the TTS."""

    inputs = (In("in"),)

    def __init__(self, audio_delay: float = 0.0) -> None:
        super().__init__()
        self.got: list[Frame] = []
        self.audio_delay = audio_delay
        self.first_audio = anyio.Event()

    async def handle(self, port: str, frame: Frame) -> None:
        self.got.append(frame)
        if isinstance(frame, AudioFrame):
            self.first_audio.set()
            if self.audio_delay:
                await anyio.sleep(self.audio_delay)

    def of(self, uid: int) -> list[Frame]:
        return [f for f in self.got if getattr(f, "utterance_id", None) == uid]


def build(tts: EspeakTTS, sink: Collector) -> tuple[Graph, Feeder]:
    g = Graph("tts")
    feeder = Feeder()
    g.add("feed", feeder)
    g.add("tts", tts)
    g.add("sink", sink)
    g.chain("feed", "tts", "sink")
    return g, feeder


async def run_with(tts: EspeakTTS, sink: Collector, script) -> tuple[Call, object]:  # type: ignore[no-untyped-def]
    g, feeder = build(tts, sink)
    call = Call(g, call_id="t1")
    result = None

    async def drive() -> None:
        async with feeder.tx:
            await script(feeder.tx, sink)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        with anyio.fail_after(20):
            result = await call.run()
    return call, result


@pytest.mark.anyio
async def test_node_speaks_an_utterance_with_words_audio_and_done() -> None:
    sink = Collector()

    async def script(tx, _sink):  # type: ignore[no-untyped-def]
        for delta in ("I would like ", "to book a table. ", "For two, please."):
            await tx.send(AgentText(text=delta, utterance_id=7))
        await tx.send(AgentText(text="", utterance_id=7, last=True))

    call, result = await run_with(EspeakTTS(), sink, script)
    assert result.reason == "completed"  # type: ignore[attr-defined]
    audio = [f for f in sink.got if isinstance(f, AudioFrame)]
    assert audio and all(f.utterance_id == 7 for f in audio)
    assert {f.format for f in audio} == {AudioFormat("pcm16", 16000)}
    assert all(len(f.data) == 640 for f in audio[:10])  # 20 ms frames
    stamps = [f.timestamp for f in audio]
    assert stamps == sorted(stamps) and stamps[0] == 0.0
    words = [w.text for f in sink.got if isinstance(f, WordTimestamps) for w in f.words]
    assert words == ["I", "would", "like", "to", "book", "a", "table", "For", "two", "please"]
    assert sink.got[-1] == AudioDone(utterance_id=7)
    marks = [e for e in call.recent_events if isinstance(e, TimelineMark)]
    assert [(m.turn, m.stage) for m in marks] == [(7, "tts_first_audio")]


@pytest.mark.anyio
async def test_word_times_count_from_the_start_of_the_utterance() -> None:
    sink = Collector()

    async def script(tx, _sink):  # type: ignore[no-untyped-def]
        await tx.send(AgentText(text="Hello there. Goodbye now.", utterance_id=3, last=True))

    await run_with(EspeakTTS(), sink, script)
    batches = [f for f in sink.got if isinstance(f, WordTimestamps)]
    assert len(batches) == 2  # one per phrase
    first_audio_of_second = next(
        f.timestamp for f in sink.got[sink.got.index(batches[1]) :] if isinstance(f, AudioFrame)
    )
    assert batches[1].words[0].start == pytest.approx(first_audio_of_second, abs=0.03)


@pytest.mark.anyio
async def test_first_phrase_is_spoken_before_the_utterance_closes() -> None:
    sink = Collector()

    async def script(tx, sink):  # type: ignore[no-untyped-def]
        await tx.send(AgentText(text="Good evening. And", utterance_id=1))
        with anyio.fail_after(10):
            await sink.first_audio.wait()
        assert not any(isinstance(f, AudioDone) for f in sink.got)
        await tx.send(AgentText(text=" welcome.", utterance_id=1, last=True))

    _, result = await run_with(EspeakTTS(), sink, script)
    assert result.reason == "completed"  # type: ignore[attr-defined]
    assert sink.got[-1] == AudioDone(utterance_id=1)


@pytest.mark.anyio
async def test_mulaw_8k_output_for_telephony() -> None:
    sink = Collector()

    async def script(tx, _sink):  # type: ignore[no-untyped-def]
        await tx.send(AgentText(text="Hello caller.", utterance_id=2, last=True))

    opts = EspeakTTSOptions(encoding="mulaw", sample_rate=8000)
    await run_with(EspeakTTS(opts), sink, script)
    audio = [f for f in sink.got if isinstance(f, AudioFrame)]
    assert {f.format for f in audio} == {AudioFormat("mulaw", 8000)}
    assert len(audio[0].data) == 160
    assert 0.5 < sum(f.duration for f in audio) < 3.0


@pytest.mark.anyio
async def test_interrupt_stops_the_utterance_and_drops_its_later_text() -> None:
    sink = Collector(audio_delay=0.002)
    long_text = "This is a rather long answer that keeps going. " * 6

    async def script(tx, sink):  # type: ignore[no-untyped-def]
        await tx.send(AgentText(text=long_text, utterance_id=1))
        with anyio.fail_after(10):
            await sink.first_audio.wait()
        await tx.send(Interrupt(utterance_id=1))
        await tx.send(AgentText(text="More words nobody hears.", utterance_id=1, last=True))
        await tx.send(AgentText(text="Sorry, go ahead.", utterance_id=2, last=True))

    tts = EspeakTTS()
    _, result = await run_with(tts, sink, script)
    assert result.reason == "completed"  # type: ignore[attr-defined]
    spoken_1 = sum(f.duration for f in sink.of(1) if isinstance(f, AudioFrame))
    assert spoken_1 < 5.0  # the whole text is over 15 s of speech
    assert AudioDone(utterance_id=1) not in sink.got
    assert sink.got[-1] == AudioDone(utterance_id=2)
    assert any(isinstance(f, AudioFrame) for f in sink.of(2))
    assert tts.dropped_frames == 1
    assert tts.interrupted_phrases >= 1


@pytest.mark.anyio
async def test_interrupt_without_id_stops_whatever_is_in_progress() -> None:
    sink = Collector(audio_delay=0.002)

    async def script(tx, sink):  # type: ignore[no-untyped-def]
        await tx.send(AgentText(text="Let me tell you a long story. " * 6, utterance_id=5))
        with anyio.fail_after(10):
            await sink.first_audio.wait()
        await tx.send(Interrupt())

    tts = EspeakTTS()
    await run_with(tts, sink, script)
    assert sum(f.duration for f in sink.of(5) if isinstance(f, AudioFrame)) < 5.0
    assert AudioDone(utterance_id=5) not in sink.got


@pytest.mark.anyio
async def test_text_beyond_the_pending_limit_ends_the_call_with_a_clear_error() -> None:
    sink = Collector()

    async def script(tx, _sink):  # type: ignore[no-untyped-def]
        await tx.send(AgentText(text="word " * 200, utterance_id=1))

    opts = EspeakTTSOptions(max_pending_chars=300, max_phrase_chars=250)
    _, result = await run_with(EspeakTTS(opts), sink, script)
    assert result.reason == "error"  # type: ignore[attr-defined]
    assert isinstance(result.error.exc, TTSBacklogFull)  # type: ignore[attr-defined]
    assert "max_pending_chars" in str(result.error.exc)  # type: ignore[attr-defined]


def test_unsupported_output_rate_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="sample_rate 11025 is not supported"):
        EspeakTTSOptions(sample_rate=11025)


def test_output_port_declares_the_configured_format() -> None:
    tts = EspeakTTS(EspeakTTSOptions(encoding="mulaw", sample_rate=8000))
    assert tts.output("audio").format == AudioFormat("mulaw", 8000)
    assert tts.output("audio").types == (AudioFrame, WordTimestamps, AudioDone)
