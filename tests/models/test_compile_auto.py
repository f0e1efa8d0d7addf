"""Quantisation and compiling are "auto" by default: the request's values and their checks, the settings
that hold this machine's choice, and the loader's decision (`compile_choice`, `apply_load_options`): auto
compiles only on a CUDA GPU whose toolchain works and is eager elsewhere without a warning, on always tries
and warns when it falls back, off never tries. Nothing here compiles: the toolchain's probe is made to fail
where a real compile would take minutes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from demofusion_app.engine import compile as K
from demofusion_app.engine.request import COMPILE, QUANTIZE, Request, RequestError, validate
from demofusion_app.models.errors import ModelError
from demofusion_app.models.loader import (
    LoadedPipeline,
    LoadSpec,
    apply_load_options,
    compile_choice,
    resolve_load,
)
from demofusion_app.store import SettingsError, SettingsStore

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
LOADER_LOG = "demofusion_app.models.loader"


def _toolchain(monkeypatch: pytest.MonkeyPatch, problem: str | None) -> None:
    """What `toolchain_problem` says for every device (Triton is or is not on this machine)."""
    monkeypatch.setattr(K, "toolchain_problem", lambda device: problem)


def _broken_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor fails where a real compile would start (on the CPU that would take minutes)."""

    def broken(device: Any) -> None:
        raise RuntimeError("inductor could not build a kernel")

    monkeypatch.setattr(K, "probe", broken)


# --- the request and the settings ----------------------------------------------------------------


def test_the_request_defaults_to_auto_and_refuses_unknown_words() -> None:
    assert (QUANTIZE[0], COMPILE) == ("auto", ("auto", "on", "off"))
    plain = validate(Request(prompt="x", width=1024, height=1024))
    assert (plain.quantize, plain.compile) == ("auto", "auto")
    for mode in COMPILE:
        validate(Request(prompt="x", width=1024, height=1024, compile=mode))
    for field, value in (("compile", True), ("compile", "yes"), ("quantize", "int8")):
        with pytest.raises(RequestError) as caught:
            validate(Request(prompt="x", width=1024, height=1024, **{field: value}))
        assert caught.value.field == field
        assert repr(value) in str(caught.value) and "auto" in str(caught.value)


