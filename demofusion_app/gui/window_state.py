"""What the window keeps between sessions: last parameters, model, panel state and geometry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QSplitter, QWidget

from demofusion_app.store.settings import SettingsStore

from . import window_fit

if TYPE_CHECKING:
    from .panels.demofusion_panel import DemoFusionPanel
    from .panels.hardware_panel import HardwarePanel
    from .panels.model_picker import ModelPicker

log = logging.getLogger(__name__)

# Settings the hardware panel starts from and writes back: the machine's choices, which the command line
# uses too when no flag gives them.
HARDWARE_SETTINGS = ("device", "memory_mode", "quantize", "compile")


@dataclass(frozen=True)
class KeptParts:
    """The parts of the window whose state is kept between sessions, and nothing more."""

    settings: SettingsStore
    frame: QWidget
    """The top-level window: its geometry."""
    splitter: QSplitter
    model_picker: ModelPicker
    hardware: HardwarePanel
    demofusion: DemoFusionPanel
    stored_values: Callable[[], dict[str, Any]]
    """The form's fields as stored."""
    apply_values: Callable[[dict[str, Any]], None]
    """Put stored fields back into the form."""


def restore(parts: KeptParts) -> None:
    """Put the saved settings back into a newly built window."""
    s = parts.settings
    parts.model_picker.populate(s.get("recent_models"), s.get("model_folders"))
    # This machine's hardware choices; the last parameters, applied next, may hold the same fields.
    parts.hardware.apply({name: s.get(name) for name in HARDWARE_SETTINGS})
    last = s.get("last_parameters")
    if last:
        parts.apply_values(last)
    model = (last or {}).get("model") or s.get("default_model") or ""
    if model:
        parts.model_picker.set_model(model)
    ui = s.get("ui")
    parts.demofusion.set_expanded(bool(ui.get("demofusion_open", False)))
    sizes = splitter_sizes(ui.get("splitter"), parts.splitter)
    if sizes is not None:
        parts.splitter.setSizes(sizes)
    geometry = s.get("window_geometry")
    if geometry:
        parts.frame.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
        window_fit.keep_on_screen(parts.frame)


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


def remember_parameters(settings: SettingsStore, values: dict[str, Any]) -> None:
    """The form's fields (`values`, as stored) as the last parameters (in memory;
    `save_settings` writes them)."""
    settings.set("last_parameters", values)
    settings.update(**{name: values[name] for name in HARDWARE_SETTINGS if name in values})


def save_settings(settings: SettingsStore) -> None:
    """Write the settings; a failure is logged, never raised (the window must still close)."""
    try:
        settings.save()
    except OSError as exc:
        log.warning("settings not saved: %s", exc)


def save(parts: KeptParts) -> None:
    """Last parameters, model, panel state and window geometry, written to the settings file."""
    settings = parts.settings
    remember_parameters(settings, parts.stored_values())
    ui = {
        **settings.get("ui"),
        "demofusion_open": parts.demofusion.expanded,
        "splitter": parts.splitter.sizes(),
    }
    settings.set("ui", ui)
    settings.set("window_geometry", bytes(parts.frame.saveGeometry().toBase64()).decode("ascii"))
    model = parts.model_picker.model()
    if model:
        settings.set("default_model", model)
    save_settings(settings)
