"""G.711 µ-law: bit-exact tables, protocol vectors, codec stages and boundary checks."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, strategies as st

from voicegraph import DTMF, AudioFormat, AudioFormatMismatch, AudioFrame, Graph
from voicegraph.nodes.audio import g711
from voicegraph.nodes.audio.g711 import (
    MulawDecode,
    MulawEncode,
    numpy_decode,
    numpy_encode,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from voicegraph.nodes.audio.pcm import (
    AudioInputError,
    float_to_pcm16,
    pcm16_to_samples,
    samples_to_pcm16,
    swap_bytes,
)
from voicegraph.nodes.audio.resample import Resampler

ALL_PCM = np.arange(65536, dtype=np.uint32).astype(np.uint16).tobytes()  # every int16, as LE
ALL_CODES = bytes(range(256))

# sha256 of CPython 3.11 audioop.lin2ulaw(ALL_PCM, 2) and audioop.ulaw2lin(ALL_CODES, 2): pins the
# tables to audioop without needing audioop (removed in Python 3.13) at test time.
AUDIOOP_ENCODE_SHA256 = "617fa4850d68d3906597e949f7625fb2fc46db479e29707f33159b3d131721cb"
AUDIOOP_DECODE_SHA256 = "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"

Codec = tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]
# Every table test runs against both implementations: the public functions (the C codec here,
# see test_c_codec_is_in_use_on_this_interpreter) and the numpy fallback.
CODECS = [
    pytest.param((ulaw_to_pcm16, pcm16_to_ulaw), id="public"),
    pytest.param((numpy_decode, numpy_encode), id="numpy"),
]
both_codecs = pytest.mark.parametrize("codec", CODECS)

EXP_LUT = [0, 0, 1, 1, 2, 2, 2, 2] + [3] * 8 + [4] * 16 + [5] * 32 + [6] * 64 + [7] * 128


def ref_encode16(sample: int) -> int:
    """The 16-bit reference encoder, written out per sample from the protocol notes."""
    sign = 0x80 if sample < 0 else 0x00
    mag = -sample if sample < 0 else sample
    mag = min(mag, 32635) + 0x84
    exponent = EXP_LUT[(mag >> 7) & 0xFF]
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ref_encode_audioop(sample: int) -> int:
    return ref_encode16(4 * (sample >> 2))


def ref_decode(code: int) -> int:
    u = ~code & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -mag if u & 0x80 else mag


def pcm(*samples: int) -> bytes:
    return np.array(samples, dtype="<i2").tobytes()


def test_c_codec_is_in_use_on_this_interpreter() -> None:
    # CPython on a little-endian host always has it: audioop (3.11/3.12) or audioop-lts (3.13+)
    assert sys.byteorder == "little"
    assert g711.C_CODEC


@both_codecs
def test_encoder_matches_audioop_variant_of_reference_for_all_65536_inputs(codec: Codec) -> None:
    samples = np.frombuffer(ALL_PCM, dtype="<i2")
    expected = bytes(ref_encode_audioop(int(s)) for s in samples)
    assert codec[1](ALL_PCM) == expected


@both_codecs
def test_encoder_output_is_byte_identical_to_audioop(codec: Codec) -> None:
    assert hashlib.sha256(codec[1](ALL_PCM)).hexdigest() == AUDIOOP_ENCODE_SHA256


@both_codecs
def test_decoder_matches_reference_for_all_256_codes(codec: Codec) -> None:
    decoded = np.frombuffer(codec[0](ALL_CODES), dtype="<i2").tolist()
    assert decoded == [ref_decode(c) for c in range(256)]


@both_codecs
def test_decoder_output_is_byte_identical_to_audioop(codec: Codec) -> None:
    assert hashlib.sha256(codec[0](ALL_CODES)).hexdigest() == AUDIOOP_DECODE_SHA256


@both_codecs
def test_audioop_variant_differs_from_plain_16_bit_encoder_on_381_negative_inputs(
    codec: Codec,
) -> None:
    samples = np.frombuffer(ALL_PCM, dtype="<i2")
    ours = np.frombuffer(codec[1](ALL_PCM), dtype=np.uint8)
    plain = np.array([ref_encode16(int(s)) for s in samples], dtype=np.uint8)
    differ = samples[ours != plain]
    assert differ.size == 381
    assert (differ < 0).all()


@pytest.mark.parametrize(
    ("linear", "code", "back"),
    [
        (0, 0xFF, 0),
        (1, 0xFF, 0),
        (8, 0xFE, 8),
        (-8, 0x7E, -8),
        (100, 0xF2, 104),
        (-100, 0x72, -104),
        (1000, 0xCE, 988),
        (-1000, 0x4E, -988),
        (8031, 0xA0, 7932),
        (8159, 0x9F, 8316),
        (16000, 0x90, 15996),
        (-16000, 0x10, -15996),
        (32124, 0x80, 32124),
        (32767, 0x80, 32124),
        (-32124, 0x00, -32124),
        (-32768, 0x00, -32124),
    ],
)
@both_codecs
def test_protocol_vector_encodes_and_decodes(
    codec: Codec, linear: int, code: int, back: int
) -> None:
    decode, encode = codec
    assert encode(pcm(linear)) == bytes([code])
    assert decode(bytes([code])) == pcm(back)


@pytest.mark.parametrize(("linear", "code"), [(-1, 0x7E), (-2, 0x7E), (-10, 0x7D), (-31610, 0x00)])
@both_codecs
def test_encoder_pins_the_audioop_rounding_below_segment_boundaries(
    codec: Codec, linear: int, code: int
) -> None:
    assert codec[1](pcm(linear)) == bytes([code])


@both_codecs
def test_multi_sample_vector_round_trips_as_documented(codec: Codec) -> None:
    decode, encode = codec
    encoded = encode(pcm(0, 1000, -1000, 32767, -32768, 8, -8, 100))
    assert encoded.hex() == "ffce4e8000fe7ef2"
    assert decode(encoded) == pcm(0, 988, -988, 32124, -32124, 8, -8, 104)


@both_codecs
def test_sine_vector_encodes_as_documented(codec: Codec) -> None:
    assert codec[1](pcm(0, 5657, 8000, 5657, 0, -5657, -8000, -5657)).hex() == ("ffa9a0a9ff292029")


@both_codecs
def test_both_silence_codes_decode_to_zero(codec: Codec) -> None:
    assert codec[0](b"\xff\x7f") == pcm(0, 0)


@both_codecs
@given(st.binary(max_size=400))
def test_decode_then_encode_is_identity_for_every_code_but_negative_zero(
    codec: Codec, data: bytes
) -> None:
    decode, encode = codec
    expected = data.replace(b"\x7f", b"\xff")
    assert encode(decode(data)) == expected


def test_encoder_rejects_odd_length_pcm() -> None:
    with pytest.raises(ValueError, match="odd length"):
        pcm16_to_ulaw(b"\x00\x01\x02")


def test_decode_stage_turns_mulaw_frame_into_pcm16_keeping_times_and_utterance() -> None:
    stage = MulawDecode()
    frame = AudioFrame(
        data=b"\xff\xce" * 80,
        encoding="mulaw",
        sample_rate=8000,
        timestamp=1.5,
        capture_time=7.0,
        utterance_id=3,
    )
    out = stage.process("in", frame)
    assert out == AudioFrame(
        data=pcm(0, 988) * 80,
        encoding="pcm16",
        sample_rate=8000,
        timestamp=1.5,
        capture_time=7.0,
        utterance_id=3,
    )


def test_encode_stage_turns_pcm16_frame_into_mulaw() -> None:
    out = MulawEncode().process("in", AudioFrame(data=pcm(0, 1000) * 80, sample_rate=8000))
    assert isinstance(out, AudioFrame)
    assert (out.encoding, out.sample_rate, out.data) == ("mulaw", 8000, b"\xff\xce" * 80)


def test_codec_stages_pass_dtmf_through_as_control_frames() -> None:
    digit = DTMF(digit="5", timestamp=2.0)
    assert MulawDecode().process("in", digit) is digit
    assert MulawEncode().process("in", digit) is digit


def test_decode_stage_rejects_pcm16_audio_naming_both_formats() -> None:
    stage = MulawDecode()
    with pytest.raises(AudioInputError, match="pcm16/8000 audio but expects mulaw/8000"):
        stage.process("in", AudioFrame(data=pcm(1, 2), encoding="pcm16", sample_rate=8000))


def test_encode_stage_rejects_odd_length_pcm_with_clear_error() -> None:
    with pytest.raises(AudioInputError, match="not a whole number of 2-byte samples"):
        MulawEncode().process("in", AudioFrame(data=b"\x00\x01\x02", sample_rate=8000))


def test_codec_stage_rejects_empty_frame() -> None:
    with pytest.raises(AudioInputError, match="empty AudioFrame"):
        MulawDecode().process("in", AudioFrame(data=b"", encoding="mulaw", sample_rate=8000))


def test_graph_build_fails_naming_both_nodes_when_rates_differ() -> None:
    g = Graph()
    g.add("decode", MulawDecode())
    g.add("resample", Resampler(16000, 8000))
    with pytest.raises(AudioFormatMismatch) as err:
        g.connect("decode", "resample")
    msg = str(err.value)
    assert "decode" in msg and "resample" in msg
    assert "pcm16/8000" in msg and "pcm16/16000" in msg


def test_graph_build_fails_when_encoding_differs() -> None:
    g = Graph()
    g.add("encode", MulawEncode())
    g.add("encode2", MulawEncode())
    with pytest.raises(AudioFormatMismatch, match="mulaw/8000.*pcm16/8000"):
        g.connect("encode", "encode2")


def test_float_samples_convert_to_pcm16_with_clipping() -> None:
    assert float_to_pcm16(np.array([0.0, 0.5, -1.0, 2.0])) == pcm(0, 16384, -32768, 32767)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_samples_are_rejected(bad: float) -> None:
    with pytest.raises(AudioInputError, match="NaN or infinite"):
        float_to_pcm16(np.array([0.0, bad, 0.1]))


def test_pcm16_samples_round_trip_little_endian() -> None:
    data = bytes.fromhex("0000e80318fcff7f00800800f8ff6400")
    samples = pcm16_to_samples(data)
    assert samples.tolist() == [0, 1000, -1000, 32767, -32768, 8, -8, 100]
    assert samples_to_pcm16(samples) == data


def test_big_endian_l16_swaps_to_little_endian() -> None:
    assert swap_bytes(bytes.fromhex("03e8fc18")) == pcm(1000, -1000)


def test_audio_format_of_mulaw_20ms_is_160_bytes() -> None:
    assert AudioFormat("mulaw", 8000).bytes_for(0.02) == 160
