"""The first-run dialog: where the models are. Asked once; the answer goes into the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from demofusion_app.models import discovery
from demofusion_app.models.errors import ModelError
from demofusion_app.store.settings import SettingsStore

from .panels.fields import name_control

FIRST_RUN_KEY = "first_run_done"


@dataclass(frozen=True)
class FirstRunChoice:
    """The model to start with (None: none picked) and folders to search for more."""

    model: str | None = None
    folders: tuple[str, ...] = ()


def needs_first_run(settings: SettingsStore) -> bool:
    """True when no model is configured and the question was never answered."""
    ui = settings.get("ui")
    return not (
        settings.get("default_model")
        or settings.get("model_folders")
        or settings.get("recent_models")
        or ui.get(FIRST_RUN_KEY)
    )


def remember(settings: SettingsStore, choice: FirstRunChoice) -> None:
    """Store the answer (also "not now", so the question is not asked at every start) and save."""
    folders = list(dict.fromkeys([*settings.get("model_folders"), *choice.folders]))
    settings.set("model_folders", folders)
    if choice.model:
        settings.set("default_model", choice.model)
        settings.add_recent_model(choice.model)
    settings.set("ui", {**settings.get("ui"), FIRST_RUN_KEY: True})
    settings.save()


class FirstRunDialog(QDialog):
    """Pick a checkpoint file or a folder, type a hub id, or import another tool's model folders."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("first_run")
        self.setWindowTitle("Welcome to DemoFusion Studio")
        self._model: str | None = None
        self._folders: list[str] = []
        intro = QLabel(
            "DemoFusion Studio paints with a Stable Diffusion model you already have "
            "(SDXL works best). Where is it?"
        )
        intro.setWordWrap(True)
        self.file_button = name_control(
            QPushButton("Checkpoint file…"), "first_run_file", "A .safetensors file"
        )
        self.folder_button = name_control(
            QPushButton("Model folder…"),
            "first_run_folder",
            "A diffusers model folder, or a folder full of checkpoints",
        )
        self.hub_id = name_control(QLineEdit(), "first_run_hub_id", "A Hugging Face model id")
        self.hub_id.setPlaceholderText("stabilityai/stable-diffusion-xl-base-1.0")
        self.import_button = name_control(
            QPushButton("AUTOMATIC1111 / ComfyUI…"),
            "first_run_import",
            "Use the models of an existing install",
        )
        grid = QGridLayout()
        grid.addWidget(QLabel("A checkpoint file"), 0, 0)
        grid.addWidget(self.file_button, 0, 1)
        grid.addWidget(QLabel("A folder of models"), 1, 0)
        grid.addWidget(self.folder_button, 1, 1)
        grid.addWidget(QLabel("A hub id"), 2, 0)
        grid.addWidget(self.hub_id, 2, 1)
        grid.addWidget(QLabel("Another tool's install"), 3, 0)
        grid.addWidget(self.import_button, 3, 1)
        self.summary = name_control(QLabel("Nothing chosen yet."), "first_run_summary")
        self.summary.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Use these")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Not now")
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(grid)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.file_button.clicked.connect(self._ask_file)
        self.folder_button.clicked.connect(self._ask_folder)
        self.import_button.clicked.connect(self._ask_install)
        self.hub_id.textChanged.connect(self._update)

    # Choices (also called by tests)
    # ------------------------------------------------------------------
    def choose_file(self, path: str) -> None:
        self._model = path
        self.hub_id.clear()
        self._update()

    def choose_folder(self, path: str) -> None:
        folder = Path(path)
        if (folder / "model_index.json").is_file():
            self._model = str(folder)
            self.hub_id.clear()
        else:
            self._folders.append(str(folder))
        self._update()

    def import_install(self, path: str) -> bool:
        """Add an install's checkpoint folders; False (and the reason shown) when it is none."""
        try:
            install = discovery.install_folders(path)
        except ModelError as exc:
            self.summary.setText(str(exc))
            return False
        self._folders.extend(str(f) for f in install.checkpoints)
        self._update()
        return True

    def choice(self) -> FirstRunChoice:
        hub = self.hub_id.text().strip()
        return FirstRunChoice(hub or self._model, tuple(dict.fromkeys(self._folders)))

    def answer(self, result: int) -> FirstRunChoice:
        """What to remember once the dialog closed with `result`: the choice for "Use these",
        nothing but "asked" for "Not now" (or the window closed)."""
        accepted = result == QDialog.DialogCode.Accepted.value
        return self.choice() if accepted else FirstRunChoice()

    def _update(self) -> None:
        choice = self.choice()
        parts = []
        if choice.model:
            parts.append(f"Model: {choice.model}")
        if choice.folders:
            parts.append("Search: " + "; ".join(choice.folders))
        self.summary.setText("\n".join(parts) or "Nothing chosen yet.")

    def _ask_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a checkpoint", "", "Checkpoints (*.safetensors);;All files (*)"
        )
        if path:
            self.choose_file(path)

    def _ask_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if path:
            self.choose_folder(path)

    def _ask_install(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the AUTOMATIC1111 or ComfyUI folder")
        if path:
            self.import_install(path)
