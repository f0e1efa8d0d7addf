"""The window's everyday comforts: the shortcut list under Help, shortcut
hints in tooltips, the large live preview, a stage strip that uses its height, and DemoFusion's
knobs in plain words with the research ones under Advanced."""

from __future__ import annotations

import re

from gui_scripted import ScriptedJob, fill_ready, script
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QLabel, QWidget

RESEARCH_WORDS = re.compile(r"stride|sigma|cosine|evaluation", re.IGNORECASE)


def test_the_shortcut_list_under_help_names_every_shortcut_and_generates(make_window) -> None:
    window = make_window()
    help_menu = next(
        a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Help"
    )
    entry = next(a for a in help_menu.actions() if "shortcuts" in a.text().lower())
    entry.trigger()
    dialog = window.findChild(QWidget, "shortcuts_dialog")
    assert dialog is not None and dialog.isVisible()
    rows = dict(dialog.rows())
    assert rows["Generate"] == "Ctrl+Enter"
    assert rows["Cancel run"] == "Esc"
    assert rows["Copy image"] == "Ctrl+Shift+C"
    assert "Delete" in rows.values()  # the History's button, not only the menus
    dialog.close()


def test_the_tooltips_of_controls_with_a_shortcut_name_it(make_window) -> None:
    window = make_window()
    for name, keys in (
        ("generate", "Ctrl+Enter"),
        ("cancel", "Esc"),
        ("copy_image", "Ctrl+Shift+C"),
        ("history_delete", "Delete"),
    ):
        control = window.findChild(QWidget, name)
        assert f"({keys})" in control.toolTip(), name


def test_every_demofusion_knob_says_what_it_does_in_plain_words(make_window, qtbot) -> None:
    window = make_window()
    panel = window.demofusion
    advanced = panel.advanced
    knobs = [*panel.controls.values()]
    knobs += [
        window.findChild(QWidget, name)
        for name in ("size_choice", "width", "height", "steps", "guidance", "seed", "scheduler")
    ]
    knobs += [window.params.guidance_rescale, window.params.vae, window.params.loras]
    for knob in knobs:
        tip = knob.toolTip()
        assert len(tip) > 20, knob.objectName()
        if not advanced.isAncestorOf(knob):
            assert not RESEARCH_WORDS.search(tip), (knob.objectName(), tip)
    # the plan line and the progress bar say it plainly too
    fill_ready(window)
    assert window.params.plan.full_text() and not RESEARCH_WORDS.search(
        window.params.plan.full_text()
    )
    assert not RESEARCH_WORDS.search(window.progress.bar.toolTip())


def test_stride_sigma_and_the_cosine_scales_wait_under_advanced(make_window, qtbot) -> None:
    window = make_window()
    window.show()
    qtbot.waitExposed(window)
    panel = window.demofusion
    research = ("stride", "sigma", "cosine_scale_1", "cosine_scale_2", "cosine_scale_3")
    panel.set_expanded(True)
    for name in research:
        assert panel.advanced.isAncestorOf(panel.controls[name]), name
        assert not panel.controls[name].isVisible(), name
    assert panel.controls["jitter"].isVisible()
    shown = [w.text() for w in panel.body.findChildren(QLabel) if w.isVisible()]
    assert shown and not any(RESEARCH_WORDS.search(text) for text in shown), shown
    qtbot.mouseClick(panel.advanced_toggle, Qt.MouseButton.LeftButton)
    assert all(panel.controls[name].isVisible() for name in research)
    # values still travel whether Advanced is open or not
    panel.apply({"stride": 48, "sigma": 0.5})
    assert panel.values()["stride"] == 48 and panel.values()["sigma"] == 0.5


def test_a_mistake_in_an_advanced_field_opens_advanced_to_show_it(make_window) -> None:
    from demofusion_app.engine.request import RequestError

    window = make_window()
    window.show_error(RequestError("stride", "Stride 7 is not a multiple of 8; try 8"))
    assert window.demofusion.expanded and window.demofusion.advanced_toggle.isChecked()
    assert window.fields.message("stride").startswith("Stride 7")


def test_the_large_preview_shows_the_last_preview(make_window, qtbot) -> None:
    job = ScriptedJob(script(stages=1, steps=1))
    window = make_window(job=job)
    fill_ready(window)
    assert window.generate()
    qtbot.waitUntil(lambda: len(job.calls) == 1 and not window.controller.running, timeout=5000)
    qtbot.mouseDClick(window.progress.preview, Qt.MouseButton.LeftButton)
    large = window.progress.large_preview
    assert large is not None and large.isVisible() and large.isWindow()
    # the last image to arrive was stage 1's picture, (40, 120, 60) in the script
    assert large.image.pixelColor(0, 0) == QColor(40, 120, 60)
    assert not large.pixmap().isNull()
    large.resize(300, 200)  # resizable: the picture follows the window
    assert large.pixmap().height() == 200
    # a later preview follows into the open window
    fresh = QImage(8, 8, QImage.Format.Format_RGB888)
    fresh.fill(QColor(1, 2, 3))
    window.progress.show_preview(fresh)
    assert large.image.pixelColor(0, 0) == QColor(1, 2, 3)


def test_the_stage_thumbnails_grow_with_the_strip(make_window, qtbot) -> None:
    from demofusion_app.gui.panels.progress_panel import THUMB_SIZE

    window = make_window()
    window.resize(1600, 1000)
    window.show()
    qtbot.waitExposed(window)
    strip = window.progress.strip
    # in the window the strip takes the height beside the preview, and its thumbnails fill it
    assert strip.iconSize().height() > THUMB_SIZE
    assert strip.iconSize().height() + 2 * strip.fontMetrics().lineSpacing() >= (
        strip.viewport().height() - 24
    )
    strip.setMinimumHeight(320)
    qtbot.waitUntil(lambda: strip.height() >= 320, timeout=2000)
    assert strip.iconSize().height() > THUMB_SIZE * 2
