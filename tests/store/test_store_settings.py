"""The settings store: round trip, tolerant load, migration, recovery from damage, crash safety."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from demofusion_app.store import HOME_ENV, SCHEMA_VERSION, SETTINGS, SettingsError, SettingsStore
from demofusion_app.store import files as store_files
from demofusion_app.store.paths import StorePaths, store_paths
from demofusion_app.store.settings import MAX_RECENT_MODELS

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_setting_has_a_description_and_a_valid_default(tmp_path: Path) -> None:
    paths = StorePaths.under(tmp_path)
    for setting in SETTINGS:
        assert setting.description
        assert setting.coerce(setting.default_for(paths)) == setting.default_for(paths)


def test_a_fresh_store_has_the_defaults_and_creates_no_file(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    assert store.get("device") == "auto"
    assert store.get("model_cache_size") == 1
    assert store.get("allow_pickle") is False
    assert store.get("write_metadata") is True
    assert store.get("output_folder") == str(tmp_path / "pictures")
    assert store.warnings == []
    assert not store.path.exists()


def test_settings_round_trip_through_the_file(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.update(
        model_folders=["/m/a", "/m/b"],
        device="cpu",
        dtype="bfloat16",
        memory_mode="model-offload",
        model_cache_size=2,
        output_folder="/out",
        file_name_pattern="{model}_{seed}",
        write_metadata=False,
        last_parameters={"steps": 30, "prompt": "a lighthouse"},
        ui={"theme": "dark", "splitter": [300, 900]},
        window_geometry="AdnQywADAAAAAAAA",
        default_preset="Fast draft",
    )
    store.add_recent_model("/m/a/x.safetensors")
    store.save()

    again = SettingsStore(tmp_path)
    assert again.as_dict() == store.as_dict()
    assert again.get("recent_models") == ["/m/a/x.safetensors"]
    assert again.get("ui") == {"theme": "dark", "splitter": [300, 900]}
    assert json.loads(store.path.read_text(encoding="utf-8"))["version"] == SCHEMA_VERSION


def test_get_returns_a_copy_so_callers_cannot_change_the_store_by_accident(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    folders = store.get("model_folders")
    folders.append("/sneaky")
    assert store.get("model_folders") == []


def test_setting_a_wrong_value_raises_a_message_naming_the_choices(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    with pytest.raises(SettingsError, match="choose one of auto, cpu, cuda, mps"):
        store.set("device", "tpu")
    with pytest.raises(SettingsError, match="model_cache_size"):
        store.set("model_cache_size", "two")
    with pytest.raises(SettingsError, match="no setting 'colour'"):
        store.set("colour", "red")
    with pytest.raises(SettingsError):
        store.update(device="cpu", dtype="float8")
    assert store.get("device") == "auto", "a failed update changes nothing"


def test_bad_values_fall_back_to_defaults_with_a_warning_and_unknown_keys_are_kept(
    tmp_path: Path,
) -> None:
    paths = StorePaths.under(tmp_path)
    paths.config_dir.mkdir(parents=True)
    paths.settings_file.write_text(
        json.dumps(
            {
                "version": 2,
                "device": "quantum",
                "model_cache_size": "lots",
                "allow_pickle": 1,
                "dtype": "float16",
                "file_name_pattern": "{date}-{nonsense}",
                "future_feature": {"enabled": True},
            }
        ),
        encoding="utf-8",
    )
    store = SettingsStore(paths=paths)
    assert store.get("device") == "auto"
    assert store.get("model_cache_size") == 1
    assert store.get("allow_pickle") is False
    assert store.get("dtype") == "float16"
    assert store.get("file_name_pattern") == "{date}-{time}-{seed}"
    assert len(store.warnings) == 4
    assert any("device" in w and "quantum" in w for w in store.warnings)

    store.save()
    written = json.loads(paths.settings_file.read_text(encoding="utf-8"))
    assert written["future_feature"] == {"enabled": True}
    assert written["device"] == "auto"


def test_recent_models_stay_bounded_newest_first_without_duplicates(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    for i in range(MAX_RECENT_MODELS + 5):
        store.add_recent_model(f"/m/{i}")
    store.add_recent_model("/m/7")
    recent = store.get("recent_models")
    assert len(recent) == MAX_RECENT_MODELS
    assert recent[0] == "/m/7"
    assert recent.count("/m/7") == 1


def test_a_version_1_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    paths = StorePaths.under(tmp_path)
    paths.config_dir.mkdir(parents=True)
    shutil.copy(FIXTURES / "settings_v1.json", paths.settings_file)

    store = SettingsStore(paths=paths)
    assert store.warnings == []
    assert store.get("output_folder") == "/art/renders"
    assert store.get("model_folders") == ["/models/sdxl", "/models/sd15"]
    assert store.get("model_cache_size") == 2
    assert store.get("ui") == {"theme": "dark"}
    assert store.get("device") == "cuda"
    assert store.get("default_model") == "/models/sdxl/juggernaut.safetensors"

    store.save()
    written = json.loads(paths.settings_file.read_text(encoding="utf-8"))
    assert written["version"] == SCHEMA_VERSION == 2
    for old in ("output_dir", "model_dirs", "cache_size", "theme"):
        assert old not in written
    assert written["plugin_colour"] == "teal", "unknown keys survive the migration"


def test_a_file_from_a_newer_app_keeps_its_version_and_says_so(tmp_path: Path) -> None:
    paths = StorePaths.under(tmp_path)
    paths.config_dir.mkdir(parents=True)
    paths.settings_file.write_text('{"version": 7, "device": "cpu", "new": 1}', encoding="utf-8")
    store = SettingsStore(paths=paths)
    assert store.get("device") == "cpu"
    assert any("newer version" in w for w in store.warnings)
    store.save()
    assert json.loads(paths.settings_file.read_text(encoding="utf-8"))["version"] == 7


@pytest.mark.parametrize(
    "damage", [b'{"device": "cpu", "dtyp', b"\xff\xfe\x00garbage", b"[1, 2, 3]", b""]
)
def test_a_corrupt_file_is_moved_aside_and_defaults_are_used_with_one_warning(
    tmp_path: Path, damage: bytes
) -> None:
    paths = StorePaths.under(tmp_path)
    paths.config_dir.mkdir(parents=True)
    paths.settings_file.write_bytes(damage)

    store = SettingsStore(paths=paths)
    assert store.get("device") == "auto"
    aside = list(paths.config_dir.glob("settings.json.corrupt-*"))
    assert len(aside) == 1
    assert re.fullmatch(r"settings\.json\.corrupt-\d{8}-\d{6}", aside[0].name)
    assert aside[0].read_bytes() == damage
    assert store.moved_aside == aside[0]
    assert not paths.settings_file.exists()

    warnings = store.take_warnings()
    assert len(warnings) == 1 and aside[0].name in warnings[0]
    assert store.take_warnings() == [], "the face is told once"


def test_two_corrupt_files_in_the_same_second_are_both_kept(tmp_path: Path) -> None:
    paths = StorePaths.under(tmp_path)
    paths.config_dir.mkdir(parents=True)
    for _ in range(2):
        paths.settings_file.write_text("{not json", encoding="utf-8")
        SettingsStore(paths=paths)
    assert len(list(paths.config_dir.glob("settings.json.corrupt-*"))) == 2


def test_a_crash_between_write_and_replace_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SettingsStore(tmp_path)
    store.set("device", "cpu")
    store.save()
    before = store.path.read_bytes()

    def crash(src: str, dst: object) -> None:
        raise OSError("simulated power cut")

    monkeypatch.setattr(store_files.os, "replace", crash)
    store.set("device", "cuda")
    with pytest.raises(OSError, match="power cut"):
        store.save()
    monkeypatch.undo()

    assert store.path.read_bytes() == before
    assert SettingsStore(tmp_path).get("device") == "cpu"
    left = [p.name for p in store.path.parent.iterdir() if p.name != store.lock_file.name]
    assert left == ["settings.json"], "no temp file left"


def test_a_file_held_by_another_program_is_retried_until_it_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls: list[int] = []

    def held_twice(src: str, dst: object) -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise PermissionError(13, "The process cannot access the file")
        real_replace(src, dst)

    monkeypatch.setattr(store_files.os, "replace", held_twice)
    monkeypatch.setattr(store_files, "REPLACE_DELAY_S", 0.001)
    store = SettingsStore(tmp_path)
    store.set("dtype", "float16")
    store.save()
    assert len(calls) == 3
    assert SettingsStore(tmp_path).get("dtype") == "float16"


def test_a_file_held_for_good_gives_up_with_the_permission_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_held(src: str, dst: object) -> None:
        raise PermissionError(13, "held")

    store = SettingsStore(tmp_path)
    monkeypatch.setattr(store_files.os, "replace", always_held)
    with pytest.raises(PermissionError):
        store_files.atomic_write_text(store.path, "{}", attempts=3, delay=0.001)


def _writer(root: str, tag: int, rounds: int) -> None:
    store = SettingsStore(root)
    for i in range(rounds):
        # Values of varying length, so a torn write would show as broken JSON.
        store.set("model_folders", [f"/writer{tag}/{i}/" + "x" * ((i * 37 + tag) % 400)])
        store.set("last_parameters", {"round": i, "writer": tag, "pad": "y" * (i % 300)})
        store.save()


def test_two_processes_saving_at_once_never_leave_a_torn_file(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.save()
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(str(tmp_path), t, 150)) for t in (1, 2)]
    for w in writers:
        w.start()
    reads = 0
    deadline = time.monotonic() + 60
    while any(w.is_alive() for w in writers) and time.monotonic() < deadline:
        data = json.loads(store.path.read_text(encoding="utf-8"))
        assert data["version"] == SCHEMA_VERSION
        reads += 1
    for w in writers:
        w.join(timeout=30)
        assert w.exitcode == 0
    final = SettingsStore(tmp_path)
    assert final.warnings == []
    assert final.get("last_parameters")["round"] == 149
    assert reads > 0
    kept = ("settings.json", store.lock_file.name)
    leftovers = [p.name for p in store.path.parent.iterdir() if p.name not in kept]
    assert leftovers == []


def test_the_home_variable_puts_every_folder_under_one_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    paths = store_paths()
    assert paths.config_dir == tmp_path / "config"
    assert paths.data_dir == tmp_path / "data"
    assert paths.cache_dir == tmp_path / "cache"
    assert paths.log_dir == tmp_path / "logs"
    assert paths.settings_file == tmp_path / "config" / "settings.json"
    assert paths.presets_dir == tmp_path / "data" / "presets"
    assert paths.hashes_file == tmp_path / "cache" / "hashes.json"
    assert SettingsStore().path == paths.settings_file


def test_without_the_home_variable_the_platform_folders_are_named_for_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(HOME_ENV, raising=False)
    paths = store_paths()
    assert paths.root is None
    for folder in (paths.config_dir, paths.data_dir, paths.cache_dir, paths.log_dir):
        assert "demofusion-studio" in folder.parts
    assert paths.default_output_folder().name == "DemoFusion"


def test_load_gives_a_frozen_copy_with_one_attribute_per_setting(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.set("output_folder", "/renders")
    store.save()
    snapshot = SettingsStore(tmp_path).load()
    assert snapshot.output_folder == "/renders"
    assert {f for f in vars(snapshot)} == {s.name for s in SETTINGS}
    with pytest.raises(AttributeError):
        snapshot.device = "cpu"
