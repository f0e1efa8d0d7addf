"""The upscale form's enlarger: bicubic (the reference's) or a GAN upscaler file the artist already has.

The choice is the `upsampler` setting: the job enlarges between stages with it (docs/algorithm.md rule 42) and
the viewer shows its enlargement as the "GAN" baseline beside the original.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget

from .fields import name_control

BICUBIC = "Bicubic (as the paper)"
TIP = (
    "What enlarges the picture between stages. Bicubic keeps the method exactly as published; an "
    "ESRGAN-family upscaler (4x-UltraSharp, Real-ESRGAN, ...; a .safetensors file) starts each stage "
    "from sharper detail, and its own result appears as 'GAN' in the viewer to compare with."
)


class UpsamplerPicker(QWidget):
    """`path()` is the chosen upscaler file or None for bicubic; `changed` when it changes."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._path: str | None = None
        self.label = name_control(QLabel(BICUBIC), "upsampler", TIP)
        self.choose = name_control(QPushButton("Choose..."), "upsampler_choose", TIP)
        self.reset = name_control(QPushButton("Bicubic"), "upsampler_bicubic", TIP)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.choose)
        layout.addWidget(self.reset)
        self.choose.clicked.connect(self._choose)
        self.reset.clicked.connect(lambda: self.set_path(None))
        self._show()

    def path(self) -> str | None:
        return self._path

    def set_path(self, path: str | None) -> None:
        """Show `path` (None or empty: bicubic); `changed` fires only when it differs."""
        path = path or None
        if path == self._path:
            return
        self._path = path
        self._show()
        self.changed.emit()

    def _show(self) -> None:
        self.label.setText(Path(self._path).name if self._path else BICUBIC)
        self.label.setToolTip(f"{self._path}\n\n{TIP}" if self._path else TIP)
        self.reset.setEnabled(self._path is not None)

    def _choose(self) -> None:
        start = str(Path(self._path).parent) if self._path else ""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Choose an upscaler (ESRGAN, Real-ESRGAN, ...)",
            start,
            "Upscaler (*.safetensors *.pth);;All files (*)",
        )
        if path:
            self.set_path(path)
