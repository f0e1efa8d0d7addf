"""Upscaling from the window: pictures dropped, pasted or opened become a queue of upscale runs.

A drop is taken at once: each picture shows in the queue as "reading…" while the window's pool
opens it, checks it, reads its metadata and decodes it for the viewer (once: the run shows the
same decoded picture). When the first picture of a drop arrives it fills the form and is shown; a
file that cannot be used leaves the queue and says why in the banner.

The window asks `next_job` when Generate is pressed; the flow answers with the next waiting
picture's request fields, and is told how each run ended so the queue moves on by itself.

Prompt, negative prompt and seed belong to a picture: each one comes from its own metadata, or
starts empty (a new seed) when it has none, so nothing of an earlier picture is reused silently.
What the artist types after the drop applies to the pictures that have no metadata of their own.

The panel says where the selected picture's values came from and offers each of them (prompt,
seed, steps, sampler, CFG) as a checkbox; the ticks are the picture's own (`Source.use`). A ticked
value is used for that picture's run, and shows in the form when the form holds that picture (the
first of its drop); an unticked one leaves the form's value: what the artist set, never another
picture's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QMimeData, QObject, Signal
from PySide6.QtGui import QImage

from demofusion_app.engine.request import RequestError
from demofusion_app.imaging.images import ImageError
from demofusion_app.imaging.readers.record import family_warning
from demofusion_app.store.settings import SettingsStore

from ..panels.upscale_panel import UpscalePanel
from ..viewer.tiles import TiledImage
from .drops import local_files, pasted_path, picture_data, save_picture
from .gan_baseline import GAN, GanBaselines
from .upscale_sources import (
    CHOICE_FIELDS,
    OFFERED_FIELDS,
    Source,
    SourceQueue,
    State,
    form_values,
    offers,
    origin_line,
    picture_values,
    read_source,
    reading,
)

ORIGINAL = "Original"
PICTURE_FIELDS = ("prompt", "negative_prompt", "seed")
"""Form fields that belong to one picture (from its metadata), not to the batch: emptied when a
picture fills the form, whether it records them or not."""
THUMBNAIL_SIDE = 48  # pixels of a queue item's thumbnail, its longer side
READING_NOTE = "Reading the picture and its metadata…"
STILL_READING = "The dropped pictures are still being read; press Upscale again in a moment."


class Banner(Protocol):
    def show_message(self, message: str, details: str = "", kind: str = "error") -> None: ...


class Viewer(Protocol):
    def set_images(self, images: list[tuple[str, Any]]) -> None: ...


class Pool(Protocol):
    def submit(
        self,
        work: Callable[[], Any],
        done: Callable[[Any], None],
        failed: Callable[[BaseException], None] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class FlowHost:
    """What the flow uses of the window, and nothing more."""

    banner: Banner
    viewer: Viewer
    background: Pool
    settings: SettingsStore
    collect_values: Callable[[], dict[str, Any]]
    """The form's request fields."""
    apply_values: Callable[[dict[str, Any]], None]
    """Put request fields into the form."""
    known_models: Callable[[], list[str]]
    """The model references the picker offers."""
    running: Callable[[], bool]
    """True while a run goes (the viewer then belongs to it)."""
    model_family: Callable[[], str | None] = lambda: None
    """The chosen model's family ("flux", "sdxl", ...; None when unknown), to warn when a picture
    was made with another kind of model."""


@dataclass(frozen=True)
class UpscaleJob:
    index: int
    source: Source
    values: dict[str, Any]


@dataclass(frozen=True)
class PictureRead:
    """One picture as read off the GUI thread: its entry, its pixels for the viewer, and the form
    fields its metadata gives."""

    source: Source
    tiled: TiledImage
    values: dict[str, Any]
    thumbnail: QImage | None = None


def thumbnail_of(image: Any, side: int = THUMBNAIL_SIDE) -> QImage:
    """A small RGB QImage of a decoded PIL picture (made in the pool; QImage is thread-safe)."""
    small = image.convert("RGB")
    small.thumbnail((side, side))
    data = small.tobytes()
    # QImage does not own a buffer it is given: copy() makes it hold its own pixels.
    return QImage(
        data, small.width, small.height, small.width * 3, QImage.Format.Format_RGB888
    ).copy()


def expand_folders(paths: Sequence[str | Path]) -> list[str]:
    """`paths` with each folder replaced by the pictures in it, sorted by name (as `batch` finds
    them); files stay as they are, to be read and explained if they are no picture."""
    from demofusion_app.batch import discover_inputs

    out: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            out += [str(p) for p in discover_inputs([path])]
        else:
            out.append(str(path))
    return out


