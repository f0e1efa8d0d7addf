"""What the window keeps between sessions: last parameters, model, panel state and geometry."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QSplitter

from demofusion_app.store.settings import SettingsStore

from . import window_fit

if TYPE_CHECKING:
    from .main_window import MainWindow

log = logging.getLogger(__name__)


def restore(window: MainWindow) -> None:
    """Put the saved settings back into a newly built window."""
    s = window.settings
    window.model_picker.populate(s.get("recent_models"), s.get("model_folders"))
    window.hardware.apply({"device": s.get("device"), "memory_mode": s.get("memory_mode")})
    last = s.get("last_parameters")
    if last:
        window.apply_values(last)
    model = (last or {}).get("model") or s.get("default_model") or ""
    if model:
        window.model_picker.set_model(model)
    ui = s.get("ui")
    window.demofusion.set_expanded(bool(ui.get("demofusion_open", False)))
    sizes = splitter_sizes(ui.get("splitter"), window.splitter)
    if sizes is not None:
        window.splitter.setSizes(sizes)
    geometry = s.get("window_geometry")
    if geometry:
        window.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
        window_fit.keep_on_screen(window)


def splitter_sizes(saved: object, splitter: QSplitter) -> list[int] | None:
    """The saved pane widths, or None when they do not fit today's panes: a pane narrower than its
    minimum (saved before the form needed that width) would be clipped."""
    if not isinstance(saved, list) or len(saved) != splitter.count():
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in saved):
        return None
    for index, size in enumerate(saved):
        collapsed = size == 0 and splitter.isCollapsible(index)
        if not collapsed and size < splitter.widget(index).minimumSizeHint().width():
            return None
    return list(saved)


def remember_parameters(window: MainWindow) -> None:
    """The form's fields as the last parameters (in memory; `save_settings` writes them)."""
    values = window.stored_values()
    window.settings.set("last_parameters", values)
    window.settings.update(device=values["device"], memory_mode=values["memory_mode"])


def save_settings(settings: SettingsStore) -> None:
    """Write the settings; a failure is logged, never raised (the window must still close)."""
    try:
        settings.save()
    except OSError as exc:
        log.warning("settings not saved: %s", exc)


def save(window: MainWindow) -> None:
    """Last parameters, model, panel state and window geometry, written to the settings file."""
    remember_parameters(window)
    settings = window.settings
    ui = {
        **settings.get("ui"),
        "demofusion_open": window.demofusion.expanded,
        "splitter": window.splitter.sizes(),
    }
    settings.set("ui", ui)
    settings.set("window_geometry", bytes(window.saveGeometry().toBase64()).decode("ascii"))
    model = window.model_picker.model()
    if model:
        settings.set("default_model", model)
    save_settings(settings)
