"""The command line's quantisation and compiling: the `quantize` and `compile` settings ("auto" unless
changed) where no flag and no preset say, a preset's quantisation over the setting, and the flags over
both (`--compile` is on, `--no-compile` off)."""

from __future__ import annotations

import pytest

from demofusion_app.cli import build_parser, request_from_args
from demofusion_app.engine.request import QUANTIZE
from demofusion_app.store import PresetStore, SettingsStore


def _request(*extra: str) -> tuple[str, str]:
    args = build_parser().parse_args(["generate", "--model", "some-org/a-model", *extra])
    request = request_from_args(args)
    return request.quantize, request.compile


def _settings(**values: str) -> None:
    store = SettingsStore()
    store.update(**values)
    store.save()


def test_without_flags_the_settings_decide_and_they_start_on_auto() -> None:
    assert _request() == ("auto", "auto")
    _settings(quantize="fp8", compile="off")
    assert _request() == ("fp8", "off")
    _settings(quantize="none", compile="on")
    assert _request() == ("none", "on")


def test_the_flags_win_over_the_settings() -> None:
    _settings(quantize="fp8", compile="off")
    assert _request("--quantize", "auto", "--compile") == ("auto", "on")
    _settings(compile="on")
    assert _request("--no-compile")[1] == "off"


def test_a_presets_quantisation_wins_over_the_setting_and_a_flag_over_both() -> None:
    PresetStore().save("Small card", {"quantize": "fp8"})
    _settings(quantize="none")
    assert _request("--preset", "Small card")[0] == "fp8"
    assert _request("--preset", "Small card", "--quantize", "none")[0] == "none"


def test_quantize_offers_every_word_the_request_takes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--quantize", "int8"])
    assert "(choose from 'auto', 'none', 'fp8')" in capsys.readouterr().err
    assert QUANTIZE == ("auto", "none", "fp8")
