"""`presets` on the command line, through the add_parser/run pair the real CLI wires in."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from demofusion_app.cli import presets as cli_presets
from demofusion_app.store import HOME_ENV, PresetStore, SettingsStore
from demofusion_app.store.paths import StorePaths


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="demofusion-app")
    commands = parser.add_subparsers(dest="command", required=True)
    cli_presets.add_parser(commands)
    args = parser.parse_args(argv)
    assert args.func is cli_presets.run
    return args.func(args)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(root))
    return root


def test_list_shows_the_built_ins(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["presets", "list"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split("  (")[0] for line in lines] == [
        "Creative upscale",
        "DemoFusion paper",
        "DMD2 4 steps",
        "Faithful upscale",
        "Fast draft",
        "FLUX dev 2K",
        "FLUX schnell fast",
        "Hyper-SD 8 steps",
        "Lightning 8 steps",
        "Low VRAM (8 GB)",
        "Turbo",
    ]
    assert all("(built-in" in line for line in lines)
    assert err == ""


def test_list_works_with_a_corrupt_settings_file_and_keeps_it_aside(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = StorePaths.under(home)
    paths.config_dir.mkdir(parents=True)
    paths.settings_file.write_text('{"device": "cpu", "default_pre', encoding="utf-8")

    assert run_cli(["presets", "list"]) == 0
    out, err = capsys.readouterr()
    assert "DemoFusion paper" in out and "Low VRAM (8 GB)" in out
    aside = list(paths.config_dir.glob("settings.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_text(encoding="utf-8") == '{"device": "cpu", "default_pre'
    assert err.count("warning:") == 1 and aside[0].name in err
    assert "Traceback" not in err

    assert run_cli(["presets", "list"]) == 0
    assert "warning" not in capsys.readouterr().err, "the damage is reported once"


def test_save_show_export_import_delete_round_trip(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_cli(
            [
                "presets", "save", "Night city",
                "--steps", "30", "--guidance", "6", "--stride", "quarter",
                "--width", "3x base", "--height", "2048", "--no-jitter",
                "--view-batch-size", "8", "--cosine-scale-1", "2.5", "--sigma", "1.0",
                "--scheduler", "dpmpp_2m", "--memory-mode", "model-offload",
                "--prompt", "neon rain", "--description", "wet streets",
            ]
        )
        == 0
    )  # fmt: skip
    assert "Saved preset 'Night city'" in capsys.readouterr().out
    preset = PresetStore(home).get("night city")
    assert dict(preset.parameters) == {
        "prompt": "neon rain",
        "width": "3x base",
        "height": 2048,
        "steps": 30,
        "guidance": 6.0,
        "scheduler": "dpmpp_2m",
        "stride": "quarter",
        "view_batch_size": 8,
        "cosine_scale_1": 2.5,
        "sigma": 1.0,
        "memory_mode": "model-offload",
        "jitter": False,
    }

    assert run_cli(["presets", "show", "Night city"]) == 0
    out = capsys.readouterr().out
    assert '  stride: "quarter"' in out and "  steps: 30" in out and "wet streets" in out
    assert run_cli(["presets", "show", "Night city", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["jitter"] is False

    file = tmp_path / "night.json"
    assert run_cli(["presets", "export", "night city", str(file)]) == 0
    assert json.loads(file.read_text(encoding="utf-8"))["name"] == "Night city"
    assert run_cli(["presets", "import", str(file)]) == 0
    assert "Imported preset 'Night city (2)'" in capsys.readouterr().out

    assert run_cli(["presets", "delete", "Night city"]) == 0
    assert PresetStore(home).names()[-1] == "Night city (2)"


def test_save_from_a_preset_changes_only_the_given_flags(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_cli(["presets", "save", "Paper fast", "--from", "DemoFusion paper", "--steps", "25"])
        == 0
    )
    preset = PresetStore(home).get("Paper fast")
    paper = PresetStore(home).get("DemoFusion paper")
    assert preset.parameters["steps"] == 25
    assert {k: v for k, v in preset.parameters.items() if k != "steps"} == {
        k: v for k, v in paper.parameters.items() if k != "steps"
    }
    assert run_cli(["presets", "save", "Up", "--from", "Paper fast", "--scale", "2"]) == 0
    assert "width" not in PresetStore(home).get("Up").parameters


def test_replacing_a_user_preset_needs_force(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["presets", "save", "Mine", "--steps", "10"]) == 0
    assert run_cli(["presets", "save", "Mine", "--steps", "11"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli(["presets", "save", "Mine", "--steps", "11", "--force"]) == 0
    assert "Replaced preset 'Mine'" in capsys.readouterr().out
    assert PresetStore(home).get("Mine").parameters["steps"] == 11


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["presets", "show", "Nope"], "There is no preset called 'Nope'"),
        (["presets", "delete", "Fast draft"], "is a built-in preset and cannot be deleted"),
        (["presets", "save", "Fast draft", "--steps", "3"], "built-in preset and cannot be"),
        (["presets", "save", "Empty"], "Give at least one setting"),
        (["presets", "save", "X", "--stride", "wide"], "Stride 'wide' is not understood"),
        (["presets", "save", "X", "--width", "huge"], "Size 'huge' is not understood"),
        (["presets", "save", "X", "--steps", "0"], "Steps 0 is out of range"),
        (["presets", "save", "X", "--width", "2048", "--scale", "2"], "either a size"),
        (["presets", "import", "/no/such/file.json"], "no preset file"),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_export_refuses_to_overwrite_a_file_without_force(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "out.json"
    file.write_text("keep me", encoding="utf-8")
    assert run_cli(["presets", "export", "Fast draft", str(file)]) == 2
    assert file.read_text(encoding="utf-8") == "keep me"
    assert run_cli(["presets", "export", "Fast draft", str(file), "--force"]) == 0
    assert json.loads(file.read_text(encoding="utf-8"))["name"] == "Fast draft"


def test_a_skipped_preset_file_is_named_in_a_warning(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    presets_dir = StorePaths.under(home).presets_dir
    presets_dir.mkdir(parents=True)
    (presets_dir / "half-written.json").write_text('{"version": 1, "na', encoding="utf-8")
    assert run_cli(["presets", "list"]) == 0
    err = capsys.readouterr().err
    assert "half-written.json" in err and err.startswith("warning: ")


def test_the_default_preset_is_marked_in_the_list(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = SettingsStore(home)
    settings.set("default_preset", "Fast draft")
    settings.save()
    assert run_cli(["presets", "list"]) == 0
    out = capsys.readouterr().out
    assert "Fast draft  (built-in, default)" in out


def test_explicit_from_args_keeps_only_the_given_flags() -> None:
    parser = argparse.ArgumentParser()
    cli_presets.add_generation_flags(parser)
    args = parser.parse_args(["--steps", "9", "--stride", "half", "--width", "2x base"])
    assert cli_presets.explicit_from_args(args) == {
        "steps": 9,
        "stride": "half",
        "width": "2x base",
    }
    assert cli_presets.explicit_from_args(parser.parse_args([])) == {}
    assert cli_presets.explicit_from_args(parser.parse_args(["--no-jitter"])) == {"jitter": False}


def test_a_disk_failure_exits_1_with_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home.mkdir(parents=True)
    (home / "data").write_text("a file where the data folder should be", encoding="utf-8")
    assert run_cli(["presets", "save", "Mine", "--steps", "10"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_save_keeps_the_flux_values(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["presets", "save", "Flux true cfg", "--from", "FLUX dev 2K", "--true-cfg", "4"]
    assert run_cli([*argv, "--dype", "--quantize", "fp8"]) == 0
    preset = PresetStore(home).get("Flux true cfg")
    assert (preset.parameters["true_cfg"], preset.parameters["dype"]) == (4.0, True)
    assert preset.parameters["quantize"] == "fp8"
    assert preset.parameters["guidance"] == 3.5  # from the FLUX preset it started from
