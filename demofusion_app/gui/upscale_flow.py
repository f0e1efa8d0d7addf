"""Upscaling from the window: pictures dropped, pasted or opened become a queue of upscale runs.

The window asks `next_job` when Generate is pressed; the flow answers with the next waiting
picture's request fields, and is told how each run ended so the queue moves on by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QMimeData, QObject, Signal

from .drops import local_files, save_picture_data
from .upscale_panel import UpscalePanel
from .upscale_sources import Source, SourceQueue, State, form_values, load_sources

if TYPE_CHECKING:
    from .main_window import MainWindow

ORIGINAL = "Original"


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
        panel.remove_requested.connect(self.remove)
        panel.clear_requested.connect(self.clear)
        panel.queue.currentRowChanged.connect(self._selected)

    # Adding pictures --------------------------------------------------------------------------------
    def open(self, paths: list[str]) -> int:
        """Queue the usable pictures among `paths`; say why the others cannot be used. Returns how
        many were queued. The first new picture fills the form from its metadata and is shown."""
        sources, problems = load_sources(paths)
        if problems:
            self.window.banner.show_message("\n".join(problems))
        if not sources:
            return 0
        self.queue.add(sources)
        first = sources[0]
        values = form_values(first.found, self._known_models())
        if values:
            self.window.apply_values(values)
        self._form_path = first.path
        if not self.window.controller.running:
            self.window.viewer.set_images([(ORIGINAL, str(first.path))])
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
        # A later picture of a multi-file drop keeps its own prompt when it has one.
        if source.path != self._form_path and source.found.prompt:
            values["prompt"] = source.found.prompt
            values["negative_prompt"] = source.found.negative_prompt or form["negative_prompt"]
        return UpscaleJob(index, source, values)

    def preview_source(self) -> Source | None:
        """The picture the plan is shown for: the next waiting one."""
        index = self.queue.next_pending()
        return None if index is None else self.queue.items[index]

    def started(self, job: UpscaleJob) -> None:
        self.queue.start(job.index)
        self.window.viewer.set_images([(ORIGINAL, str(job.source.path))])
        self._continue = False
        self._refresh()

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
