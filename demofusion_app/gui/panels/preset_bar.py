"""Choose a preset, save the current parameters as one, delete your own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QInputDialog, QPushButton, QWidget

from demofusion_app.store.errors import PresetError
from demofusion_app.store.preset_store import PresetStore
from demofusion_app.store.presets import GENERATION_FIELDS, Preset

from .fields import name_control

NO_PRESET = "(no preset)"


def all_presets(store: PresetStore) -> list[Preset]:
    """Built-ins first, then the user's (the store's listing method had two names; take either)."""
    listing = getattr(store, "presets", None) or getattr(store, "list")  # noqa: B009
    return list(listing())


class PresetBar(QWidget):
    """`preset` combo with "Save as…" and "Delete". `chosen` carries the Preset picked (None: none).

    `current_parameters` returns the window's parameters for "save as"; failures go to `failed`.
    """

    chosen = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        store: PresetStore,
        current_parameters: Callable[[], dict[str, Any]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._current = current_parameters
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = name_control(
            QComboBox(),
            "preset",
            "Ready-made settings; your own are listed after the built-in ones",
        )
        self.save_as = name_control(
            QPushButton("Save as…"),
            "preset_save",
            "Save the current settings as a preset of your own",
        )
        self.delete = name_control(
            QPushButton("Delete"), "preset_delete", "Delete the selected preset (only your own)"
        )
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.save_as)
        layout.addWidget(self.delete)
        self.refresh()
        self.combo.activated.connect(self._activated)
        self.save_as.clicked.connect(self.ask_save_as)
        self.delete.clicked.connect(self.delete_current)

    def refresh(self, select: str | None = None) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(NO_PRESET, None)
        for preset in all_presets(self.store):
            label = preset.name if preset.builtin else f"{preset.name} (mine)"
            self.combo.addItem(label, preset.name)
            if preset.description:
                self.combo.setItemData(
                    self.combo.count() - 1, preset.description, role=3
                )  # Qt.ToolTipRole
        if select is not None:
            index = self.combo.findData(select)
            self.combo.setCurrentIndex(max(0, index))
        self.combo.blockSignals(False)
        self._update_delete()

    def current(self) -> Preset | None:
        name = self.combo.currentData()
        return self.store.find(name) if name else None

    def _update_delete(self) -> None:
        preset = self.current()
        self.delete.setEnabled(preset is not None and not preset.builtin)

    def _activated(self, _index: int) -> None:
        self._update_delete()
        self.chosen.emit(self.current())

    def save_current_as(self, name: str) -> Preset | None:
        """Save the window's parameters as a user preset called `name`; None (and `failed`) on
        error."""
        params = {k: v for k, v in self._current().items() if k in GENERATION_FIELDS}
        try:
            preset = self.store.save(name, params, overwrite=self._is_user(name))
        except PresetError as exc:
            self.failed.emit(str(exc))
            return None
        self.refresh(select=preset.name)
        return preset

    def _is_user(self, name: str) -> bool:
        found = self.store.find(name)
        return found is not None and not found.builtin

    def ask_save_as(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Name of the new preset:")
        if ok and name.strip():
            self.save_current_as(name)

    def delete_current(self) -> None:
        preset = self.current()
        if preset is None:
            return
        try:
            self.store.delete(preset.name)
        except PresetError as exc:
            self.failed.emit(str(exc))
            return
        self.refresh()
