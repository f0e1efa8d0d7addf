"""The main window: layout and wiring of the panels, the run controller and the store."""

from __future__ import annotations

import logging
import threading
import time
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
    QButtonGroup,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
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
from .panels import estimate
from .panels.banner import Banner
from .panels.demofusion_panel import DemoFusionPanel
from .panels.fields import FieldRegistry, name_control
from .panels.hardware_panel import HardwarePanel
from .panels.history_panel import HistoryPanel
from .panels.model_list import ModelKind, geometry_of, model_kind
from .panels.model_picker import ModelPicker
from .panels.params_panel import ParamsPanel, plain_plan, plan_text
from .panels.preset_bar import PresetBar
from .panels.progress_panel import ProgressPanel
from .panels.prompt_panel import PromptPanel
from .panels.upscale_panel import UpscalePanel
from .run import run_setup
from .run.background import Background
from .run.drops import has_picture
from .run.messages import RunEvent, RunFailure, RunMessage, window_message
from .run.text_batch import TextBatch
from .run.upscale_flow import FlowHost, UpscaleFlow
from .run.upscale_sources import Source, State
from .run.worker import JobFunction, RunController
from .shortcuts_dialog import ShortcutsDialog
from .viewer.viewer_slot import make_viewer
from .window_fit import FormScroll

log = logging.getLogger(__name__)