def test_the_settings_hold_quantize_and_compile_auto_by_default(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    assert (store.get("quantize"), store.get("compile")) == ("auto", "auto")
    store.update(quantize="fp8", compile="off")
    store.save()
    assert (SettingsStore(tmp_path).get("quantize"), SettingsStore(tmp_path).get("compile")) == (
        "fp8",
        "off",
    )
    with pytest.raises(SettingsError, match="compile cannot be 'yes'"):
        store.set("compile", "yes")
    with pytest.raises(SettingsError, match="quantize cannot be 'int8'"):
        store.set("quantize", "int8")


def test_a_settings_file_with_a_bad_compile_value_starts_on_auto(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text(json.dumps({"version": 2, "compile": True, "quantize": "int4"}))
    store = SettingsStore(tmp_path)
    assert (store.get("quantize"), store.get("compile")) == ("auto", "auto")
    assert len(store.take_warnings()) == 2


# --- the decision ----------------------------------------------------------------------------------


def test_compile_auto_is_eager_off_cuda_and_on_cuda_only_where_the_toolchain_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _toolchain(monkeypatch, None)
    wanted, reason = compile_choice("auto", CPU)
    assert not wanted and "eager on cpu" in reason
    assert compile_choice("auto", torch.device("mps"))[0] is False
    assert compile_choice("auto", CUDA) == (True, "")
    _toolchain(monkeypatch, "Triton is not installed")
    assert compile_choice("auto", CUDA) == (
        False,
        "compile: auto keeps the model eager (Triton is not installed)",
    )


def test_compile_on_always_tries_and_off_never(monkeypatch: pytest.MonkeyPatch) -> None:
    _toolchain(monkeypatch, "Triton is not installed")
    for device in (CPU, CUDA, torch.device("mps")):
        assert compile_choice("on", device) == (True, "")
        assert compile_choice("off", device) == (False, "")
    # An older caller's booleans, and words as typed.
    assert compile_choice(True, CPU) == (True, "") and compile_choice(False, CUDA) == (False, "")
    assert compile_choice(" Auto ", CPU)[0] is False
    with pytest.raises(ModelError, match="Unknown compile setting 'yes'"):
        compile_choice("yes", CPU)


def test_the_cache_key_holds_the_decision_so_equal_loads_are_equal(
    tiny_sdxl_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def key(**options: Any) -> LoadSpec:
        resolved = resolve_load(LoadSpec(str(tiny_sdxl_dir), device="cpu", **options))
        return resolved.key(resolved.memory_mode())

    _toolchain(monkeypatch, None)
    assert key(compile="auto") == key(compile="off") != key(compile="on")
    assert key(compile="auto").compile == "off" and key(compile=True) == key(compile="on")
    with pytest.raises(ModelError, match="Unknown compile setting"):
        key(compile="sometimes")


# --- what a load does --------------------------------------------------------------------------------


def _loaded(pipe: Any, device: torch.device) -> LoadedPipeline:
    """The tiny SDXL as a load that has not been placed yet (nothing moves to `device` here)."""
    return LoadedPipeline(
        pipe=pipe, device=device, dtype=torch.float32, memory_mode="none", family="sdxl"
    )


def _compile_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == LOADER_LOG and r.getMessage().startswith("compile:")
    ]


def test_auto_on_the_cpu_stays_eager_with_an_info_line_and_no_warning(
    tiny_sdxl_pipe: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _broken_probe(monkeypatch)  # were it tried, the message would say "fell back"
    caplog.set_level(logging.INFO, LOADER_LOG)
    loaded = _loaded(tiny_sdxl_pipe, CPU)
    apply_load_options(loaded, quantize="none", compile="auto")
    assert not K.is_compiled(tiny_sdxl_pipe.unet)
    assert "eager on cpu" in loaded.compile_message
    assert _compile_records(caplog) == [(logging.INFO, loaded.compile_message)]


def test_on_tries_and_warns_when_it_falls_back_and_off_says_nothing(
    tiny_sdxl_pipe: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _broken_probe(monkeypatch)
    caplog.set_level(logging.INFO, LOADER_LOG)
    tried = _loaded(tiny_sdxl_pipe, CPU)
    apply_load_options(tried, quantize="none", compile="on")
    assert tried.compile_message.startswith("compile: fell back to eager (")
    assert _compile_records(caplog) == [(logging.WARNING, tried.compile_message)]
    caplog.clear()
    off = _loaded(tiny_sdxl_pipe, CPU)
    apply_load_options(off, quantize="none", compile="off")
    assert off.compile_message == "" and _compile_records(caplog) == []
    assert not K.is_compiled(tiny_sdxl_pipe.unet)


def test_a_cuda_card_without_its_toolchain_is_silent_with_auto_and_says_why_with_on(
    tiny_sdxl_pipe: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A CUDA device named, never used: auto stops before compiling, on stops at the broken probe.
    _toolchain(monkeypatch, "Triton is not installed")
    _broken_probe(monkeypatch)
    caplog.set_level(logging.INFO, LOADER_LOG)
    auto = _loaded(tiny_sdxl_pipe, CUDA)
    apply_load_options(auto, quantize="none", compile="auto")
    assert auto.compile_message == "compile: auto keeps the model eager (Triton is not installed)"
    assert _compile_records(caplog) == [(logging.INFO, auto.compile_message)]
    caplog.clear()
    on = _loaded(tiny_sdxl_pipe, CUDA)
    apply_load_options(on, quantize="none", compile="on")
    assert on.compile_message.startswith("compile: fell back to eager (")
    assert _compile_records(caplog) == [(logging.WARNING, on.compile_message)]
    assert not K.is_compiled(tiny_sdxl_pipe.unet)


def test_auto_where_the_toolchain_looks_fine_but_fails_is_an_info_line(
    tiny_sdxl_pipe: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _toolchain(monkeypatch, None)
    _broken_probe(monkeypatch)
    caplog.set_level(logging.INFO, LOADER_LOG)
    loaded = _loaded(tiny_sdxl_pipe, CUDA)
    apply_load_options(loaded, quantize="none", compile="auto")
    assert loaded.compile_message.startswith("compile: fell back to eager (")
    assert _compile_records(caplog) == [(logging.INFO, loaded.compile_message)]
