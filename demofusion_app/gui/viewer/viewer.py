"""The zoomable tile viewer, and the comparison of two images of a run.

Modes: wipe, side by side, hold to toggle, single.

`ComparisonViewer` is the widget the window places (objectName ``viewer``). It holds the named
images of a run, shows "before" (by default stage 1) at the geometry of the largest image so both
overlap pixel for pixel, and compares it with "after" (by default the final). `ImageView` is one
QGraphicsView of it; the arithmetic lives in `compare.py`, the tiling in `tiles.py`, the export in
`viewer_export.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from demofusion_app.gui.run.background import Background
from demofusion_app.gui.viewer.compare import (
    FIXED_ZOOMS,
    MODE_TITLES,
    MODES,
    ViewerError,
    ViewState,
    check_mode,
    comparison_geometry,
    default_pair,
    zoom_label,
)
from demofusion_app.gui.viewer.image_view import EMPTY_TEXT, ImageView
from demofusion_app.gui.viewer.tiles import ImageLayer, ImageSource, TiledImage
from demofusion_app.gui.viewer.viewer_export import (
    ExportError,
    compose,
    export_path,
    layout,
    save_png,
    wipe_split,
)

EXPORT_TEXT = "Export…"
EXPORTING_TEXT = "Exporting…"


class ComparisonViewer(QWidget):
    """The viewer of a run: a toolbar and one or two `ImageView`s comparing two named images.

    Modes: "single" shows the "after" image; "wipe" splits before|after at a draggable divider;
    "side_by_side" shows both in two views locked to the same region; "toggle" shows "after" and,
    while the right mouse button, the space key or the Hold button is held, "before". Every image is
    shown at the geometry of the largest one, so a stage 1 image overlaps the final exactly.
    `zoomChanged(zoom)` reports the zoom in screen pixels per pixel of that geometry;
    `exportDone(text)` says, in a sentence, where an export from the Export button was saved.
    """

    zoomChanged = Signal(float)
    exportDone = Signal(str)

    def __init__(
        self,
        parent: QWidget | None = None,
        export_folder: Callable[[], Path | str | None] | None = None,
        background: Background | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("viewer")
        # Asked each time: the output folder is a setting that may change while the window is open.
        self._export_folder = export_folder
        # A full-size export takes seconds (16384 px): it is put together and written in the pool.
        self._background = background if background is not None else Background(self)
        self._exporting = False
        self._images: dict[str, TiledImage] = {}
        # Baselines (the GAN's enlargement) are listed to compare with but never picked by default.
        self._baselines: set[str] = set()
        self._before: str | None = None
        self._after: str | None = None
        self._auto_pair = True
        self._mode = "wipe"
        self._held = False
        self._syncing = False
        self._last_zoom = 0.0
        self.geometry_size: tuple[int, int] = (0, 0)

        self.empty_hint = EMPTY_TEXT  # what the empty area says; the window sets it per mode
        self.primary = ImageView(self)
        self.primary.setObjectName("viewerPrimary")
        self.secondary = ImageView(self)
        self.secondary.setObjectName("viewerSecondary")
        self.secondary.hide()
        for view in (self.primary, self.secondary):
            view.stateChanged.connect(
                self._on_primary_state if view is self.primary else self._on_secondary_state
            )
            view.holdChanged.connect(self._set_held)
        self.setFocusProxy(self.primary)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self._build_toolbar(), 1)
        # Beside the toolbar, not in it: what does not fit folds behind the toolbar's "»" button,
        # and Export must stay in sight on a small screen.
        top.addWidget(self._build_export_button())
        layout.addLayout(top)
        views = QHBoxLayout()
        views.setContentsMargins(0, 0, 0, 0)
        views.setSpacing(2)
        views.addWidget(self.primary, 1)
        views.addWidget(self.secondary, 1)
        layout.addLayout(views, 1)
        self._apply_mode()
        self._update_zoom_label()

    # ----- toolbar --------------------------------------------------------------------------------

    def _tool_button(self, text: str, name: str, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setObjectName(name)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        return button

    def _build_toolbar(self) -> QToolBar:
        # A QToolBar folds what does not fit behind its extension button; the viewer stays narrow.
        bar = QToolBar(self)
        bar.setObjectName("viewerToolbar")
        bar.setMovable(False)
        bar.setFloatable(False)
        self.mode_buttons: dict[str, QToolButton] = {}
        self._mode_group = QButtonGroup(self)
        self._mode_group.setExclusive(True)
        tips = {
            "single": "Show one image",
            "wipe": "Split the two images at a divider you can drag",
            "side_by_side": "Two views locked to the same region and zoom",
            "toggle": "Show the after image; hold the right mouse button or Space to see before",
        }
        for mode in MODES:
            button = self._tool_button(MODE_TITLES[mode], f"viewerMode_{mode}", tips[mode])
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, m=mode: self.set_mode(m))
            self._mode_group.addButton(button)
            self.mode_buttons[mode] = button
            bar.addWidget(button)
        bar.addSeparator()
        fit = self._tool_button("Fit", "viewerFit", "Fit the whole image (F or 0)")
        fit.clicked.connect(self.primary.fit)
        bar.addWidget(fit)
        self.zoom_buttons = {"fit": fit}
        for zoom in FIXED_ZOOMS:
            key = int(zoom)
            button = self._tool_button(
                f"{key * 100}%", f"viewerZoom{key * 100}", f"Zoom to {key * 100}% ({key})"
            )
            button.clicked.connect(lambda _=False, z=zoom: self.primary.set_zoom(z))
            self.zoom_buttons[str(key * 100)] = button
            bar.addWidget(button)
        self.zoom_label = QLabel(self)
        self.zoom_label.setObjectName("viewerZoomLabel")
        self.zoom_label.setMinimumWidth(70)
        self.zoom_label.setToolTip("Zoom: screen pixels per pixel of the largest image")
        bar.addWidget(self.zoom_label)
        bar.addSeparator()
        bar.addWidget(QLabel(" Before ", self))
        self.before_combo = QComboBox(self)
        self.before_combo.setObjectName("viewerBefore")
        self.before_combo.setToolTip("The image to compare against (by default stage 1)")
        self.before_combo.activated.connect(self._on_combo)
        bar.addWidget(self.before_combo)
        bar.addWidget(QLabel(" After ", self))
        self.after_combo = QComboBox(self)
        self.after_combo.setObjectName("viewerAfter")
        self.after_combo.setToolTip("The image to look at (by default the final)")
        self.after_combo.activated.connect(self._on_combo)
        bar.addWidget(self.after_combo)
        self.hold_button = QPushButton("Hold", self)
        self.hold_button.setToolTip(
            "Hold to see the before image (or hold Space, or the right button)"
        )
        self.hold_button.setObjectName("viewerHold")
        self.hold_button.pressed.connect(lambda: self._set_held(True))
        self.hold_button.released.connect(lambda: self._set_held(False))
        self._hold_action = bar.addWidget(self.hold_button)
        return bar

    def _build_export_button(self) -> QPushButton:
        self.export_button = QPushButton(EXPORT_TEXT, self)
        self.export_button.setObjectName("viewerExport")
        self.export_button.setToolTip(
            "Save the two pictures at full size as a PNG: side by side, or the wipe at its divider"
        )
        self.export_button.clicked.connect(self._on_export_clicked)
        self.export_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        return self.export_button

    # ----- public API -----------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """The mode chosen: "single", "wipe", "side_by_side" or "toggle"."""
        return self._mode

    @property
    def names(self) -> list[str]:
        """The names of the images held, in the order they came."""
        return list(self._images)

    def current_name(self) -> str | None:
        """The name of the image looked at ("after"), or None when there is none."""
        return self._after

    @property
    def pair(self) -> tuple[str | None, str | None]:
        """The (before, after) names compared now."""
        return self._before, self._after

    def set_images(self, images: list[tuple[str, ImageSource]]) -> None:
        """Replace all images with the named images of a run; compare the first against the last."""
        tiled = [(name, TiledImage.from_source(source)) for name, source in images]
        self._images = dict(tiled)
        self._baselines = set()
        self._auto_pair = True
        self._refresh(keep_state=False)

    def add_image(self, name: str, image: ImageSource) -> None:
        """Add (or replace) one named image as a run finishes a stage; the comparison follows."""
        tiled = TiledImage.from_source(image)
        self._images[name] = tiled
        self._refresh(keep_state=True)

    def add_baseline(self, name: str, image: ImageSource) -> None:
        """Add (or replace) an image to compare with, such as the GAN's; the default pair (first
        against last) leaves it out."""
        self._baselines.add(name)
        self.add_image(name, image)

    def remove_baseline(self, name: str) -> None:
        """Take a baseline away (its source changed); the comparison falls back to the run's pair."""
        if name in self._baselines and name in self._images:
            del self._images[name]
            self._baselines.discard(name)
            self._refresh(keep_state=True)

    def show_single(self, name: str) -> None:
        """Show the image `name` alone."""
        if name not in self._images:
            known = ", ".join(self._images) or "none yet"
            raise ViewerError(f"No image named {name!r} in the viewer; the images are: {known}.")
        self._after = name
        self._auto_pair = name == self.names[-1] and self._before == self.names[0]
        self._refresh(keep_state=True)
        self.set_mode("single")

    def set_mode(self, mode: str) -> None:
        """Switch the comparison mode, keeping the region in view."""
        check_mode(mode)
        state = self.primary.state()
        self._mode = mode
        self._held = False
        self._apply_mode()
        self.primary.apply_state(state)

    def set_pair(self, before: str, after: str) -> None:
        """Compare the image `before` against the image `after` (names as given to the viewer)."""
        for name in (before, after):
            if name not in self._images:
                known = ", ".join(self._images) or "none yet"
                raise ViewerError(
                    f"No image named {name!r} in the viewer; the images are: {known}."
                )
        self._before, self._after = before, after
        self._auto_pair = False
        self._refresh(keep_state=True)

    def clear(self) -> None:
        """Forget every image."""
        self._images = {}
        self._baselines = set()
        self._auto_pair = True
        self._refresh(keep_state=False)

    def export_folder(self) -> Path | None:
        """The folder the export dialog opens in (the output folder), or None when unknown."""
        folder = self._export_folder() if self._export_folder is not None else None
        return Path(folder).expanduser() if folder else None

    def export_comparison(self, path: str | Path) -> Path:
        """Write the comparison at full resolution as a PNG; return the file written.

        Wipe mode splits the pictures at the divider's column; side by side and toggle put them
        next to each other; single mode writes the one picture. Every picture is at the geometry
        of the largest (a smaller one is resized up). `ExportError` when a side would be over
        16384 pixels or the file cannot be written.
        """
        return self.export_work(path)()

    def export_work(self, path: str | Path) -> Callable[[], Path]:
        """What `export_comparison` does, in two parts: the checks and the choice of pictures now
        (in the GUI thread; `ExportError` or `ViewerError` for a refusal), and the slow part,
        putting the pixels together and writing them, as the function returned, which may run in
        any thread."""
        if not self._images or self._after is None:
            raise ViewerError("There is nothing to export yet; wait for a stage to finish.")
        target = export_path(path)  # a wrong folder is told before any work
        mode = self._effective_mode()
        mode = "side_by_side" if mode == "toggle" else mode
        before = None if self._before is None else self._images[self._before]
        geometry = self.geometry_size
        split = wipe_split(self.primary.divider_scene_x(), geometry[0])
        size, places = layout(mode, geometry, before, self._images[self._after], split)
        return lambda: save_png(compose(size, places, geometry), target)

    @property
    def exporting(self) -> bool:
        """True while an export started with the Export button is being written."""
        return self._exporting

    # ----- internals ------------------------------------------------------------------------------

    def _effective_mode(self) -> str:
        if self._before is None or self._after is None or self._before == self._after:
            return "single"
        return self._mode

    def _refresh(self, keep_state: bool) -> None:
        names = self.names
        if self._auto_pair or self._before not in self._images or self._after not in self._images:
            pair = default_pair([name for name in names if name not in self._baselines])
            self._before, self._after = pair if pair else (None, None)
        for combo, current in ((self.before_combo, self._before), (self.after_combo, self._after)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current is not None:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        old_geometry = self.geometry_size
        state = self.primary.state()
        geometry = comparison_geometry([(t.width, t.height) for t in self._images.values()])
        if keep_state and old_geometry != (0, 0):
            state = state.rescaled(old_geometry, geometry)
        else:
            state = ViewState(0, 0, 1.0, fit=True)
        self.geometry_size = geometry
        for view in (self.primary, self.secondary):
            view.set_geometry(geometry)
        self._build_layers()
        self._apply_mode()
        self.primary.apply_state(state)

    def _build_layers(self) -> None:
        for view in (self.primary, self.secondary):
            scene = view.scene()
            for item in scene.items():
                if isinstance(item, ImageLayer):
                    scene.removeItem(item)
        if self._after is None:
            return
        geometry = self.geometry_size
        for view, role, name, z in (
            (self.primary, "after", self._after, 0),
            (self.primary, "before", self._before, 1),
            (self.secondary, "after", self._after, 0),
        ):
            if name is None:
                continue
            layer = ImageLayer(self._images[name], geometry)
            layer.setData(0, role)
            layer.setZValue(z)
            view.scene().addItem(layer)

    def _layer(self, view: ImageView, role: str) -> ImageLayer | None:
        for item in view.scene().items():
            if isinstance(item, ImageLayer) and item.data(0) == role:
                return item
        return None

    def _apply_mode(self) -> None:
        mode = self._effective_mode()
        for name, button in self.mode_buttons.items():
            button.setChecked(name == self._mode)
        before = self._layer(self.primary, "before")
        after = self._layer(self.primary, "after")
        if before is not None:
            before.setVisible(mode in ("wipe", "side_by_side") or (mode == "toggle" and self._held))
        if after is not None:
            after.setVisible(mode != "side_by_side")
        self.primary.set_wipe(mode == "wipe")
        self.secondary.setVisible(mode == "side_by_side")
        self._hold_action.setVisible(self._mode == "toggle")
        self.primary.empty_text = "" if self._images else self.empty_hint
        for widget in (self.before_combo, self.after_combo):
            widget.setEnabled(bool(self._images))
        self.export_button.setEnabled(bool(self._images) and not self._exporting)
        b, a = self._before or "", self._after or ""
        if mode == "wipe":
            self.primary.captions = (b, a)
        elif mode == "side_by_side":
            self.primary.captions = (b, "")
            self.secondary.captions = (a, "")
        elif mode == "toggle":
            self.primary.captions = (b, "") if self._held else (a, f"hold: {b}")
        else:
            self.primary.captions = (a, "")
        if mode == "side_by_side":
            self._sync(self.primary, self.secondary)
        self.primary.viewport().update()
        self.secondary.viewport().update()

    def _set_held(self, held: bool) -> None:
        if self._mode != "toggle" or held == self._held:
            return
        self._held = held
        self._apply_mode()

    @property
    def held(self) -> bool:
        """Whether the toggle is held down (showing "before")."""
        return self._held

    def _sync(self, source: ImageView, target: ImageView) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            target.apply_state(source.state())
        finally:
            self._syncing = False

    def _on_primary_state(self) -> None:
        if self.secondary.isVisible():
            self._sync(self.primary, self.secondary)
        self._update_zoom_label()

    def _on_secondary_state(self) -> None:
        if self.secondary.isVisible():
            self._sync(self.secondary, self.primary)

    def _update_zoom_label(self) -> None:
        zoom = self.primary.zoom()
        text = zoom_label(zoom) if self._images else "–"
        text = f"{'Fit' if self._images and self.primary.fit_mode else 'Zoom'} {text}"
        self.zoom_label.setText(text)
        if zoom != self._last_zoom:
            self._last_zoom = zoom
            self.zoomChanged.emit(zoom)

    def _on_combo(self, _index: int = 0) -> None:
        before, after = self.before_combo.currentText(), self.after_combo.currentText()
        if before and after:
            self.set_pair(before, after)

    def _on_export_clicked(self) -> None:
        if self._exporting:
            return
        suggested = f"{self._before or 'before'} vs {self._after or 'after'}.png"
        folder = self.export_folder()
        if folder is not None and folder.is_dir():
            suggested = str(folder / suggested)
        path, _ = QFileDialog.getSaveFileName(
            self, "Export comparison", suggested, "PNG image (*.png)"
        )
        if not path:
            return
        try:
            work = self.export_work(path)
        except (ExportError, ViewerError) as exc:
            self._export_failed(exc)
            return
        self._set_exporting(True)
        self._background.submit(work, self._export_written, self._export_failed)

    def _set_exporting(self, exporting: bool) -> None:
        self._exporting = exporting
        self.export_button.setText(EXPORTING_TEXT if exporting else EXPORT_TEXT)
        self.export_button.setEnabled(bool(self._images) and not exporting)

    def _export_written(self, path: Path) -> None:
        self._set_exporting(False)
        self.exportDone.emit(f"Comparison exported as {path.name} in {path.parent}.")

    def _export_failed(self, exc: BaseException) -> None:
        self._set_exporting(False)
        text = str(exc) if isinstance(exc, (ExportError, ViewerError)) else _export_error(exc)
        QMessageBox.warning(self, "Export comparison", text)


def _export_error(exc: BaseException) -> str:
    """A sentence for an export that failed unexpectedly (out of memory, a Pillow error)."""
    if isinstance(exc, MemoryError):
        return "The export needs more memory than is free; export the wipe or one picture instead."
    return f"The comparison could not be exported ({exc}); try another folder or mode."