CLOSE_WAIT_MS = 3000
GENERATE, UPSCALE = "generate", "upscale"  # the window's modes
EMPTY_INVITE = "Drop a picture to upscale it, or write a prompt"
GENERATE_STYLE = (
    "QPushButton { background: #2d7be5; color: white; font-weight: bold; border-radius: 4px; }"
    "QPushButton:disabled { background: #a9c4ea; }"
)
FINAL = "Final"
UPSCALE_ONLY = ("strength", "color_fix", "faithfulness")


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
        self._sampling_started: float | None = None  # the first stage's start: the estimate's clock
        self._run_plan: Any = None
        self._approved_run: tuple[str, ...] | None = None  # a long run the artist said yes to
        self._stage_tiles: dict[str, Any] = {}  # name -> TiledImage, as the viewer got them
        self._geometry = geometry_of("")
        self._kind = ModelKind(None)  # the chosen model's family and FLUX variant
        self._close_pending = False
        self._waiting = 0  # pictures waiting in the queue when it last changed
        self._close_confirmed = False  # the artist said "Stop and close" to the close question
        self.close_question: QMessageBox | None = None
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
        self.params.set_image_format(str(self.settings.get("output_format")))
        self.demofusion = DemoFusionPanel(self.fields)
        self.hardware = HardwarePanel(self.fields)
        self.upscale = UpscalePanel(self.fields)

        form = QWidget()
        column = QVBoxLayout(form)
        column.addWidget(self._mode_bar())
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
        self.demofusion.changed_layout.connect(scroll.form_changed)

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
        self.text_batch = TextBatch(self.controller, parent=self)  # text to image, N in a row
        buttons.addWidget(self.text_batch.count)
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
            QPushButton("Copy image"),
            "copy_image",
            "Copy the last picture to the clipboard (Ctrl+Shift+C)",
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

        self.history = HistoryPanel(
            background=self.background, cache_dir=self.settings.paths.cache_dir
        )
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(self.history)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(0, False)  # a collapsed form would come back collapsed
        self.splitter.setSizes([400, 900, 240])
        self.setCentralWidget(self.splitter)
        self._menus()
        self.viewer_hint()
        window_fit.place_first(self)

    def _mode_bar(self) -> QWidget:
        """Generate | Upscale: which form shows (Upscale also follows the queue of pictures)."""
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.mode_group = QButtonGroup(bar)
        for mode, text, tip in (
            (GENERATE, "Generate", "Make a new picture from a prompt"),
            (UPSCALE, "Upscale", "Make a picture larger and sharper (drop one on the window)"),
        ):
            button = name_control(QPushButton(text), f"mode_{mode}", tip)
            button.setCheckable(True)
            button.setProperty("mode", mode)
            self.mode_group.addButton(button)
            row.addWidget(button, 1)
        self.mode_group.buttons()[0].setChecked(True)
        # the chosen mode in the highlight colour: plain enough to read in either theme
        bar.setStyleSheet(
            "QPushButton:checked { background: palette(highlight);"
            " color: palette(highlighted-text); font-weight: bold; }"
        )
        self.mode_group.buttonClicked.connect(lambda button: self.set_mode(button.property("mode")))
        return bar

    @property
    def mode(self) -> str:
        """GENERATE or UPSCALE: the form the window shows."""
        checked = self.mode_group.checkedButton()
        return str(checked.property("mode")) if checked is not None else GENERATE

    def set_mode(self, mode: str) -> None:
        """Show the form of `mode`: Upscale adds the pictures, their values and the target size;
        Generate the size. Either keeps the prompt, the model and the settings."""
        for button in self.mode_group.buttons():
            button.setChecked(button.property("mode") == mode)
        self.upscale.setVisible(mode == UPSCALE)
        # A text-to-image count means nothing to an upscale (its queue says how many pictures).
        batch = getattr(self, "text_batch", None)
        if batch is not None:
            batch.count.setVisible(mode != UPSCALE)
        self.viewer_hint()
        self._queue_changed()

    def viewer_hint(self) -> None:
        """What the empty picture area invites to do in this mode."""
        hint = "Drop a picture to upscale it" if self.mode == UPSCALE else EMPTY_INVITE
        self.viewer.empty_hint = hint
        if self.viewer.primary.empty_text:  # nothing shown: the hint is
            self.viewer.primary.empty_text = hint
            self.viewer.primary.viewport().update()

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
            model_family=lambda: self.model_family,
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
        view_menu = self.menuBar().addMenu("&View")
        theme_menu = view_menu.addMenu("&Theme")
        self.theme_actions: dict[str, QAction] = {}
        ui = self.settings.get("ui")
        chosen = ui.get("theme", "system") if isinstance(ui, dict) else "system"
        for key, text in (("system", "Like the &system"), ("light", "&Light"), ("dark", "&Dark")):
            action = _action(self, text, None, lambda _=False, key=key: self.set_theme(key))
            action.setCheckable(True)
            action.setChecked(key == chosen)
            theme_menu.addAction(action)
            self.theme_actions[key] = action
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(_action(self, "&Keyboard shortcuts", "F1", self.show_shortcuts))
        help_menu.addAction(_action(self, "Copy &diagnostics", None, self.copy_diagnostics))
        help_menu.addAction(_action(self, "Open &log folder", None, self.open_log_folder))

    def show_shortcuts(self) -> ShortcutsDialog:
        """Help > Keyboard shortcuts: the list, read from the window's own actions and buttons."""
        dialog = ShortcutsDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def set_theme(self, choice: str) -> None:
        """Switch to the light, dark or system theme and remember it."""
        from .app import set_theme  # the application module builds this window

        for key, action in self.theme_actions.items():
            action.setChecked(key == choice)
        set_theme(self.settings, choice)
        self._save_settings()

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
        self.upscale_flow.resumed.connect(self.generate)
        self.demofusion.changed.connect(self.refresh_plan)
        self.hardware.changed.connect(self.refresh_plan)
        self.progress.thumbnail_clicked.connect(self.show_stage)
        self.viewer.exportDone.connect(self.progress.status.setText)
        self.history.restore_requested.connect(self.restore_parameters)
        self.history.show_requested.connect(self.show_file)
        self.history.upscale_requested.connect(lambda path: self.open_images([path]))
        self.history.compare_requested.connect(self.compare_files)
        self.history.reveal_requested.connect(
            lambda path: self._open_folder(Path(path).parent, "The picture's folder")
        )

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
        # The faithfulness slider's position (or its numbers when Custom), for presets too.
        values.update(self.upscale.stored_values())
        return values

    def apply_values(self, values: dict[str, Any]) -> None:
        """Put stored request fields back in the form (unknown or ill-typed ones are skipped).

        The model comes first: the form follows its family (FLUX's fields, its schedulers and its
        guidance default), and the values given then win over those defaults."""
        model = values.get("model")
        if isinstance(model, str) and model:
            self.model_picker.set_model(model)
        for panel in (self.prompt_panel, self.params, self.demofusion, self.hardware):
            panel.apply(values)
        self.upscale.apply(values)
        self.refresh_plan()

    @Slot(object)
    def apply_preset(self, preset: Preset | None) -> None:
        if preset is not None:
            self.apply_values(preset.resolve(self._geometry))

    @Slot(dict)
    def restore_parameters(self, values: dict[str, Any]) -> None:
        from demofusion_app.models.lookup import resolve_model

        message = "Settings restored from the picture."
        if not values.get("init_image"):
            # A text-to-image picture records no upscale: the faithfulness slider stays.
            values = {k: v for k, v in values.items() if k not in UPSCALE_ONLY}
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
        listed = self.model_picker.family(model)
        self._geometry = geometry_of(model, listed)
        self._kind = model_kind(model, listed)
        flux = self._geometry.guidance_in_model  # a transformer taking guidance as input: FLUX
        self.params.set_geometry(self._geometry)
        self.params.set_family(flux, self._kind.variant if flux else "")
        self.prompt_panel.set_flux(flux, self._kind.variant)
        self.demofusion.set_flux(flux)
        self.hardware.set_flux(flux)
        self.upscale.set_flux(flux)
        self.upscale_flow.model_changed()
        self.refresh_plan()

    @property
    def model_family(self) -> str | None:
        """The chosen model's family ("flux", "sdxl", "sd15", "sd2"), None when it cannot be told."""
        return "flux" if self._geometry.guidance_in_model else self._kind.family

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
            self.params.estimate.show_estimate(None)
            self.fields.show(exc.field, str(exc), focus=False)
            return
        self.params.set_plan_text(plan_text(plan, size, self.params.is_flux))
        self.params.estimate.show_estimate(self.estimate_for(_request, plan))

    def estimate_for(self, request: Request, plan: Any, *, sure: bool = False) -> Any:
        """The time and memory `plan` will take here (`sure`: import torch to tell "auto")."""
        device = estimate.resolve_device(request.device, import_torch=sure)
        figures = self.settings.get("run_figures")
        return estimate.estimate(
            plan,
            request.model,
            device,
            figures,
            self._geometry,
            self.model_family,
            quantize=request.quantize,
        )

    def _ask_before_long_run(self, cost: Any, key: tuple[str, ...]) -> bool:
        """True when the run may start: not long, or the artist chose "Start anyway" for this
        very plan; else the banner asks (without a modal dialog, so the window stays usable)."""
        if not cost.ask or self._approved_run == key:
            return True

        def start_anyway() -> None:
            self._approved_run = key
            self.generate()

        self.banner.show_message(
            cost.question(), kind="info", action=("Start anyway", start_anyway)
        )
        return False

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
        self.demofusion.reveal(error.field)  # a field under a folded section would stay unseen
        if not self.fields.show(error.field, str(error)):
            self.banner.show_message(str(error))

    @Slot()
    def generate(self) -> bool:
        """Check the form and start a run; False (with the reason shown) when it cannot start."""
        if self.controller.running:
            return False
        self.fields.clear()
        self.banner.hide()
        if self.mode == UPSCALE and not self.upscale_flow.queue.items:
            self.banner.show_message(
                "Drop a picture on the window (or Add pictures) to upscale it, or switch to "
                "Generate to make one from the prompt.",
                kind="info",
            )
            return False
        try:
            job = (
                self.upscale_flow.next_job(self.collect_values()) if self.mode == UPSCALE else None
            )
            values = job.values if job is not None else self.collect_values()
            size = job.source.size if job is not None else None
            request, plan = run_setup.build_request(values, self._geometry, size)
            run_setup.require_model(request)
        except RequestError as exc:
            self.show_error(exc)
            return False
        cost = self.estimate_for(request, plan, sure=True)
        if not self._ask_before_long_run(cost, (request.model, request.device, plan.describe())):
            return False
        self._approved_run = None
        request = choose_seed(request)
        if job is None:  # the next seed of a text-to-image batch
            request = self.text_batch.seed_for(request)
        # the format is a choice per run that the next start remembers
        self.settings.set("output_format", self.params.image_format())
        try:
            options = run_setup.job_options(self.settings, request, plan)
        except (run_setup.RunSetupError, JobError) as exc:
            self.banner.show_message(window_message(exc))
            return False
        self.last_request = request
        self._run_plan, self._sampling_started = plan, None
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
        self.progress.start(plan.total_evaluations, plain_plan(plan, self.params.is_flux))
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
        elif not running and (self.upscale_flow.take_continue() or self.text_batch.take_next()):
            QTimer.singleShot(0, self.generate)

    def _queue_changed(self) -> None:
        # A picture still being read is on its way to the queue: Generate already upscales.
        waiting = sum(
            1 for s in self.upscale_flow.queue.items if s.state in (State.PENDING, State.READING)
        )
        came, went = waiting > self._waiting, waiting == 0 < self._waiting
        self._waiting = waiting
        # the mode follows the queue: a picture dropped or added brings the upscale form, the
        # last one done (or refused, or removed) the generate form again
        if (came and self.mode != UPSCALE) or (went and self.mode != GENERATE):
            self.set_mode(UPSCALE if came else GENERATE)
            return
        # the panel shows itself with pictures and hides without; the mode decides
        self.upscale.setVisible(self.mode == UPSCALE)
        if waiting > 1:
            self.generate_button.setText(f"Upscale {waiting} pictures")
        elif waiting == 1 or self.mode == UPSCALE:
            self.generate_button.setText("Upscale")
        else:
            self.generate_button.setText("Generate")
        self.refresh_plan()

    @Slot(object)
    def on_message(self, message: RunMessage) -> None:
        e = message.payload
        kind = message.event
        if kind is RunEvent.STAGE_STARTED:
            if e.stage == 1:  # loading the model is not part of the rate
                self._sampling_started = time.monotonic()
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
        elif kind is RunEvent.PATCH_PROMPTS and e.stages:
            self.progress.show_window_prompts(e.stages[0])
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
        self._record_figures()
        self.upscale_flow.ended(State.DONE, e.path)
        if e.path:
            self.history.add_result(e.path, message.thumbnail)
        log.info("run finished in %.1f s: %s", e.seconds, e.path)
        self.notifier.notify(APP_NAME, f"Your picture is ready{where}.")

    def _record_figures(self) -> None:
        """What this run took, per model and device, for the next estimate."""
        request, plan = self.last_request, self._run_plan
        if request is None or plan is None or self._sampling_started is None:
            return
        device = estimate.resolve_device(request.device) or "cpu"
        # a clock too coarse to see a tiny run still counts it as a (very fast) run
        seconds = max(time.monotonic() - self._sampling_started, 1e-6)
        peak = estimate.device_peak_bytes(device)
        evaluations = estimate.window_evaluations(plan, self._geometry)
        estimate.record_run(self.settings, request.model, device, evaluations, seconds, peak)
        self._save_settings()

    @Slot(object)
    def on_errored(self, failure: RunFailure) -> None:
        # The whole story (the library's own text is in the traceback's causes) goes to the log
        # and the diagnostics; the window shows the one sentence written for the artist.
        self.last_error = f"{failure.message}\n\n{failure.details}"
        log.error("run failed: %s\n%s", failure.message, failure.details)
        self.progress.stop("Stopped by an error.")
        self.upscale_flow.ended(State.FAILED)
        if failure.field:
            self.demofusion.reveal(failure.field)
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

    @Slot(list)
    def compare_files(self, pairs: list[tuple[str, str]]) -> None:
        """Show two pictures side by side, each under its name (`pairs` is [(path, name), ...], as
        the history's Compare gives them: say a DyPE and a DemoFusion result of one prompt and
        seed). Decoded off the GUI thread; while a run goes the viewer is the run's."""
        if self.controller.running:
            self.banner.show_message(
                "The viewer shows the picture being made; compare when it is done.", kind="info"
            )
            return
        from .viewer.tiles import TiledImage

        def decode() -> list[tuple[str, Any]]:
            return [(name, TiledImage.from_source(path)) for path, name in pairs]

        self.background.submit(
            decode, self._compare_decoded, lambda exc: self.banner.show_message(str(exc))
        )

    def _compare_decoded(self, images: list[tuple[str, Any]]) -> None:
        if self.controller.running:
            return  # a run started meanwhile: the viewer is its own
        self.viewer.set_images(images)
        self.viewer.set_mode("side_by_side")

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

    def _ask_to_close(self) -> None:
        """Ask, without blocking the window (the run goes on meanwhile), whether to stop the run
        and close; the answer closes the window or keeps it."""
        if self.close_question is not None:
            self.close_question.raise_()
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            APP_NAME,
            "A picture is being made. Stop it and close? Finished stage images are kept.",
            parent=self,
        )
        box.setObjectName("close_question")
        stop = box.addButton("Stop and close", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep running", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)  # Enter keeps the run: the safe answer

        def answered(button: Any) -> None:
            self.close_question = None
            box.deleteLater()
            if button is stop:
                self._close_confirmed = True
                self.close()

        box.buttonClicked.connect(answered)
        box.rejected.connect(lambda: setattr(self, "close_question", None))
        self.close_question = box
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.controller.running and not self._close_confirmed and not self._close_pending:
            event.ignore()
            self._ask_to_close()
            return
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
