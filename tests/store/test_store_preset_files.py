"""Built-in and user presets: read-only built-ins, and all a person does with their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demofusion_app.engine.geometry import SD15, SDXL
from demofusion_app.resources import resources_dir
from demofusion_app.store import (
    BuiltinPresetError,
    PresetError,
    PresetExists,
    PresetNotFound,
    PresetStore,
    SettingsStore,
)
from demofusion_app.store.paths import StorePaths
from demofusion_app.store.preset_store import slug

BUILTINS = [
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


@pytest.fixture
def store(tmp_path: Path) -> PresetStore:
    return PresetStore(tmp_path)


def test_the_resources_folder_is_found_from_a_source_checkout() -> None:
    assert (resources_dir() / "presets").is_dir()


def test_the_built_ins_load_without_warnings(store: PresetStore) -> None:
    assert store.names() == BUILTINS
    assert store.warnings == []
    assert all(p.builtin for p in store.presets())
    for path in (resources_dir() / "presets").glob("*.json"):
        assert isinstance(json.loads(path.read_text(encoding="utf-8"))["version"], int)


def test_the_paper_preset_has_the_papers_settings_for_sdxl_and_sd15(store: PresetStore) -> None:
    paper = store.get("DemoFusion paper")
    for geometry, stride in ((SDXL, 64), (SD15, 32)):
        values = paper.resolve(geometry)
        assert values["steps"] == 50
        assert values["guidance"] == 7.5
        assert values["sigma"] == 0.8
        assert (values["cosine_scale_1"], values["cosine_scale_2"], values["cosine_scale_3"]) == (
            3.0,
            1.0,
            1.0,
        )
        assert values["stride"] == stride
        assert values["view_batch_size"] == 16
        assert values["width"] == values["height"] == 3 * geometry.base


def test_the_other_built_ins_say_what_their_names_promise(store: PresetStore) -> None:
    draft = store.get("fast draft").resolve(SDXL)
    assert draft["steps"] <= 25 and draft["width"] == 2048
    low = store.get("Low VRAM (8 GB)").resolve(SDXL)
    assert low["view_batch_size"] == 4 and low["memory_mode"] == "model-offload"
    upscale = store.get("Faithful upscale").resolve(SD15)
    assert upscale["scale"] == 2.0 and "width" not in upscale
    # The faithful end of the faithfulness control: its strength and colour fix come from the table.
    assert upscale["faithfulness"] == "faithful"
    assert (upscale["strength"], upscale["color_fix"]) == (0.3, "wavelet")
    creative = store.get("Creative upscale").resolve(SDXL)
    assert creative["faithfulness"] == "creative" and creative["scale"] == 2.0
    assert (creative["strength"], creative["color_fix"]) == (1.0, "none")


@pytest.mark.parametrize("action", ["save", "rename", "delete"])
def test_built_ins_cannot_be_overwritten_renamed_or_deleted(
    store: PresetStore, action: str
) -> None:
    with pytest.raises(BuiltinPresetError, match="built-in"):
        if action == "save":
            store.save("DemoFusion paper", {"steps": 1}, overwrite=True)
        elif action == "rename":
            store.rename("DemoFusion paper", "Mine")
        else:
            store.delete("demofusion PAPER")
    assert store.get("DemoFusion paper").parameters["steps"] == 50
    assert not store.user_dir.exists() or list(store.user_dir.iterdir()) == []


def test_save_as_writes_one_json_file_with_a_version(store: PresetStore) -> None:
    preset = store.save(
        "Portrait 4K", {"steps": 30, "width": "2x base", "height": "3x base"}, "tall"
    )
    assert preset.path == store.user_dir / "portrait-4k.json"
    data = json.loads(preset.path.read_text(encoding="utf-8"))
    assert data["version"] == 1 and data["name"] == "Portrait 4K"
    again = PresetStore(store.paths.root)
    assert again.get("portrait 4k") == preset
    assert again.names() == [*BUILTINS, "Portrait 4K"]


def test_a_taken_name_is_refused_unless_replacing(store: PresetStore) -> None:
    store.save("Mine", {"steps": 30})
    with pytest.raises(PresetExists):
        store.save("MINE", {"steps": 31})
    replaced = store.save("MINE", {"steps": 31}, overwrite=True)
    assert replaced.path == store.user_dir / "mine.json"
    assert [p.name for p in store.presets() if not p.builtin] == ["MINE"]


def test_new_presets_get_unused_file_names(store: PresetStore) -> None:
    store.user_dir.mkdir(parents=True)
    (store.user_dir / "night.json").write_text("{}", encoding="utf-8")  # someone else's file
    first = store.save("Night!", {"steps": 20})
    second = store.save("Night ?", {"steps": 21})
    assert first.path is not None and first.path.name == "night-2.json"
    assert second.path is not None and second.path.name == "night-3.json"
    assert (store.user_dir / "night.json").read_text(encoding="utf-8") == "{}"


def test_slugs_are_safe_file_names() -> None:
    assert slug("Low VRAM (8 GB)") == "low-vram-8-gb"
    assert slug("Café crème") == "cafe-creme"
    assert slug("!!!") == "preset"
    assert slug("CON") == "con-preset"


def test_rename_moves_the_file_and_keeps_the_parameters(store: PresetStore) -> None:
    old = store.save("Draft one", {"steps": 12})
    renamed = store.rename("draft one", "Final look")
    assert renamed.parameters == old.parameters
    assert old.path is not None and not old.path.exists()
    assert renamed.path == store.user_dir / "final-look.json"
    with pytest.raises(PresetNotFound):
        store.get("Draft one")
    assert PresetStore(store.paths.root).names()[-1] == "Final look"


def test_rename_to_a_taken_name_is_refused(store: PresetStore) -> None:
    store.save("A", {"steps": 10})
    store.save("B", {"steps": 11})
    with pytest.raises(PresetExists):
        store.rename("A", "b")
    with pytest.raises(PresetExists):
        store.rename("A", "Fast draft")
    assert store.rename("A", "a").name == "a", "changing only the case is allowed"


def test_duplicate_copies_a_built_in_into_a_user_preset(store: PresetStore) -> None:
    copy = store.duplicate("DemoFusion paper")
    assert copy.name == "DemoFusion paper copy" and not copy.builtin
    assert copy.parameters == store.get("DemoFusion paper").parameters
    second = store.duplicate("DemoFusion paper")
    assert second.name == "DemoFusion paper copy (2)"
    named = store.duplicate("Fast draft", "My draft")
    assert named.parameters["steps"] == 20


def test_delete_removes_the_file(store: PresetStore) -> None:
    preset = store.save("Temp", {"steps": 10})
    store.delete("temp")
    assert preset.path is not None and not preset.path.exists()
    assert "Temp" not in store.names()
    with pytest.raises(PresetNotFound, match="the presets are: Creative upscale, DemoFusion paper"):
        store.delete("Temp")


def test_the_default_preset_is_kept_in_settings_and_follows_renames(store: PresetStore) -> None:
    assert store.default() is None
    store.save("Mine", {"steps": 10})
    store.set_default("mine")
    assert SettingsStore(store.paths.root).get("default_preset") == "Mine"
    store.rename("Mine", "Ours")
    assert PresetStore(store.paths.root).default().name == "Ours"  # type: ignore[union-attr]
    store.delete("Ours")
    assert SettingsStore(store.paths.root).get("default_preset") is None
    store.set_default("Fast draft")
    assert PresetStore(store.paths.root).default().name == "Fast draft"  # type: ignore[union-attr]
    with pytest.raises(PresetNotFound):
        store.set_default("nothing")


def test_export_then_import_gives_the_same_preset_under_an_unused_name(
    store: PresetStore, tmp_path: Path
) -> None:
    mine = store.save("Wide", {"width": "3x base", "height": "base", "stride": "quarter"}, "pano")
    target = store.export("wide", tmp_path / "shared" / "wide.json")
    assert json.loads(target.read_text(encoding="utf-8"))["name"] == "Wide"
    with pytest.raises(PresetExists):
        store.export("Wide", target)

    imported = store.import_file(target)
    assert imported.name == "Wide (2)"
    assert imported.parameters == mine.parameters and imported.description == "pano"

    elsewhere = PresetStore(tmp_path / "other-home")
    assert elsewhere.import_file(target).name == "Wide"


def test_a_built_in_can_be_exported_and_imports_under_a_new_name(
    store: PresetStore, tmp_path: Path
) -> None:
    target = store.export("DemoFusion paper", tmp_path / "paper.json")
    imported = store.import_file(target)
    assert imported.name == "DemoFusion paper (2)" and not imported.builtin


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{ not json", "not valid JSON"),
        ('{"version": 1, "name": "X", "parameters": {"steps": -3}}', "Steps -3 is out of range"),
        ('{"version": 1, "name": "", "parameters": {}}', "needs a name"),
        ('{"name": "X", "parameters": {}}', "version"),
    ],
)
def test_importing_an_invalid_file_is_refused_and_adds_nothing(
    store: PresetStore, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(PresetError, match=message):
        store.import_file(bad)
    assert store.names() == BUILTINS
    with pytest.raises(PresetError, match="no preset file"):
        store.import_file(tmp_path / "missing.json")


def test_an_invalid_user_preset_file_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    paths = StorePaths.under(tmp_path)
    paths.presets_dir.mkdir(parents=True)
    (paths.presets_dir / "broken.json").write_text("{oops", encoding="utf-8")
    (paths.presets_dir / "wrong.json").write_text(
        '{"version": 1, "name": "Wrong", "parameters": {"steps": "x"}}', encoding="utf-8"
    )
    (paths.presets_dir / "clash.json").write_text(
        '{"version": 1, "name": "fast draft", "parameters": {"steps": 3}}', encoding="utf-8"
    )
    good = PresetStore(paths=paths).save("Good", {"steps": 10})

    store = PresetStore(paths=paths)
    assert store.names() == [*BUILTINS, "Good"]
    assert store.get("Fast draft").builtin
    assert len(store.warnings) == 3
    for name in ("broken.json", "wrong.json", "clash.json"):
        assert any(name in w for w in store.warnings)
    assert good.path is not None and good.path.exists()
