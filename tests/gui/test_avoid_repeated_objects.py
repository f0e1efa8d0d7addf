"""The DemoFusion settings' "Avoid repeated objects": AccDiffusion's two parts, from and to presets."""

from __future__ import annotations

from typing import Any

from demofusion_app.engine.request import Request
from demofusion_app.gui.panels.demofusion_panel import DemoFusionPanel
from demofusion_app.gui.panels.fields import FieldRegistry


def test_avoid_repeated_objects_sets_both_parts_and_keeps_a_presets_threshold(qtbot: Any) -> None:
    panel = DemoFusionPanel(FieldRegistry())
    qtbot.addWidget(panel)
    values = panel.values()
    assert values["patch_prompts"] is None and values["window_interaction"] is False
    check = panel.controls["patch_prompts"]
    assert check.text() == "Avoid repeated objects"
    check.setChecked(True)
    values = panel.values()
    assert values["patch_prompts"] == 0.3 and values["window_interaction"] is True
    request = Request.from_dict({"prompt": "x", "width": 256, "height": 256, **values})
    assert request.patch_prompts == 0.3 and request.window_interaction
    panel.apply({"patch_prompts": 0.45})
    assert check.isChecked() and panel.values()["patch_prompts"] == 0.45
    panel.apply({"patch_prompts": None, "window_interaction": False})
    assert not check.isChecked() and panel.values()["patch_prompts"] is None


def test_window_prompts_are_drawn_over_the_stage_one_preview(qtbot: Any) -> None:
    import numpy as np
    from PySide6.QtGui import QColor, QImage

    from demofusion_app.engine.events import PatchPrompts, StageWindows
    from demofusion_app.gui.panels.progress_panel import ProgressPanel
    from demofusion_app.gui.run.messages import RunEvent, message_for

    windows = StageWindows(2, 32, 32, ((0, 0, 16, 16), (16, 16, 16, 16)), ("cat", ""))
    event = PatchPrompts(("cat",), np.zeros((1, 4, 4), dtype=bool), (windows,), True)
    assert message_for(event).event is RunEvent.PATCH_PROMPTS
    panel = ProgressPanel()
    qtbot.addWidget(panel)
    image = QImage(64, 64, QImage.Format.Format_RGB32)
    image.fill(QColor(0, 0, 0))
    panel.show_preview(image)
    before = panel.preview.pixmap().toImage()
    panel.show_window_prompts(windows)
    after = panel.preview.pixmap().toImage()
    assert after != before and after.pixelColor(0, 0) != QColor(0, 0, 0)  # the first window's frame
    assert panel.preview.toolTip() == "Window prompts of stage 2:\n1: cat\n2: (empty)"
