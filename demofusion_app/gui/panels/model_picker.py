"""The model box: checkpoints from the model folders, recent models, browse, or a typed hub id."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from demofusion_app.store.filenames import model_label

from .fields import FieldRegistry, FieldRow, name_control
from .model_list import list_models

MODEL_TIP = (
    "The model that paints: a .safetensors checkpoint, a diffusers folder, or a Hugging Face "
    "id such as stabilityai/stable-diffusion-xl-base-1.0"
)


class ModelPicker(QWidget):
    """`model` (editable combo). `changed` carries the model reference whenever it changes."""

    changed = Signal(str)

    def __init__(self, fields: FieldRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.families: dict[str, str | None] = {}
        self.combo = name_control(QComboBox(), "model", MODEL_TIP)
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.lineEdit().setPlaceholderText("Choose a model, or type a hub id")
        self.combo.setMinimumContentsLength(18)
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.browse_file = name_control(
            QPushButton("File…"), "model_browse_file", "Pick a .safetensors checkpoint"
        )
        self.browse_folder = name_control(
            QPushButton("Folder…"), "model_browse_folder", "Pick a diffusers model folder"
        )
        row = QHBoxLayout()
        row.addWidget(fields.add("model", FieldRow(self.combo)), 1)
        row.addWidget(self.browse_file)
        row.addWidget(self.browse_folder)
        outer.addLayout(row)
        self.browse_file.clicked.connect(self._pick_file)
        self.browse_folder.clicked.connect(self._pick_folder)
        self.combo.currentIndexChanged.connect(lambda _i: self.changed.emit(self.model()))
        self.combo.lineEdit().editingFinished.connect(lambda: self.changed.emit(self.model()))

    def populate(self, recent: list[str], folders: list[str]) -> None:
        """Recent models first, then what the model folders hold; keeps the current choice."""
        current = self.model()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.families = list_models(folders)
        for model in dict.fromkeys([*recent, *self.families]):
            self.combo.addItem(self._label(model), model)
            self.combo.setItemData(self.combo.count() - 1, model, role=3)  # Qt.ToolTipRole
        self.combo.blockSignals(False)
        self.set_model(current)

    @staticmethod
    def _label(model: str) -> str:
        path = Path(model).expanduser()
        if path.exists():
            return f"{model_label(model)} — {path.parent.name}"
        return model

    def family(self, model: str) -> str | None:
        """The family discovery found for a listed model (None when unknown)."""
        return self.families.get(model)

    def model(self) -> str:
        """The chosen reference (path or hub id), "" when none."""
        text = self.combo.currentText().strip()
        index = self.combo.findText(text)
        if index >= 0 and self.combo.itemData(index):
            return str(self.combo.itemData(index))
        return text

    def set_model(self, model: str) -> None:
        if not model:
            self.combo.setCurrentIndex(-1)
            self.combo.setEditText("")
            return
        index = self.combo.findData(model)
        if index < 0:
            self.combo.addItem(self._label(model), model)
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)
        self.changed.emit(model)

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a checkpoint", "", "Checkpoints (*.safetensors);;All files (*)"
        )
        if path:
            self.set_model(path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder")
        if path:
            self.set_model(path)
