"""The store under hostile conditions: concurrent writers, absurd JSON, pipes and folders where
files belong, over-long prompts, temporary files a kill left, and the umask."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from demofusion_app.engine.request import MAX_PROMPT_CHARS
from demofusion_app.store import (
    HashCache,
    PresetError,
    PresetExists,
    PresetStore,
    SettingsStore,
    store_paths,
)
from demofusion_app.store import files as store_files

PARAMS = {"steps": 20, "guidance": 7.0}
HOUR = 3600
LONG_PROMPT = "a castle " * (MAX_PROMPT_CHARS // 9 + 10)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _user_files(store: PresetStore) -> list[str]:
    return sorted(p.name for p in store.user_dir.glob("*.json"))


# 1. Concurrent changes ----------------------------------------------------------------------------
def test_a_settings_save_keeps_what_another_store_saved_meanwhile(tmp_path: Path) -> None:
    first, second = SettingsStore(tmp_path), SettingsStore(tmp_path)
    second.set("output_folder", str(tmp_path / "elsewhere"))
    second.save()
    first.set("device", "cpu")
    first.save()

    fresh = SettingsStore(tmp_path)
    assert fresh.get("output_folder") == str(tmp_path / "elsewhere")
    assert fresh.get("device") == "cpu"
    assert first.get("output_folder") == str(tmp_path / "elsewhere"), "the saver sees it too"


def test_folders_added_by_two_stores_at_once_are_both_kept(tmp_path: Path) -> None:
    from demofusion_app.models import discovery

    root = tmp_path / "home"
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    first, second = SettingsStore(root), SettingsStore(root)
    discovery.add_folder(one, settings=second)
    discovery.add_folder(two, settings=first)  # `first` loaded before `second` saved

    assert SettingsStore(root).get("model_folders") == [str(one.resolve()), str(two.resolve())]


def test_a_preset_name_taken_by_another_store_meanwhile_is_refused_not_overwritten(
    tmp_path: Path,
) -> None:
    first, second = PresetStore(tmp_path), PresetStore(tmp_path)
    second.save("Night", {"steps": 30})
    with pytest.raises(PresetExists, match="just saved by another"):
        first.save("night", PARAMS)
    # Even "replace" does not overwrite a preset the person never saw...
    second.save("Dusk", {"steps": 31})
    with pytest.raises(PresetExists, match="just saved by another"):
        first.save("Dusk", PARAMS, overwrite=True)
    assert PresetStore(tmp_path).get("Dusk").parameters["steps"] == 31
    # ...but once it has been seen, replacing it is a choice.
    first.save("Dusk", PARAMS, overwrite=True)
    first.save("Day", PARAMS)

    final = PresetStore(tmp_path)
    assert [p.name for p in final.presets() if not p.builtin] == ["Day", "Dusk", "Night"]
    assert final.get("Night").parameters["steps"] == 30
    assert final.get("Dusk").parameters["steps"] == 20
    assert _user_files(final) == ["day.json", "dusk.json", "night.json"]
    assert final.warnings == []


def test_a_preset_deleted_by_another_store_cannot_be_renamed(tmp_path: Path) -> None:
    first, second = PresetStore(tmp_path), PresetStore(tmp_path)
    first.save("Morning", PARAMS)
    second.reload()
    second.delete("Morning")
    with pytest.raises(PresetError, match="no preset called"):
        first.rename("Morning", "Dawn")
    assert _user_files(PresetStore(tmp_path)) == []


WRITERS = 4
ROUNDS = 5


def _busy_writer(root: str, tag: int, barrier: object) -> None:
    barrier.wait(timeout=60)  # type: ignore[attr-defined]
    presets = PresetStore(root)
    for round_ in range(ROUNDS):
        # Distinct names that all want the same file name (shot-N.json).
        presets.save(f"Shot {round_}" + "." * tag, PARAMS)
    with contextlib.suppress(PresetExists):  # all but one writer find it taken
        presets.save("Shared", {"steps": 10 + tag})
    settings = SettingsStore(root)
    with settings.edit():
        settings.set("model_folders", [*settings.get("model_folders"), f"/models/{tag}"])


def test_processes_saving_presets_and_folders_at_once_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    writers = [
        ctx.Process(target=_busy_writer, args=(str(tmp_path), tag, barrier))
        for tag in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [w.exitcode for w in writers] == [0] * WRITERS

    store = PresetStore(tmp_path)
    assert store.warnings == [], "no two files hold the same name"
    expected = {f"Shot {r}" + "." * t for r in range(ROUNDS) for t in range(WRITERS)} | {"Shared"}
    assert {p.name for p in store.presets() if not p.builtin} == expected
    assert len(_user_files(store)) == len(expected)
    folders = SettingsStore(tmp_path).get("model_folders")
    assert sorted(folders) == [f"/models/{t}" for t in range(WRITERS)]


# 2. Absurd JSON, and folders where files belong ---------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        _nested(100_000),  # json itself gives up (RecursionError)
        '{"version": 2, "ui": ' + '{"a": ' * 400 + "1" + "}" * 400 + "}",  # copies would
    ],
    ids=["json-recursion", "deep-value"],
)
def test_deeply_nested_settings_are_set_aside_and_the_defaults_used(
    tmp_path: Path, text: str
) -> None:
    path = store_paths(tmp_path).settings_file
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")

    store = SettingsStore(tmp_path)
    assert store.get("ui") == {}
    assert store.moved_aside is not None and store.moved_aside.read_text() == text
    assert len(store.warnings) == 1 and "damaged" in store.warnings[0]
    store.save()
    assert json.loads(path.read_text(encoding="utf-8"))["ui"] == {}


def test_a_folder_where_the_settings_file_should_be_is_set_aside(tmp_path: Path) -> None:
    path = store_paths(tmp_path).settings_file
    (path / "inside").mkdir(parents=True)

    store = SettingsStore(tmp_path)
    assert store.get("device") == "auto"
    assert store.moved_aside is not None and (store.moved_aside / "inside").is_dir()
    assert len(store.warnings) == 1 and "not a file" in store.warnings[0]
    store.set("device", "cpu")
    store.save()
    assert SettingsStore(tmp_path).get("device") == "cpu"


def test_deeply_nested_and_folder_preset_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    store = PresetStore(tmp_path)
    store.save("Good", PARAMS)
    (store.user_dir / "deep.json").write_text(_nested(100_000), encoding="utf-8")
    (store.user_dir / "deeper.json").write_text(
        '{"version": 1, "name": "Deep", "parameters": ' + _nested(200) + "}", encoding="utf-8"
    )
    (store.user_dir / "folder.json").mkdir()

    store.reload()
    assert [p.name for p in store.presets() if not p.builtin] == ["Good"]
    skipped = " ".join(store.warnings)
    assert all(name in skipped for name in ("deep.json", "deeper.json", "folder.json"))
    with pytest.raises(PresetError, match=r"Cannot import deep\.json"):
        store.import_file(store.user_dir / "deep.json")


def test_a_deeply_nested_hash_cache_is_ignored(tmp_path: Path) -> None:
    path = store_paths(tmp_path).hashes_file
    path.parent.mkdir(parents=True)
    path.write_text(_nested(100_000), encoding="utf-8")
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")

    cache = HashCache(tmp_path)
    assert cache.cached(model) is None
    digest = cache.sha256(model)
    assert HashCache(tmp_path).cached(model) == digest


def test_a_folder_where_the_hash_cache_should_be_is_set_aside(tmp_path: Path) -> None:
    path = store_paths(tmp_path).hashes_file
    path.mkdir(parents=True)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")

    digest = HashCache(tmp_path).sha256(model)
    assert HashCache(tmp_path).cached(model) == digest


# 3. Pipes and links among presets -----------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX-only")
def test_pipes_and_dangling_links_among_presets_are_skipped_without_opening(
    tmp_path: Path,
) -> None:
    user_dir = store_paths(tmp_path).presets_dir
    user_dir.mkdir(parents=True)
    (user_dir / "good.json").write_text(
        json.dumps({"version": 1, "name": "Good", "parameters": PARAMS}), encoding="utf-8"
    )
    fifo = user_dir / "pipe.json"
    os.mkfifo(fifo)
    (user_dir / "gone.json").symlink_to(tmp_path / "nowhere.json")

    found: list[PresetStore] = []
    # On a thread only so that a regression fails the test instead of hanging the run.
    loader = threading.Thread(target=lambda: found.append(PresetStore(tmp_path)), daemon=True)
    loader.start()
    loader.join(60)
    try:
        assert not loader.is_alive(), "loading the presets opened the pipe and blocked"
    finally:
        if loader.is_alive():  # let the blocked reader go: open the write end, close it
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            loader.join(5)
    store = found[0]
    assert [p.name for p in store.presets() if not p.builtin] == ["Good"]
    skipped = " ".join(store.warnings)
    assert "pipe.json" in skipped and "not a regular file" in skipped
    assert "gone.json" in skipped
    with pytest.raises(PresetError, match=r"no preset file|not a regular file"):
        store.import_file(fifo)


# 4. Over-long prompts -----------------------------------------------------------------------------
def _preset_text(name: str) -> str:
    parameters = {**PARAMS, "prompt": LONG_PROMPT, "negative_prompt": "blurry"}
    return json.dumps({"version": 1, "name": name, "parameters": parameters})


def test_an_over_long_prompt_in_a_preset_file_is_ignored_and_the_rest_applies(
    tmp_path: Path,
) -> None:
    builtin_dir = tmp_path / "builtin"
    builtin_dir.mkdir()
    (builtin_dir / "shipped.json").write_text(_preset_text("Shipped"), encoding="utf-8")
    user_dir = store_paths(tmp_path).presets_dir
    user_dir.mkdir(parents=True)
    (user_dir / "mine.json").write_text(_preset_text("Mine"), encoding="utf-8")
    shared = tmp_path / "shared.json"
    shared.write_text(_preset_text("Shared"), encoding="utf-8")

    store = PresetStore(tmp_path, builtin_dir=builtin_dir)
    imported = store.import_file(shared)
    for preset in (store.get("Shipped"), store.get("Mine"), imported):
        assert dict(preset.parameters) == {**PARAMS, "negative_prompt": "blurry"}
    warnings = store.take_warnings()
    assert len(warnings) == 3
    assert all("prompt" in w and f"{MAX_PROMPT_CHARS:,}" in w for w in warnings)
    assert any("shared.json" in w for w in warnings)


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_saving_a_preset_with_an_over_long_prompt_is_refused(tmp_path: Path, field: str) -> None:
    store = PresetStore(tmp_path)
    with pytest.raises(PresetError, match=r"a preset keeps at most 16,384\. Shorten it\."):
        store.save("Long", {**PARAMS, field: LONG_PROMPT})
    assert _user_files(store) == []


# 5. Temporary files a kill left -------------------------------------------------------------------
def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    # Only a link needs follow_symlinks=False, which Windows does not offer.
    if path.is_symlink():
        os.utime(path, (when, when), follow_symlinks=False)
    else:
        os.utime(path, (when, when))


def test_stale_temporary_files_of_ours_are_removed_when_the_store_opens(tmp_path: Path) -> None:
    paths = store_paths(tmp_path)
    paths.config_dir.mkdir(parents=True)
    paths.presets_dir.mkdir(parents=True)
    ours_old = paths.config_dir / ".settings.json.dfs-k3x_9a2b.tmp"
    legacy_old = paths.presets_dir / ".portrait.json.ab12cd34.tmp"
    ours_new = paths.config_dir / ".settings.json.dfs-0000ffff.tmp"
    others = [
        paths.config_dir / "notes.tmp",
        paths.config_dir / ".other.txt.ab12cd34.tmp",
        paths.config_dir / "settings.json.corrupt-20260101-000000",
    ]
    for path in (ours_old, legacy_old, ours_new, *others):
        path.write_text("x", encoding="utf-8")
    named_like_ours = paths.config_dir / ".folder.json.dfs-12345678.tmp"
    named_like_ours.mkdir()
    for path in (ours_old, legacy_old, named_like_ours, *others):
        _age(path, 2 * HOUR)

    SettingsStore(tmp_path)
    assert not ours_old.exists() and not legacy_old.exists()
    assert ours_new.exists(), "a young one may be a write in progress"
    assert named_like_ours.is_dir()
    assert all(p.exists() for p in others)


def test_the_cleaner_never_touches_links_or_pipes_and_skips_a_missing_folder(
    tmp_path: Path,
) -> None:
    target = tmp_path / "precious.png"
    target.write_text("x", encoding="utf-8")
    _age(target, 2 * HOUR)
    folder = tmp_path / "out"
    folder.mkdir()
    try:
        (folder / ".link.png.dfs-12345678.tmp").symlink_to(target)
    except OSError:  # pragma: no cover - Windows without the symlink privilege
        pytest.skip("cannot make symbolic links here")
    _age(folder / ".link.png.dfs-12345678.tmp", 2 * HOUR)
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / ".pipe.png.dfs-12345678.tmp")
        _age(folder / ".pipe.png.dfs-12345678.tmp", 2 * HOUR)
    stale = folder / ".out.png.dfs-abcdef01.tmp"
    stale.write_text("x", encoding="utf-8")
    _age(stale, 2 * HOUR)

    assert store_files.clean_stale_temp_files(folder) == [stale]
    assert target.exists() and (folder / ".link.png.dfs-12345678.tmp").is_symlink()
    assert store_files.clean_stale_temp_files(tmp_path / "missing") == []
    _age(target, 10)
    assert store_files.clean_stale_temp_files(tmp_path, max_age_s=5) == []


def test_our_atomic_writes_name_their_temporary_files_for_the_cleaner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from demofusion_app.imaging import images

    seen: list[str] = []
    real_replace, real_publish = store_files._replace, images._publish

    def record_replace(source: str, target: Path, attempts: int, delay: float) -> None:
        seen.append(Path(source).name)
        real_replace(source, target, attempts, delay)

    def record_publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
        seen.append(tmp.name)
        real_publish(tmp, path, overwrite=overwrite)

    monkeypatch.setattr(store_files, "_replace", record_replace)
    monkeypatch.setattr(images, "_publish", record_publish)
    store_files.atomic_write_text(tmp_path / "settings.json", "{}")
    images.save_png_atomic(Image.new("RGB", (8, 8)), tmp_path / "picture.png")

    assert len(seen) == 2
    assert seen[0].startswith(".settings.json.dfs-") and seen[1].startswith(".picture.png.dfs-")
    assert all(store_files.is_our_temp_name(name) for name in seen)


# 6. The umask -------------------------------------------------------------------------------------
_UMASK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    os.umask(0o027)
    from PIL import Image
    from demofusion_app.imaging.images import save_png_atomic
    from demofusion_app.store import PresetStore, SettingsStore

    root = Path(sys.argv[1])
    settings = SettingsStore(root)
    settings.save()
    presets = PresetStore(root, settings=settings)
    mine = presets.save("Mine", {"steps": 20})
    exported = presets.export("Mine", root / "shared.json")
    picture = save_png_atomic(Image.new("RGB", (8, 8)), root / "picture.png")
    kept = root / "kept.json"
    kept.write_text("{}")
    os.chmod(kept, 0o600)
    presets.export("Mine", kept, overwrite=True)
    for path in (settings.path, mine.path, exported, picture, kept):
        print(path.name, oct(os.stat(path).st_mode & 0o777))
    """
)


