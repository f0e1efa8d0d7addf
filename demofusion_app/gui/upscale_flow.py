"""Upscaling from the window: pictures dropped, pasted or opened become a queue of upscale runs.

The window asks `next_job` when Generate is pressed; the flow answers with the next waiting
picture's request fields, and is told how each run ended so the queue moves on by itself.

Prompt, negative prompt and seed belong to a picture: each one comes from its own metadata, or
starts empty (a new seed) when it has none, so nothing of an earlier picture is reused silently.
What the artist types after the drop applies to the pictures that have no metadata of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QMimeData, QObject, Signal

from .drops import local_files, save_picture_data
from .tiles import TiledImage
from .upscale_panel import UpscalePanel
from .upscale_sources import Source, SourceQueue, State, form_values, load_sources

if TYPE_CHECKING:
    from .main_window import MainWindow

ORIGINAL = "Original"
PICTURE_FIELDS = ("prompt", "negative_prompt", "seed")
"""Form fields that belong to one picture (from its metadata), not to the batch."""


@dataclass(frozen=True)
class UpscaleJob:
    index: int
    source: Source
    values: dict[str, Any]


class UpscaleFlow(QObject):
    """The queue behind the upscale panel. `queue_changed` fires whenever a picture comes, goes or
    changes state."""

    queue_changed = Signal()

    def __init__(self, window: MainWindow, panel: UpscalePanel) -> None:
        super().__init__(window)
        self.window = window
        self.panel = panel
        self.queue = SourceQueue()
        self._continue = False
        self._form_path: Path | None = None
        self._applied: dict[str, Any] = {}
        self._shown: tuple[Path, TiledImage] | None = None
        self._wanted: Path | None = None  # the picture being decoded for the viewer
        panel.remove_requested.connect(self.remove)
        panel.clear_requested.connect(self.clear)
        panel.queue.currentRowChanged.connect(self._selected)

    # Adding pictures --------------------------------------------------------------------------------
    def open(self, paths: list[str]) -> int:
        """Queue the usable pictures among `paths`; say why the others cannot be used. Returns how
        many were queued. The first new picture fills the form from its metadata and is shown."""
        sources, problems = load_sources(paths)
        # What the metadata readers left out (an out-of-range seed, an over-long prompt) is said, not
        # silently dropped: the artist sees why the seed or prompt box is empty.
        notes = [note for source in sources for note in source.found.warnings]
        if problems or notes:
            self.window.banner.show_message(
                "\n".join(problems + notes), kind="error" if problems else "info"
            )
        if not sources:
            return 0
        self.queue.add(sources)
        first = sources[0]
        values = form_values(first.found, self._known_models(), self.window.settings)
        # Cleared first: a picture without metadata must not run with the last prompt and seed.
        blank: dict[str, Any] = dict.fromkeys(PICTURE_FIELDS, "")
        self.window.apply_values({**blank, **values})
        self._form_path = first.path
        form = self.window.collect_values()
        self._applied = {key: form.get(key) for key in PICTURE_FIELDS}
        if not self.window.controller.running:
            tiled = TiledImage.from_source(first.path)
            self._shown, self._wanted = (first.path, tiled), None
            self.window.viewer.set_images([(ORIGINAL, tiled)])
        self.panel.set_note(first.found.describe())
        self._refresh()
        self.panel.queue.setCurrentRow(len(self.queue) - len(sources))
        return len(sources)

    def open_mime(self, mime: QMimeData) -> int:
        """A drop or paste: its files, or its picture data saved under the store's cache folder."""
        paths = local_files(mime)
        if not paths:
            saved = save_picture_data(mime, self.window.settings.paths.cache_dir / "pasted")
            paths = [saved] if saved else []
        if not paths:
            self.window.banner.show_message(
                "There is no picture in what was dropped or pasted; use a PNG, JPEG or WebP file."
            )
            return 0
        return self.open(paths)

    def _known_models(self) -> list[str]:
        combo = self.window.model_picker.combo
        return [str(combo.itemData(i)) for i in range(combo.count()) if combo.itemData(i)]

    # Running ------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while pictures wait in the queue (Generate then upscales)."""
        return self.queue.next_pending() is not None

    def next_job(self, form: dict[str, Any]) -> UpscaleJob | None:
        """The request fields for the next waiting picture (None when none waits)."""
        index = self.queue.next_pending()
        if index is None:
            return None
        source = self.queue.items[index]
        values = {**form, **self.panel.values(), "init_image": str(source.path)}
        if source.path != self._form_path:
            values.update(self._own_fields(source, form))
        return UpscaleJob(index, source, values)

    def _own_fields(self, source: Source, form: dict[str, Any]) -> dict[str, Any]:
        """Prompt, negative prompt and seed for a picture the form was not filled from: its own
        metadata; else what the artist typed after the drop; else empty (a new seed)."""
        found = source.found
        own = {
            "prompt": found.prompt or "",
            "negative_prompt": found.negative_prompt or "",
            "seed": "" if found.seed is None else found.seed,
        }
        fields: dict[str, Any] = {}
        for key in PICTURE_FIELDS:
            typed = form.get(key) != self._applied.get(key)
            fields[key] = own[key] if own[key] != "" else (form.get(key, "") if typed else "")
        return fields

    def preview_source(self) -> Source | None:
        """The picture the plan is shown for: the next waiting one."""
        index = self.queue.next_pending()
        return None if index is None else self.queue.items[index]

    def started(self, job: UpscaleJob) -> None:
        """The run of `job` began: the viewer shows its picture, decoded off the GUI thread unless
        it is already the one on screen."""
        self.queue.start(job.index)
        path = job.source.path
        if self._shown is not None and self._shown[0] == path:
            self._wanted = None
            self.window.viewer.set_images([(ORIGINAL, self._shown[1])])
        else:
            self._wanted = path
            self.window.viewer.clear()
            self.window.background.submit(
                lambda: TiledImage.from_source(path),
                lambda tiled: self._decoded(path, tiled),
                lambda exc: self.window.banner.show_message(str(exc)),
            )
        self._continue = False
        self._refresh()

    def _decoded(self, path: Path, tiled: TiledImage) -> None:
        """The picture of a started run is decoded: first in the viewer, before any stage that
        came meanwhile."""
        if self._wanted != path:
            return  # another picture took the viewer meanwhile
        self._shown, self._wanted = (path, tiled), None
        self.window.viewer.set_images([(ORIGINAL, tiled), *self.window.stage_images()])

    def ended(self, state: State, result: str | None = None) -> None:
        """The running upscale ended; a finished one lets the queue go on to the next picture."""
        if self.queue.running is None:
            return
        self.queue.end(state, result)
        self._continue = state is State.DONE and self.active
        self._refresh()

    def take_continue(self) -> bool:
        """True once after a run finished with more pictures waiting."""
        go, self._continue = self._continue, False
        return go

    # Editing the queue --------------------------------------------------------------------------------
    def remove(self, index: int) -> None:
        if self.queue.remove(index):
            self._refresh()

    def clear(self) -> None:
        self.queue.clear()
        self._refresh()

    def _selected(self, row: int) -> None:
        if 0 <= row < len(self.queue):
            source = self.queue.items[row]
            self.panel.set_note(source.found.describe())
            self.panel.update_remove(self.queue.items)

    def _refresh(self) -> None:
        self.panel.show_sources(self.queue.items)
        self.queue_changed.emit()

    def source_paths(self) -> list[Path]:
        return [s.path for s in self.queue.items]
