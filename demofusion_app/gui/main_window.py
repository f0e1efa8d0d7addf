"""The main window: layout and wiring of the panels, the run controller and the store."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from demofusion_app import APP_NAME
from demofusion_app.engine.request import Request, RequestError
from demofusion_app.jobs import JobError, choose_seed
from demofusion_app.store.preset_store import PresetStore
from demofusion_app.store.presets import Preset
from demofusion_app.store.settings import SettingsStore

from . import window_fit, window_state
from .desktop.notify import Notifier
from .desktop.platform_integration import open_folder
from .desktop.taskbar import TaskbarProgress
from .diagnostics import diagnostics_text, setup_logging
from .first_run import FirstRunDialog, needs_first_run, remember
from .panels.banner import Banner
from .panels.demofusion_panel import DemoFusionPanel
from .panels.fields import FieldRegistry, name_control
from .panels.hardware_panel import HardwarePanel
from .panels.history_panel import HistoryPanel
from .panels.model_list import geometry_of
from .panels.model_picker import ModelPicker
from .panels.params_panel import ParamsPanel, plan_text
from .panels.preset_bar import PresetBar
from .panels.progress_panel import ProgressPanel
from .panels.prompt_panel import PromptPanel
from .panels.upscale_panel import UpscalePanel
from .run import run_setup
from .run.background import Background
from .run.drops import has_picture
from .run.messages import RunEvent, RunFailure, RunMessage, window_message
from .run.upscale_flow import FlowHost, UpscaleFlow
from .run.upscale_sources import Source, State
from .run.worker import JobFunction, RunController
from .viewer.viewer_slot import make_viewer
from .window_fit import FormScroll

log = logging.getLogger(__name__)

CLOSE_WAIT_MS = 3000
GENERATE_STYLE = (
    "QPushButton { background: #2d7be5; color: white; font-weight: bold; border-radius: 4px; }"
    "QPushButton:disabled { background: #a9c4ea; }"
)
FINAL = "Final"


class MainWindow(QMainWindow):
    """DemoFusion Studio's window. `job` replaces the real job (tests pass a scripted one)."""

    def __init__(
        self,
        settings: SettingsStore,
        presets: PresetStore,
        job: JobFunction | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(APP_NAME)
        self.setObjectName("main_window")
        self.setAcceptDrops(True)
        self.settings = settings
        self.presets = presets
        self.log_file = setup_logging(settings.paths.log_dir)
        self.controller = RunController(job, parent=self)
        self.background = Background(self)
        self.notifier = Notifier(self)
        self.fields = FieldRegistry()
        self.last_error: str | None = None
        self.last_image: QImage | None = None
        self.last_path: str | None = None
        self.last_request: Request | None = None
        self._stage_paths: dict[str, str] = {}
        self._stage_tiles: dict[str, Any] = {}  # name -> TiledImage, as the viewer got them
        self._geometry = geometry_of("")
        self._close_pending = False
        self._build()
        self._wire()
        self._restore()
        for warning in [*settings.take_warnings(), *presets.take_warnings()]:
            self.banner.show_message(warning, kind="info")

    # Layout --------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.model_picker = ModelPicker(self.fields)
        self.preset_bar = PresetBar(self.presets, self.stored_values)
        self.prompt_panel = PromptPanel(self.fields)
        self.params = ParamsPanel(self.fields)
        self.demofusion = DemoFusionPanel(self.fields)
        self.hardware = HardwarePanel(self.fields)
        self.upscale = UpscalePanel(self.fields)

        form = QWidget()
        column = QVBoxLayout(form)
        for title, widget in (("Model", self.model_picker), ("Preset", self.preset_bar)):
            column.addWidget(_heading(title))
            column.addWidget(widget)
        column.addWidget(self.upscale)
        column.addWidget(self.prompt_panel)
        column.addWidget(self.params)
        column.addWidget(_line())
        column.addWidget(self.demofusion)
        column.addWidget(_line())
        column.addWidget(self.hardware)
        column.addStretch(1)
        scroll = self.form_scroll = FormScroll(form)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.demofusion.toggle.toggled.connect(scroll.form_changed)

        self.generate_button = name_control(
            QPushButton("Generate"), "generate", "Make the picture (Ctrl+Enter)"
        )
        self.generate_button.setDefault(True)
        self.generate_button.setMinimumHeight(36)
        self.generate_button.setStyleSheet(GENERATE_STYLE)
        self.cancel_button = name_control(
            QPushButton("Cancel"), "cancel", "Stop the run; finished stages stay on disk (Esc)"
        )
        self.cancel_button.setEnabled(False)
        self.cancel_button.setMinimumHeight(36)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(scroll, 1)
        left_layout.addLayout(buttons)

        self.banner = Banner()
        self.viewer = make_viewer(export_folder=self.output_folder, background=self.background)
        self.upscale_flow = UpscaleFlow(self.upscale, self._flow_host(), parent=self)
        self.progress = ProgressPanel()
        self.taskbar = TaskbarProgress(self)
        self.open_folder_button = name_control(
            QPushButton("Open output folder"),
            "open_folder",
            "Show the folder the pictures are saved in",
        )
        self.copy_button = name_control(
            QPushButton("Copy image"), "copy_image", "Copy the last picture to the clipboard"
        )
        self.copy_button.setEnabled(False)
        actions = QHBoxLayout()
        actions.addStretch(1)
        actions.addWidget(self.copy_button)
        actions.addWidget(self.open_folder_button)
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.addWidget(self.banner)
        centre_layout.addWidget(self.viewer, 1)
        centre_layout.addWidget(self.progress)
        centre_layout.addLayout(actions)

        self.history = HistoryPanel(background=self.background)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(self.history)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(0, False)  # a collapsed form would come back collapsed
        self.splitter.setSizes([400, 900, 240])
        self.setCentralWidget(self.splitter)
        self._menus()
        window_fit.place_first(self)

    def _flow_host(self) -> FlowHost:
        combo = self.model_picker.combo
        return FlowHost(
            banner=self.banner,
            viewer=self.viewer,
            background=self.background,
            settings=self.settings,
            collect_values=self.collect_values,
            apply_values=self.apply_values,
            known_models=lambda: [
                str(combo.itemData(i)) for i in range(combo.count()) if combo.itemData(i)
            ],
            running=lambda: self.controller.running,
        )

    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.generate_action = _action(self, "&Generate", "Ctrl+Return", self.generate)
        self.cancel_action = _action(self, "&Cancel run", "Esc", self.cancel)
        self.cancel_action.setEnabled(False)
        file_menu.addAction(_action(self, "&Open pictures to upscale…", "Ctrl+O", self.ask_open))
        file_menu.addAction(_action(self, "&Paste picture to upscale", "Ctrl+V", self.paste))
        file_menu.addSeparator()
        file_menu.addAction(self.generate_action)
        file_menu.addAction(self.cancel_action)
        file_menu.addSeparator()
        file_menu.addAction(_action(self, "&Open output folder", None, self.open_output_folder))
        file_menu.addAction(_action(self, "Copy &image", "Ctrl+Shift+C", self.copy_image))
        file_menu.addSeparator()
        file_menu.addAction(_action(self, "&Quit", QKeySequence.StandardKey.Quit, self.close))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(_action(self, "Copy &diagnostics", None, self.copy_diagnostics))
        help_menu.addAction(_action(self, "Open &log folder", None, self.open_log_folder))

    def _wire(self) -> None:
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_folder_button.clicked.connect(self.open_output_folder)
        self.copy_button.clicked.connect(self.copy_image)
        self.banner.copy_diagnostics.connect(self.copy_diagnostics)
        self.controller.message.connect(self.on_message)
        self.controller.errored.connect(self.on_errored)
        self.controller.running_changed.connect(self._running_changed)
        self.model_picker.changed.connect(self._model_changed)
        self.preset_bar.chosen.connect(self.apply_preset)
        self.preset_bar.failed.connect(lambda text: self.banner.show_message(text))
        self.params.changed.connect(self.refresh_plan)
        self.upscale.changed.connect(self.refresh_plan)
        self.upscale_flow.queue_changed.connect(self._queue_changed)
        self.demofusion.changed.connect(self.refresh_plan)
        self.progress.thumbnail_clicked.connect(self.show_stage)
        self.viewer.exportDone.connect(self.progress.status.setText)
        self.history.restore_requested.connect(self.restore_parameters)
        self.history.show_requested.connect(self.show_file)

    # Values --------------------------------------------------------------------------------------
    def collect_values(self) -> dict[str, Any]:
        """Every request field the form holds (seed as typed)."""
        values: dict[str, Any] = {"model": self.model_picker.model()}
        for panel in (self.prompt_panel, self.params, self.demofusion, self.hardware):
            values.update(panel.values())
        return values

    def stored_values(self) -> dict[str, Any]:
        """The form's fields as stored (last parameters, presets): the seed a number or None."""
        values = self.collect_values()
        try:
            values["seed"] = run_setup.parse_seed(values.get("seed"))
        except RequestError:
            values["seed"] = None
        return values

    def apply_values(self, values: dict[str, Any]) -> None:
        """Put stored request fields back in the form (unknown or ill-typed ones are skipped)."""
        for panel in (self.prompt_panel, self.params, self.demofusion, self.hardware):
            panel.apply(values)
        model = values.get("model")
        if isinstance(model, str) and model:
            self.model_picker.set_model(model)
        self.refresh_plan()

    @Slot(object)
    def apply_preset(self, preset: Preset | None) -> None:
        if preset is not None:
            self.apply_values(preset.resolve(self._geometry))

    @Slot(dict)
    def restore_parameters(self, values: dict[str, Any]) -> None:
        from demofusion_app.models.lookup import resolve_model

        message = "Settings restored from the picture."
        recorded = values.get("model")
        if isinstance(recorded, str) and recorded:
            # Pictures name their model (and its hash), not its path: find it among ours.
            combo = self.model_picker.combo
            known = [str(combo.itemData(i)) for i in range(combo.count()) if combo.itemData(i)]
            model = resolve_model(
                recorded, values.get("model_sha256"), known, settings=self.settings
            )
            values = {**values, "model": model or ""}
            if model is None:
                message = (
                    f"Settings restored from the picture; its model {recorded} is not in your "
                    "model folders (same name and hash), so the current model is kept."
                )
        self.apply_values(values)
        self.banner.show_message(message, kind="info")

    def _model_changed(self, model: str) -> None:
        self._geometry = geometry_of(model, self.model_picker.family(model))
        self.params.set_geometry(self._geometry)
        self.refresh_plan()

    def refresh_plan(self) -> None:
        """Validate as the form changes: the plan when it is valid, else the message under the
        field."""
        self.fields.clear()
        values, size = self.collect_values(), None
        source = self._plan_source()
        if source is not None:
            values = self.upscale_flow.job_values(source, values)  # its own ticked values
            size = source.size
        # An upscale by a factor takes its size from the picture: width and height do not apply.
        self.params.set_size_shown(source is None or self.upscale.values()["scale"] is None)
        try:
            _request, plan = run_setup.build_request(values, self._geometry, size)
        except RequestError as exc:
            self.params.set_plan_text("")
            self.fields.show(exc.field, str(exc), focus=False)
            return
        self.params.set_plan_text(plan_text(plan, size))

    def _plan_source(self) -> Source | None:
        """The picture the plan is for: the one being upscaled now, else the next waiting one."""
        if not hasattr(self, "upscale_flow"):
            return None
        queue = self.upscale_flow.queue
        if queue.running is not None:
            return queue.items[queue.running]
        return self.upscale_flow.preview_source()

    # Running -------------------------------------------------------------------------------------
    def show_error(self, error: RequestError) -> None:
        """Under the field it names, or in the banner when the field is not on screen."""
        if not self.fields.show(error.field, str(error)):
            self.banner.show_message(str(error))

    @Slot()
    def generate(self) -> bool:
        """Check the form and start a run; False (with the reason shown) when it cannot start."""
        if self.controller.running:
            return False
        self.fields.clear()
        self.banner.hide()
        try:
            job = self.upscale_flow.next_job(self.collect_values())
            values = job.values if job is not None else self.collect_values()
            size = job.source.size if job is not None else None
            request, plan = run_setup.build_request(values, self._geometry, size)
            run_setup.require_model(request)
        except RequestError as exc:
            self.show_error(exc)
            return False
        request = choose_seed(request)
        try:
            options = run_setup.job_options(self.settings, request, plan)
        except (run_setup.RunSetupError, JobError) as exc:
            self.banner.show_message(window_message(exc))
            return False
        self.last_request = request
        self.params.set_last_seed(int(request.seed or 0))
        self._remember_parameters()
        self.settings.add_recent_model(request.model)
        self._save_settings()
        self._stage_paths.clear()
        self._stage_tiles.clear()
        if job is not None:
            self.upscale_flow.started(job)
        else:
            self.viewer.clear()
        self.progress.start(plan.total_evaluations, plan.describe())
        log.info("run started: %s -> %s", plan.describe(), options.output)
        self.controller.start(request, options)
        return True

    @Slot()
    def cancel(self) -> None:
        if self.controller.running:
            self.controller.cancel()
            self.progress.status.setText("Stopping after the current step…")

    @Slot(bool)
    def _running_changed(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.generate_action.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.cancel_action.setEnabled(running)
        if not running:
            self.taskbar.clear()
        if not running and self._close_pending:
            self.close()
        elif not running and self.upscale_flow.take_continue():
            QTimer.singleShot(0, self.generate)

    def _queue_changed(self) -> None:
        # A picture still being read is on its way to the queue: Generate already upscales.
        waiting = sum(
            1 for s in self.upscale_flow.queue.items if s.state in (State.PENDING, State.READING)
        )
        if waiting > 1:
            self.generate_button.setText(f"Upscale {waiting} pictures")
        elif waiting == 1:
            self.generate_button.setText("Upscale")
        else:
            self.generate_button.setText("Generate")
        self.refresh_plan()

    @Slot(object)
    def on_message(self, message: RunMessage) -> None:
        e = message.payload
        kind = message.event
        if kind is RunEvent.STAGE_STARTED:
            self.progress.stage_started(e.stage, e.stages, e.width, e.height)
        elif kind is RunEvent.STEP:
            self.progress.step(
                e.stage, e.stages, e.step, e.steps, e.evaluations_done, e.evaluations_total
            )
            self.taskbar.set(e.evaluations_done / max(1, e.evaluations_total))
        elif kind is RunEvent.PREVIEW and message.image is not None:
            self.progress.show_preview(message.image)
        elif kind is RunEvent.STAGE_FINISHED:
            name = FINAL if e.stage == e.stages else f"Stage {e.stage}"
            self.progress.add_stage(name, message.thumbnail, e.path)
            if e.path:
                self._stage_paths[name] = e.path
            if message.tiled is not None:
                self._stage_tiles[name] = message.tiled
                self.viewer.add_image(name, message.tiled)
        elif kind is RunEvent.FINISHED:
            self._finished(message)
        elif kind is RunEvent.CANCELLED:
            kept = len(e.stage_paths)
            note = f"; {kept} finished stage image{'s' if kept != 1 else ''} kept" if kept else ""
            self.progress.stop(f"Cancelled{note}.")
            self.upscale_flow.ended(State.CANCELLED)
            log.info("run cancelled at stage %s step %s", e.stage, e.step)

    def _finished(self, message: RunMessage) -> None:
        e = message.payload
        self.last_image = message.image
        self.last_path = e.path
        self.copy_button.setEnabled(message.image is not None)
        if message.image is not None and FINAL not in self._stage_paths:
            self.viewer.add_image(FINAL, message.image)
        where = f" · saved as {Path(e.path).name}" if e.path else ""
        self.progress.finish(f"Done in {e.seconds:.1f} s (seed {e.seed}){where}")
        self.params.set_last_seed(e.seed)
        self.upscale_flow.ended(State.DONE, e.path)
        if e.path:
            self.history.add_result(e.path, message.thumbnail)
        log.info("run finished in %.1f s: %s", e.seconds, e.path)
        self.notifier.notify(APP_NAME, f"Your picture is ready{where}.")

    @Slot(object)
    def on_errored(self, failure: RunFailure) -> None:
        # The whole story (the library's own text is in the traceback's causes) goes to the log
        # and the diagnostics; the window shows the one sentence written for the artist.
        self.last_error = f"{failure.message}\n\n{failure.details}"
        log.error("run failed: %s\n%s", failure.message, failure.details)
        self.progress.stop("Stopped by an error.")
        self.upscale_flow.ended(State.FAILED)
        if failure.field and self.fields.show(failure.field, failure.message):
            return
        self.banner.show_message(failure.message, "" if failure.expected else failure.details)

    # Pictures ------------------------------------------------------------------------------------
    def stage_images(self) -> list[tuple[str, Any]]:
        """The pictures of the current run so far, as the viewer got them (name, TiledImage)."""
        return list(self._stage_tiles.items())

    @Slot(str)
    def show_stage(self, name: str) -> None:
        """Show a stage (or the final picture) large, alone."""
        if name in self.viewer.names:
            self.viewer.show_single(name)

    @Slot(str)
    def show_file(self, path: str) -> None:
        """Show a picture from the history; it is decoded off the GUI thread, then shown."""
        from .viewer.tiles import TiledImage

        def decode() -> tuple[Any, QImage]:
            return TiledImage.from_source(path), QImage(path)

        self.background.submit(
            decode,
            lambda decoded: self._file_decoded(path, *decoded),
            lambda exc: self.banner.show_message(str(exc)),
        )

    def _file_decoded(self, path: str, tiled: Any, image: QImage) -> None:
        self.viewer.add_image(Path(path).name, tiled)
        self.last_image = image
        self.last_path = path
        self.copy_button.setEnabled(not image.isNull())

    def output_folder(self) -> Path:
        return Path(self.settings.get("output_folder")).expanduser()

    @Slot()
    def open_output_folder(self) -> None:
        folder = self.output_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("output folder not created: %s", exc)
        self._open_folder(folder, "The output folder")

    @Slot()
    def open_log_folder(self) -> None:
        self._open_folder(self.log_file.parent, "The log folder")

    def _open_folder(self, folder: Path, what: str) -> None:
        """Show `folder` in the file manager, or its path (to copy) when no file manager opens."""
        if open_folder(folder):
            return
        self.banner.show_message(
            f"{what} is {folder} (no file manager opened it).",
            kind="info",
            action=("Copy path", lambda: self._copy_text(str(folder), "Path")),
        )

    def _copy_text(self, text: str, what: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.progress.status.setText(f"{what} copied to the clipboard.")

    @Slot()
    def copy_image(self) -> None:
        if self.last_image is not None and not self.last_image.isNull():
            QGuiApplication.clipboard().setImage(self.last_image)
            self.progress.status.setText("Picture copied to the clipboard.")

    @Slot()
    def copy_diagnostics(self) -> None:
        text = diagnostics_text(self.settings.as_dict(), self.last_error, self.log_file)
        QGuiApplication.clipboard().setText(text)
        self.progress.status.setText("Diagnostics copied to the clipboard.")

    def open_images(self, paths: list[str]) -> int:
        """Queue pictures for upscaling (command line, File > Open); returns how many were usable."""
        return self.upscale_flow.open([str(p) for p in paths])

    @Slot()
    def ask_open(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Open pictures to upscale",
            "",
            "Pictures (*.png *.jpg *.jpeg *.webp);;All files (*)",
        )
        if paths:
            self.open_images(paths)

    @Slot()
    def paste(self) -> int:
        """Queue the picture (or picture files) on the clipboard."""
        return self.upscale_flow.open_mime(QGuiApplication.clipboard().mimeData())

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if has_picture(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if has_picture(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        if has_picture(event.mimeData()):
            event.acceptProposedAction()
            self.upscale_flow.open_mime(event.mimeData())

    # First run -----------------------------------------------------------------------------------
    def first_run_dialog(self) -> FirstRunDialog | None:
        """Open (non-blocking) the first-run dialog when no model is configured; None otherwise."""
        if not needs_first_run(self.settings):
            return None
        dialog = FirstRunDialog(self)
        dialog.finished.connect(lambda result: self._first_run_done(dialog, result))
        dialog.open()
        return dialog

    def _first_run_done(self, dialog: FirstRunDialog, result: int) -> None:
        choice = dialog.answer(result)
        remember(self.settings, choice)
        self.model_picker.populate(
            self.settings.get("recent_models"), self.settings.get("model_folders")
        )
        if choice.model:
            self.model_picker.set_model(choice.model)

    # Settings ------------------------------------------------------------------------------------
    def _kept_parts(self) -> window_state.KeptParts:
        return window_state.KeptParts(
            settings=self.settings,
            frame=self,
            splitter=self.splitter,
            model_picker=self.model_picker,
            hardware=self.hardware,
            demofusion=self.demofusion,
            stored_values=self.stored_values,
            apply_values=self.apply_values,
        )

    def _restore(self) -> None:
        window_state.restore(self._kept_parts())
        self.history.load(self.output_folder())
        self.refresh_plan()

    def _remember_parameters(self) -> None:
        window_state.remember_parameters(self.settings, self.stored_values())

    def _save_settings(self) -> None:
        window_state.save_settings(self.settings)

    def save_state(self) -> None:
        """Last parameters, window geometry and panel state into the settings file."""
        window_state.save(self._kept_parts())

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.controller.running:
            self.controller.cancel()
            if not self.controller.wait(CLOSE_WAIT_MS):
                # The current UNet call is still going: close as soon as the run stops.
                self._close_pending = True
                self.progress.status.setText("Stopping the run, then closing…")
                event.ignore()
                return
        self.save_state()
        self.background.shutdown()
        event.accept()

    # Background ----------------------------------------------------------------------------------
    def start_background_imports(self) -> threading.Thread:
        """Import torch and diffusers in the background so the first run starts sooner."""
        thread = threading.Thread(target=_warm_imports, name="warm-imports", daemon=True)
        thread.start()
        return thread


def _warm_imports() -> None:
    try:
        from demofusion_app import jobs

        jobs.warm_imports()
    except Exception:  # the first run will report the same problem in words
        log.exception("background import failed")


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: bold;")
    return label


def _line() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def _action(window: QMainWindow, text: str, shortcut: Any, slot: Any) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.triggered.connect(slot)
    window.addAction(action)
    return action
