"""The upscale queue: pictures waiting to be upscaled, the scale and strength, and what their
metadata said: where the values came from, and a checkbox for each value the selected picture
offers (prompt, seed, steps, sampler, CFG). Shown only while the queue holds pictures."""

from __future__ import annotations

from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..run.upscale_sources import CHOICES, SCALE_CHOICES, Offer, Source, State
from .controlnet_picker import PATH_TIP as CONTROLNET_TIP
from .controlnet_picker import ControlNetPicker
from .faithfulness_slider import FaithfulnessSlider
from .fields import FieldRegistry, FieldRow, name_control
from .upsampler_picker import UpsamplerPicker

STRENGTH_TIP = (
    "How much the picture may change: 1 repaints every stage from noise guided by the picture, "
    "lower values keep more of the original. The Faithfulness slider sets it; a value of your "
    "own sets the slider to Custom."
)
WARNING_STYLE = "color: #b35900;"
CONTROLNET_FLUX_TIP = (
    "Not for FLUX models: the ControlNets here are for SDXL and SD 1.5. The faithfulness slider "
    "and the strength keep an upscale close to the picture."
)


class UpscalePanel(QWidget):
    """`queue` of sources, `scale`, `strength`, and `choices` (one checkbox per `CHOICES`) for the
    selected picture; `remove_requested`, `clear_requested` and `choice_toggled` (choice, ticked)
    carry intent."""

    remove_requested = Signal(int)
    choice_toggled = Signal(str, bool)
    clear_requested = Signal()
    changed = Signal()
    paths_added = Signal(list)  # files or folders the artist chose to queue
    move_requested = Signal(int, int)  # (row, new row)
    pause_toggled = Signal(bool)

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Upscale")
        title.setStyleSheet("font-weight: bold;")
        self.queue = name_control(
            QListWidget(),
            "queue",
            "Pictures to upscale, in order; each runs with the settings here",
        )
        self.queue.setMaximumHeight(160)
        self.queue.setIconSize(QSize(32, 32))
        self.found = name_control(QLabel(), "metadata_note")
        self.found.setWordWrap(True)
        self.found.setStyleSheet("color: #2d5f9a;")
        # A warning about the selected picture (made with another kind of model); never blocks a run.
        self.warning = name_control(QLabel(), "metadata_warning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(WARNING_STYLE)
        self.warning.hide()
        self.choices: dict[str, QCheckBox] = {
            choice: name_control(QCheckBox(choice.capitalize()), f"use_{choice}")
            for choice in CHOICES
        }
        self.choice_box = QWidget()
        self.choice_box.setObjectName("picture_values")
        grid = QGridLayout(self.choice_box)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(2)
        # Short values share a row; the prompt and the sampler's two names get a row each.
        grid.addWidget(self.choices["prompt"], 0, 0, 1, 3)
        for column, choice in enumerate(("seed", "steps", "cfg")):
            grid.addWidget(self.choices[choice], 1, column)
        grid.addWidget(self.choices["sampler"], 2, 0, 1, 3)
        grid.setColumnStretch(2, 1)
        self.choice_box.hide()
        for choice, box in self.choices.items():
            # clicked, not toggled: only the artist's ticks are news, not the panel's own updates
            box.clicked.connect(lambda ticked, c=choice: self.choice_toggled.emit(c, ticked))
        self.remove = name_control(
            QPushButton("Remove"), "queue_remove", "Take the selected picture out of the queue"
        )
        self.clear = name_control(
            QPushButton("Clear"),
            "queue_clear",
            "Empty the queue and go back to making new pictures",
        )
        self.add_files = name_control(
            QPushButton("Add files…"), "queue_add_files", "Queue more pictures, also while one runs"
        )
        self.add_folder = name_control(
            QPushButton("Add folder…"), "queue_add_folder", "Queue every picture in a folder"
        )
        self.up = name_control(QPushButton("Up"), "queue_up", "Run the selected picture sooner")
        self.down = name_control(
            QPushButton("Down"), "queue_down", "Run the selected picture later"
        )
        self.pause = name_control(
            QPushButton("Pause"),
            "queue_pause",
            "Let the picture upscaling now finish and wait before the next; press again to go on",
        )
        self.pause.setCheckable(True)
        adding = QHBoxLayout()
        adding.addWidget(self.add_files)
        adding.addWidget(self.add_folder)
        adding.addStretch(1)
        adding.addWidget(self.pause)
        buttons = QHBoxLayout()
        buttons.addWidget(self.up)
        buttons.addWidget(self.down)
        buttons.addStretch(1)
        buttons.addWidget(self.remove)
        buttons.addWidget(self.clear)
        self.scale = name_control(
            QComboBox(), "scale", "How much larger the result is than the picture"
        )
        for label, value in SCALE_CHOICES:
            self.scale.addItem(label, value)
        self.scale.setCurrentIndex(1)
        self.strength = name_control(QDoubleSpinBox(), "strength", STRENGTH_TIP)
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.controlnet = ControlNetPicker()
        self._flux = False
        # The slider sets strength, colour fix and ControlNet scale; it starts at the faithful end.
        self.faithfulness = FaithfulnessSlider(self.strength, self.controlnet)
        self.color_fix = self.faithfulness.color_fix
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Scale", fields.add("scale", FieldRow(self.scale)))
        form.addRow("Faithfulness", fields.add("faithfulness", FieldRow(self.faithfulness)))
        form.addRow("ControlNet", fields.add("controlnets", FieldRow(self.controlnet)))
        self.upsampler = UpsamplerPicker()
        form.addRow("Enlarge with", self.upsampler)
        # The numbers the slider sets stay visible and editable here.
        advanced = QGroupBox("Advanced")
        advanced.setObjectName("upscale_advanced")
        numbers = QFormLayout(advanced)
        numbers.addRow("Strength", fields.add("strength", FieldRow(self.strength)))
        numbers.addRow("Colour fix", fields.add("color_fix", FieldRow(self.color_fix)))
        form.addRow(advanced)
        layout.addWidget(title)
        layout.addLayout(adding)
        layout.addWidget(self.queue)
        layout.addLayout(buttons)
        layout.addWidget(self.found)
        layout.addWidget(self.warning)
        layout.addWidget(self.choice_box)
        layout.addLayout(form)
        self.remove.clicked.connect(self._remove)
        self.clear.clicked.connect(self.clear_requested)
        self.up.clicked.connect(lambda: self._move(-1))
        self.down.clicked.connect(lambda: self._move(1))
        self.pause.toggled.connect(self._pause_toggled)
        self.add_files.clicked.connect(self._ask_files)
        self.add_folder.clicked.connect(self._ask_folder)
        self.scale.currentIndexChanged.connect(self.changed)
        self.faithfulness.changed.connect(self.changed)
        self.controlnet.changed.connect(self.changed)
        self.hide()

    def show_sources(
        self, sources: list[Source], thumbnails: dict[object, QImage] | None = None
    ) -> None:
        """Render the queue (hidden when empty), each picture with its state and thumbnail (made
        off the GUI thread; only the pixmap is made here); keeps the selection where it can."""
        row = self.queue.currentRow()
        self.queue.clear()
        for source in sources:
            item = QListWidgetItem(source.label())
            thumbnail = (thumbnails or {}).get(source.path)
            if thumbnail is not None:
                item.setIcon(QIcon(QPixmap.fromImage(thumbnail)))
            # While a picture is read its metadata is not known yet: only its file is.
            reading = source.state is State.READING
            item.setToolTip(
                str(source.path) if reading else f"{source.path}\n{source.found.describe()}"
            )
            self.queue.addItem(item)
        self.queue.setCurrentRow(min(max(row, 0), len(sources) - 1))
        self.setVisible(bool(sources))
        self.update_remove(sources)

    def update_remove(self, sources: list[Source]) -> None:
        row = self.queue.currentRow()
        self.remove.setEnabled(0 <= row < len(sources) and sources[row].state is not State.RUNNING)
        self.up.setEnabled(0 < row < len(sources))
        self.down.setEnabled(0 <= row < len(sources) - 1)

    def set_paused(self, paused: bool) -> None:
        """The Pause button as the queue is (without telling it again)."""
        self.pause.blockSignals(True)
        self.pause.setChecked(paused)
        self.pause.blockSignals(False)
        self.pause.setText("Resume" if paused else "Pause")

    def _pause_toggled(self, paused: bool) -> None:
        self.pause.setText("Resume" if paused else "Pause")
        self.pause_toggled.emit(paused)

    def _move(self, step: int) -> None:
        row = self.queue.currentRow()
        if row >= 0 and 0 <= row + step < self.queue.count():
            self.move_requested.emit(row, row + step)

    def _ask_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Add pictures to upscale",
            "",
            "Pictures (*.png *.jpg *.jpeg *.webp);;All files (*)",
        )
        if paths:
            self.paths_added.emit(paths)

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of pictures to upscale")
        if folder:
            self.paths_added.emit([folder])

    def _remove(self) -> None:
        row = self.queue.currentRow()
        if row >= 0:
            self.remove_requested.emit(row)

    def set_note(self, text: str) -> None:
        """A note in place of the picture's values (while it is read)."""
        self.found.setText(text)
        self.found.setToolTip("")
        self.choice_box.hide()
        self.set_warning("")

    def set_warning(self, text: str) -> None:
        """A warning under the picture's origin line ("" hides it)."""
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    def show_picture(
        self, line: str, offered: list[Offer], use: set[str], editable: bool = True
    ) -> None:
        """The selected picture: where its values came from, and a checkbox per value it offers,
        ticked as `use` says. A value the picture does not record usably is disabled and its
        tooltip says why; `editable` False (running, done) disables them all."""
        self.found.setText(line)
        self.found.setToolTip(line)
        for offer in offered:
            box = self.choices[offer.choice]
            box.setText(offer.text)
            box.setToolTip(offer.tip)
            box.setAccessibleDescription(offer.tip)
            box.setEnabled(offer.usable and editable)
            box.setChecked(offer.usable and offer.choice in use)
        self.choice_box.setVisible(any(offer.usable for offer in offered))

    def set_flux(self, flux: bool) -> None:
        """A FLUX model takes no ControlNet here: the picker is disabled and says why (its path is
        kept for when an SDXL or SD 1.5 model is chosen again)."""
        self._flux = flux
        self.controlnet.setEnabled(not flux)
        for widget in (self.controlnet, self.controlnet.path, self.controlnet.choose):
            widget.setToolTip(CONTROLNET_FLUX_TIP if flux else CONTROLNET_TIP)
        self.controlnet.path.setPlaceholderText("not for FLUX models" if flux else "none")

    def values(self) -> dict[str, object]:
        """`scale` (None: use the form's width and height), `strength`, `color_fix`,
        `faithfulness` (None: Custom) and `controlnets` (none for a FLUX model)."""
        return {
            "scale": self.scale.currentData(),
            **self.faithfulness.values(),
            **(self.controlnet.values() if not self._flux else {"controlnets": ()}),
        }

    def stored_values(self) -> dict[str, object]:
        """What a preset or the last parameters keep: the slider's position, or the numbers when
        it is Custom."""
        return self.faithfulness.stored_values()

    def apply(self, values: dict[str, object]) -> None:
        """Set the slider (or the numbers) from stored fields; others are ignored."""
        self.faithfulness.apply(values)