@pytest.mark.skipif(os.name != "posix", reason="Windows has no umask")
def test_new_files_get_the_mode_the_umask_gives_and_replaced_files_keep_theirs(
    tmp_path: Path,
) -> None:
    # A fresh process: the store reads the umask once, when it is imported.
    done = subprocess.run(
        [sys.executable, "-c", _UMASK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modes = dict(line.split() for line in done.stdout.splitlines())
    assert modes == {
        "settings.json": "0o640",
        "mine.json": "0o640",
        "shared.json": "0o640",
        "picture.png": "0o640",
        "kept.json": "0o600",
    }


def test_a_save_never_writes_defaults_over_a_settings_file_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demofusion_app.store import settings as settings_module

    store = SettingsStore(tmp_path)
    store.set("device", "cpu")
    store.save()
    before = store.path.read_bytes()

    def held(path: Path) -> bytes:
        # What Windows says while another program holds the file; root cannot make this on POSIX.
        raise PermissionError(13, "The process cannot access the file", str(path))

    monkeypatch.setattr(settings_module, "read_regular_bytes", held)
    unreadable = SettingsStore(tmp_path)
    assert unreadable.get("device") == "auto" and "cannot be read" in unreadable.warnings[0]
    unreadable.set("dtype", "float16")
    with pytest.raises(PermissionError):
        unreadable.save()
    assert store.path.read_bytes() == before
