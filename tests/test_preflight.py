"""Start-up preflight: what would fail every call is refused before serving, in one sentence."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from e2ekit import PUBLIC, interface

from voicegraph import Agent, AgentRuntime
from voicegraph.cli import main
from voicegraph.nodes import CartesiaTTS, DeepgramSTT
from voicegraph.nodes.realtime import OpenAIRealtime
from voicegraph.server.preflight import PreflightError

VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"


class Echo:
    async def respond(self, turn):  # type: ignore[no-untyped-def]
        yield turn.text


def cascading_line(**kw: object):  # type: ignore[no-untyped-def]
    opts: dict[str, object] = {
        "pipeline": "cascading",
        "stt": DeepgramSTT(api_key="k"),
        "tts": CartesiaTTS(api_key="k", voice_id=VOICE),
        "agent": Echo(),
    }
    opts.update(kw)
    return interface("twilio", **opts)


def refused(iface: object) -> str:
    with pytest.raises(PreflightError) as info:
        AgentRuntime([iface], public_url=PUBLIC)  # type: ignore[list-item]
    message = str(info.value)
    assert "+14155550199" in message and "\n" not in message
    return message


def test_a_well_configured_line_passes() -> None:
    line = cascading_line()
    assert AgentRuntime([line], public_url=PUBLIC).interfaces == (line,)


def test_an_unknown_realtime_voice_is_refused_when_the_line_is_built() -> None:
    from voicegraph.interface import IncompatibleOptionsError

    with pytest.raises(IncompatibleOptionsError, match="voice='alloyy'.*use one of alloy"):
        interface(
            "twilio",
            pipeline="realtime",
            realtime=OpenAIRealtime(api_key="k"),
            agent=Agent("x"),
            voice="alloyy",
        )


def test_a_provider_class_without_its_key_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    message = refused(cascading_line(stt=DeepgramSTT))
    assert "stt=DeepgramSTT" in message and "DEEPGRAM_API_KEY" in message


def test_a_provider_class_with_its_key_in_the_environment_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "from-env")
    line = cascading_line(stt=DeepgramSTT)
    assert AgentRuntime([line], public_url=PUBLIC).interfaces == (line,)


def test_a_string_agent_is_refused() -> None:
    assert "agent='be nice' has no respond(turn)" in refused(cascading_line(agent="be nice"))


def test_an_agent_without_llm_is_refused_in_cascading_mode() -> None:
    assert "has no llm" in refused(cascading_line(agent=Agent("Be nice.")))


def test_a_missing_webrtc_vad_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # what an install without [vad] sees
    assert "pip install 'voicegraph[vad]'" in refused(cascading_line())


def test_a_chat_model_given_as_realtime_model_is_refused() -> None:
    with pytest.raises(ValueError, match="model='gpt-4o-mini' is not a realtime model"):
        OpenAIRealtime(model="gpt-4o-mini", api_key="k")


def test_a_malformed_cartesia_voice_id_is_refused() -> None:
    with pytest.raises(ValueError, match="voice_id='not-a-voice' is not a Cartesia voice id"):
        CartesiaTTS(api_key="k", voice_id="not-a-voice")


@pytest.mark.parametrize(
    ("option", "value"),
    [("language", "klingon"), ("model", "nova-9"), ("encoding", "mp3")],
)
def test_impossible_deepgram_options_are_refused(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{option}={value!r}"):
        DeepgramSTT(api_key="k", **{option: value})


def test_usual_deepgram_models_and_languages_pass() -> None:
    for model in ("nova-3", "nova-2-phonecall", "nova-3-medical", "whisper-large"):
        assert DeepgramSTT(api_key="k", model=model).options.model == model
    for language in ("en-US", "es", "multi", "zh-Hant-TW"):
        assert DeepgramSTT(api_key="k", language=language).options.language == language


def test_serve_prints_the_culprit_in_one_line_and_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "badapp.py").write_text(
        "from voicegraph import Agent, AgentRuntime, CallInterface\n"
        "from voicegraph.nodes.realtime import OpenAIRealtime\n"
        "line = CallInterface('twilio', '+14155550199', account_sid='AC' + '0' * 32,\n"
        "    auth_token='t', pipeline='realtime', realtime=OpenAIRealtime(api_key='k'),\n"
        "    agent=Agent('x'), voice='alloyy')\n"
        "runtime = AgentRuntime([line], public_url='https://agent.example.com')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["serve", "badapp:runtime", "--port", "0"])
    err = capsys.readouterr().err
    assert code != 0
    assert "voice='alloyy'" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_check_reports_a_good_app_and_its_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "goodapp.py").write_text(
        "from voicegraph import AgentRuntime, CallInterface\n"
        "from voicegraph.testing.server import echo_graph\n"
        "line = CallInterface('plivo', '+14155550123', auth_id='MA' + 'X' * 18,\n"
        "    auth_token='t', graph=echo_graph)\n"
        "runtime = AgentRuntime([line], public_url='https://agent.example.com')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "goodapp:runtime"]) == 0
    out = capsys.readouterr().out
    assert "configuration ok" in out and "+14155550123  plivo  cascading" in out
