"""The call recorder's tracks, and how a line asks for recording."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from e2ekit import interface

from voicegraph import Agent
from voicegraph.interface import IncompatibleOptionsError, InvalidOptionError
from voicegraph.nodes.audio.recorder import Recording, TrackRecorder


def test_a_clear_cuts_what_the_listener_never_heard() -> None:
    t = TrackRecorder(8000)
    t.add(0.0, b"\x01\x00" * 8000)  # one second queued at once, as playout sends ahead
    t.cut(0.25)  # barge-in: the carrier dropped the rest
    t.add(0.5, b"\x02\x00" * 800)  # the next reply goes where it was heard, not after the cut
    pcm = np.frombuffer(t.pcm, "<i2")
    assert (pcm[:2000] == 1).all() and (pcm[2000:4000] == 0).all() and (pcm[4000:] == 2).all()


def test_a_recording_is_a_stereo_wav_with_the_caller_on_the_left(tmp_path: Any) -> None:
    import io
    import wave

    rec = Recording("CA1", 8000, b"\x01\x00" * 80, b"\x02\x00" * 160)
    with wave.open(io.BytesIO(rec.wav()), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert w.getnchannels() == 2 and len(frames) == 160 and rec.seconds == 0.02
    assert (frames[:80, 0] == 1).all() and (frames[80:, 0] == 0).all() and (frames[:, 1] == 2).all()


def test_record_is_refused_in_managed_mode() -> None:
    with pytest.raises(IncompatibleOptionsError, match="record="):
        interface("twilio", pipeline="managed", agent=Agent("x"), record=lambda r: None)


def test_record_needs_a_writable_directory(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InvalidOptionError, match="not a directory that can be written"):
        interface("twilio", graph=lambda s: None, record=str(blocker / "sub"))