def read_picture(
    path: str | Path, known_models: Sequence[str], settings: SettingsStore | None
) -> PictureRead:
    """Open, check, decode and read the metadata of one picture (slow: runs in the pool).
    Raises ImageError saying why the picture cannot be used."""
    source, image = read_source(path)
    try:
        values = form_values(source.found, known_models, settings)
        tiled = TiledImage.from_source(image)
        thumbnail = thumbnail_of(image)
    finally:
        image.close()
    return PictureRead(source, tiled, values, thumbnail)


@dataclass
class _Drop:
    """The pictures of one drop (or paste, or Open), read in parallel, told in drop order."""

    entries: list[Source]
    outcomes: dict[int, PictureRead | str] = field(default_factory=dict)
    filled: bool = False

    @property
    def complete(self) -> bool:
        return len(self.outcomes) == len(self.entries)


class UpscaleFlow(QObject):
    """The queue behind the upscale panel. `queue_changed` fires whenever a picture comes, goes or
    changes state."""

    queue_changed = Signal()
    resumed = Signal()  # the queue was resumed with pictures waiting and nothing running: go on

    def __init__(self, panel: UpscalePanel, host: FlowHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.panel = panel
        self.queue = SourceQueue()
        self._continue = False
        self._form_path: Path | None = None
        # The offered fields as the form was filled from its picture (`_applied`), and what each
        # goes back to when its value is unticked or another picture runs (`_base`): the form's
        # own value from before, empty for the fields of `PICTURE_FIELDS`.
        self._applied: dict[str, Any] = {}
        self._base: dict[str, Any] = {}
        self._tiles: dict[Path, TiledImage] = {}  # decoded pictures of the queue, by file
        # The viewer's "GAN" baseline beside "Original", made once per picture off the GUI thread.
        self.gan = GanBaselines(
            host.viewer, host.background, lambda: host.settings.get("upsampler")
        )
        # The enlarger is a setting (the job reads it too); the panel shows and changes it.
        panel.upsampler.set_path(host.settings.get("upsampler"))
        panel.upsampler.changed.connect(self._upsampler_changed)
        self._thumbs: dict[Path, QImage] = {}  # each queued picture's thumbnail, by file
        panel.remove_requested.connect(self.remove)
        panel.clear_requested.connect(self.clear)
        panel.queue.currentRowChanged.connect(self._selected)
        panel.choice_toggled.connect(self.choose)
        panel.paths_added.connect(self.add_paths)
        panel.move_requested.connect(self.move)
        panel.pause_toggled.connect(self.set_paused)

    # Adding pictures --------------------------------------------------------------------------------
    def open(self, paths: list[str], pasted: QImage | None = None) -> int:
        """Queue `paths` at once as "reading…" and read them in the pool; returns how many were
        taken. The first usable one fills the form from its metadata and is shown; the others that
        cannot be used leave the queue, and the banner says why. `pasted` is picture data to
        write to the one path first (in the pool too)."""
        if not paths:
            return 0
        drop = _Drop([reading(path) for path in paths])
        first_row = len(self.queue)
        self.queue.add(drop.entries)
        known, settings = self.host.known_models(), self.host.settings

        def work(path: Path) -> PictureRead:
            if pasted is not None:
                save_picture(pasted, path)
            return read_picture(path, known, settings)

        for position, entry in enumerate(drop.entries):
            self.host.background.submit(
                lambda p=entry.path: work(p),
                lambda read, d=drop, i=position: self._arrived(d, i, read),
                lambda exc, d=drop, i=position: self._arrived(d, i, _reason(exc, d.entries[i])),
            )
        self._refresh()
        self.panel.queue.setCurrentRow(first_row)
        return len(paths)

    def add_paths(self, paths: list[str]) -> int:
        """Queue pictures and folders of pictures (Add files, Add folder), also while a run goes."""
        found = expand_folders(paths)
        if paths and not found:
            self.host.banner.show_message(
                "There is no picture in that folder; add PNG, JPEG or WebP files.", kind="info"
            )
        return self.open(found)

    def open_mime(self, mime: QMimeData) -> int:
        """A drop or paste: its files, or its picture data saved under the store's cache folder
        (written in the pool, like the reading)."""
        paths = local_files(mime)
        if paths:
            return self.open(paths)
        image = picture_data(mime)
        if image is None:
            self.host.banner.show_message(
                "There is no picture in what was dropped or pasted; use a PNG, JPEG or WebP file."
            )
            return 0
        path = pasted_path(self.host.settings.paths.cache_dir / "pasted")
        return self.open([str(path)], pasted=image)

    @property
    def reading(self) -> int:
        """How many pictures are still being read."""
        return self.queue.reading

    def _arrived(self, drop: _Drop, position: int, outcome: PictureRead | str) -> None:
        """One picture of `drop` is read (or cannot be used): it takes its place in the queue."""
        drop.outcomes[position] = outcome
        index = self.queue.index_of(drop.entries[position])
        if index is not None:  # else it was taken out of the queue while it was read
            if isinstance(outcome, PictureRead):
                self.queue.replace(index, outcome.source)
                self._tiles[outcome.source.path] = outcome.tiled
                if outcome.thumbnail is not None:
                    self._thumbs[outcome.source.path] = outcome.thumbnail
            else:
                self.queue.remove(index)
        self._fill_from_first(drop)
        if drop.complete:
            self._tell(drop)
        self._refresh()

    def _fill_from_first(self, drop: _Drop) -> None:
        """Once every picture before it is known, the first usable one of the drop fills the form
        and is shown."""
        if drop.filled:
            return
        for position in range(len(drop.entries)):
            outcome = drop.outcomes.get(position)
            if outcome is None:
                return  # an earlier picture is still being read
            if isinstance(outcome, PictureRead) and self.queue.index_of(outcome.source) is not None:
                drop.filled = True
                self._fill(outcome)
                return

    def _fill(self, read: PictureRead) -> None:
        # Cleared first: a picture without metadata must not run with the last prompt and seed.
        blank: dict[str, Any] = dict.fromkeys(PICTURE_FIELDS, "")
        before = self.host.collect_values()
        self._base = {**{key: before.get(key) for key in OFFERED_FIELDS}, **blank}
        # The model is not a choice: the form takes it when we have it. The offered fields come
        # from the ticked values only.
        model = {k: v for k, v in read.values.items() if k not in OFFERED_FIELDS}
        ticked = picture_values(read.source.found, read.source.use)
        self.host.apply_values({**blank, **model, **ticked})
        self._form_path = read.source.path
        form = self.host.collect_values()
        self._applied = {key: form.get(key) for key in OFFERED_FIELDS}
        if not self.host.running():
            self.host.viewer.set_images([(ORIGINAL, read.tiled)])
            self.gan.show(read.source.path)
        index = self.queue.index_of(read.source)
        if index is not None:
            self.panel.queue.setCurrentRow(index)
        self._show_selected()

    def _tell(self, drop: _Drop) -> None:
        """The whole drop is read: say why some pictures cannot be used, and what the metadata
        readers left out (an out-of-range seed, an over-long prompt), so the artist sees why the
        seed or prompt box is empty."""
        outcomes = [drop.outcomes[i] for i in range(len(drop.entries))]
        problems = [o for o in outcomes if isinstance(o, str)]
        notes = [n for o in outcomes if isinstance(o, PictureRead) for n in o.source.found.warnings]
        if problems or notes:
            kind = "error" if problems else "info"
            self.host.banner.show_message("\n".join(problems + notes), kind=kind)

    # Running ------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while pictures wait in the queue (Generate then upscales)."""
        return self.queue.next_pending() is not None

    def next_job(self, form: dict[str, Any]) -> UpscaleJob | None:
        """The request fields for the next waiting picture (None when none waits). RequestError
        while the next picture in line is still being read."""
        index = self.queue.next_pending()
        first_reading = next(
            (i for i, s in enumerate(self.queue.items) if s.state is State.READING), None
        )
        if first_reading is not None and (index is None or first_reading < index):
            raise RequestError("queue", STILL_READING)
        if index is None:
            return None
        source = self.queue.items[index]
        return UpscaleJob(index, source, self.job_values(source, form))

    def job_values(self, source: Source, form: dict[str, Any]) -> dict[str, Any]:
        """The request fields `source` runs with, given the form's: the form as it is for the
        picture the form was filled from, else with that picture's own values (`_own_fields`)."""
        values = {**form, **self.panel.values(), "init_image": str(source.path)}
        if source.path != self._form_path:
            values.update(self._own_fields(source, form))
        return values

    def _own_fields(self, source: Source, form: dict[str, Any]) -> dict[str, Any]:
        """The offered fields for a picture the form was not filled from: its own ticked values;
        else what the artist set after the drop; else the form's value from before the drop
        (empty for prompt, negative prompt and seed: a new seed), never the form picture's."""
        own = picture_values(source.found, source.use)
        fields: dict[str, Any] = {}
        for key in OFFERED_FIELDS:
            if key in own:
                fields[key] = own[key]
                continue
            typed = form.get(key) != self._applied.get(key)
            fields[key] = form.get(key, "") if typed or key not in self._base else self._base[key]
        return fields

    # Choosing the picture's values ----------------------------------------------------------------
    def choose(self, choice: str, ticked: bool) -> None:
        """The artist ticked or unticked `choice` for the selected picture. For the picture the
        form holds the form follows at once; for another one its run will."""
        row = self.panel.queue.currentRow()
        if not 0 <= row < len(self.queue) or self.queue.items[row].state is not State.PENDING:
            return
        source = self.queue.items[row]
        if ticked:
            source.use.add(choice)
        else:
            source.use.discard(choice)
        if source.path == self._form_path:
            self._apply_choice(source, choice, ticked)
        self.panel.changed.emit()  # the plan of the next picture may change (its steps)

    def _apply_choice(self, source: Source, choice: str, ticked: bool) -> None:
        keys = CHOICE_FIELDS[choice]
        form = self.host.collect_values()
        if ticked:
            values = picture_values(source.found, {choice})
            # What the form held is what unticking gives back.
            self._base.update({key: form.get(key) for key in keys if key in values})
        else:
            # Back to the value from before, unless the artist has changed it since.
            values = {
                k: self._base[k]
                for k in keys
                if k in self._base and form.get(k) == self._applied.get(k)
            }
        if values:
            self.host.apply_values(values)
        form = self.host.collect_values()
        self._applied.update({key: form.get(key) for key in keys})

    def preview_source(self) -> Source | None:
        """The picture the plan is shown for: the next waiting one."""
        index = self.queue.next_pending()
        return None if index is None else self.queue.items[index]

    def started(self, job: UpscaleJob) -> None:
        """The run of `job` began: the viewer shows its picture, decoded when it was dropped."""
        self.queue.start(job.index)
        tiled = self._tiles.get(job.source.path)
        if tiled is not None:  # always, for a picture that was read; no second decode
            self.host.viewer.set_images([(ORIGINAL, tiled)])
            self.gan.show(job.source.path)
        self._continue = False
        self._refresh()

    def ended(self, state: State, result: str | None = None) -> None:
        """The running upscale ended; a finished or failed one lets the queue go on to the next
        picture (one bad picture does not stop a batch; a cancel does)."""
        if self.queue.running is None:
            return
        self.queue.end(state, result)
        self._continue = state in (State.DONE, State.FAILED) and self.active
        self._refresh()

    def take_continue(self) -> bool:
        """True once after a run finished with more pictures waiting (never while paused)."""
        if self.queue.paused:
            return False
        go, self._continue = self._continue, False
        return go

    @property
    def paused(self) -> bool:
        return self.queue.paused

    def set_paused(self, paused: bool) -> None:
        """Pause: the picture upscaling now finishes, the next waits. Resume: the queue goes on
        (`resumed` fires when nothing runs and pictures wait)."""
        self.queue.paused = paused
        self.panel.set_paused(paused)
        if not paused and self._continue and self.active and not self.host.running():
            self._continue = False
            self.resumed.emit()
        self._refresh()

    # Editing the queue --------------------------------------------------------------------------------
    def remove(self, index: int) -> None:
        if self.queue.remove(index):
            self._refresh()

    def move(self, index: int, to: int) -> None:
        """Reorder: the picture at `index` goes to `to` and stays selected."""
        if self.queue.move(index, to):
            self._refresh()
            self.panel.queue.setCurrentRow(to)

    def clear(self) -> None:
        self.queue.clear()
        self._refresh()

    def _upsampler_changed(self) -> None:
        self.host.settings.set("upsampler", self.panel.upsampler.path())
        self.host.viewer.remove_baseline(GAN)
        if self.gan.showing is not None:
            self.gan.show(self.gan.showing)

    def _selected(self, row: int) -> None:
        if 0 <= row < len(self.queue):
            self._show_selected()
            self.panel.update_remove(self.queue.items)

    def _show_selected(self) -> None:
        """The selected picture's origin line and its values to tick."""
        row = self.panel.queue.currentRow()
        if not 0 <= row < len(self.queue):
            return
        source = self.queue.items[row]
        if source.state is State.READING:
            self.panel.set_note(READING_NOTE)
            return
        found = source.found
        editable = source.state is State.PENDING
        self.panel.show_picture(origin_line(found), offers(found), source.use, editable)
        self.panel.set_warning(family_warning(found, self.host.model_family()) or "")

    def model_changed(self) -> None:
        """Another model was chosen: the selected picture's notes follow (its family warning)."""
        self._show_selected()

    def _refresh(self) -> None:
        # Decoded pictures are kept only while they may still run (a finished one is in the
        # viewer as long as it is shown, and no longer here).
        keep = {s.path for s in self.queue.items if s.state in (State.PENDING, State.RUNNING)}
        self._tiles = {path: tiled for path, tiled in self._tiles.items() if path in keep}
        queued = {s.path for s in self.queue.items}
        self._thumbs = {path: thumb for path, thumb in self._thumbs.items() if path in queued}
        self.panel.show_sources(self.queue.items, self._thumbs)
        self._show_selected()
        self.queue_changed.emit()


def _reason(exc: BaseException, entry: Source) -> str:
    """The banner's line for a picture that could not be read."""
    if isinstance(exc, ImageError):
        return str(exc)
    return f"Cannot read {entry.path.name}: {exc}; try saving it again as a PNG or JPEG."
