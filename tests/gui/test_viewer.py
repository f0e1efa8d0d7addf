"""The comparison viewer as a widget: zoom, pan, the three comparisons, sync, export, a live run."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from demofusion_app.gui.viewer.compare import WHEEL_FACTOR, ViewerError
from demofusion_app.gui.viewer.image_view import ImageView
from demofusion_app.gui.viewer.tiles import ImageLayer
from demofusion_app.gui.viewer.viewer import ComparisonViewer
from demofusion_app.gui.viewer.viewer_export import GAP

RED = (220, 30, 30)
BLUE = (30, 40, 220)


def _solid(size: int, color: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (size, size), color)


@pytest.fixture
def viewer(qtbot) -> ComparisonViewer:
    widget = ComparisonViewer()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def run_viewer(viewer: ComparisonViewer) -> ComparisonViewer:
    """A finished 3-stage run: stage 1 red 64 px, stage 2 green 128 px, final blue 256 px."""
    viewer.set_images(
        [
            ("Stage 1", _solid(64, RED)),
            ("Stage 2", _solid(128, (30, 200, 30))),
            ("Final", _solid(256, BLUE)),
        ]
    )
    QApplication.processEvents()
    return viewer


def _center(view: ImageView) -> tuple[float, float]:
    state = view.state()
    return state.center_x, state.center_y


def _pixel(image: QImage, x: int, y: int) -> tuple[int, int, int]:
    color = image.pixelColor(x, y)
    return color.red(), color.green(), color.blue()


def _send_mouse(view: ImageView, kind: QEvent.Type, pos: QPointF, button, buttons) -> None:
    event = QMouseEvent(
        kind, pos, view.viewport().mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(view.viewport(), event)


def test_viewer_is_named_and_compares_first_at_the_geometry_of_the_last(
    run_viewer: ComparisonViewer,
) -> None:
    assert run_viewer.objectName() == "viewer"
    assert run_viewer.pair == ("Stage 1", "Final")
    assert run_viewer.geometry_size == (256, 256)
    before = run_viewer.primary.before_layer()
    assert before is not None and before.image.width == 64
    level = before.childItems()[0]
    tile = level.childItems()[0]
    scene_rect = tile.mapRectToScene(tile.boundingRect())
    assert (scene_rect.width(), scene_rect.height()) == pytest.approx((256, 256))
    assert [run_viewer.before_combo.itemText(i) for i in range(3)] == run_viewer.names
    assert run_viewer.after_combo.currentText() == "Final"


def test_wheel_zooms_by_one_factor_about_the_cursor(run_viewer: ComparisonViewer) -> None:
    view = run_viewer.primary
    view.set_zoom(8.0)  # the scene is larger than the view, so it can move under the cursor
    cursor = QPointF(200, 150)
    under_before = view.viewportTransform().inverted()[0].map(cursor)
    wheel = QWheelEvent(
        cursor,
        view.viewport().mapToGlobal(cursor),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), wheel)
    assert view.zoom() == pytest.approx(8.0 * WHEEL_FACTOR)
    under_after = view.viewportTransform().inverted()[0].map(cursor)
    # Scroll bars move in whole view pixels: the point stays within one screen pixel.
    assert abs(under_after.x() - under_before.x()) * view.zoom() <= 1.0
    assert abs(under_after.y() - under_before.y()) * view.zoom() <= 1.0
    assert run_viewer.zoom_label.text() == f"Zoom {round(800 * WHEEL_FACTOR)}%"


def test_keys_fit_and_set_100_200_400_percent(qtbot, run_viewer: ComparisonViewer) -> None:
    view = run_viewer.primary
    seen: list[float] = []
    run_viewer.zoomChanged.connect(seen.append)
    for key, zoom in ((Qt.Key.Key_1, 1.0), (Qt.Key.Key_2, 2.0), (Qt.Key.Key_4, 4.0)):
        qtbot.keyClick(view, key)
        assert view.zoom() == pytest.approx(zoom)
        assert not view.fit_mode
    assert run_viewer.zoom_label.text() == "Zoom 400%"
    qtbot.keyClick(view, Qt.Key.Key_F)
    assert view.fit_mode
    vp = view.viewport()
    assert view.zoom() == pytest.approx(min(vp.width(), vp.height()) / 256)
    assert run_viewer.zoom_label.text().startswith("Fit ")
    assert seen[:3] == [1.0, 2.0, 4.0]
    qtbot.keyClick(view, Qt.Key.Key_2)
    qtbot.keyClick(view, Qt.Key.Key_0)
    assert view.fit_mode


def test_filtering_is_smooth_below_100_percent_and_nearest_above(
    run_viewer: ComparisonViewer,
) -> None:
    view = run_viewer.primary
    layers = [i for i in view.scene().items() if isinstance(i, ImageLayer)]
    view.set_zoom(0.5)
    assert all(layer.smooth for layer in layers)
    view.set_zoom(3.0)
    assert not any(layer.smooth for layer in layers)


def test_drag_pans_the_view(run_viewer: ComparisonViewer) -> None:
    run_viewer.set_mode("single")
    view = run_viewer.primary
    view.set_zoom(8.0)
    x0, y0 = _center(view)
    left = Qt.MouseButton.LeftButton
    _send_mouse(view, QEvent.Type.MouseButtonPress, QPointF(300, 300), left, left)
    _send_mouse(view, QEvent.Type.MouseMove, QPointF(260, 280), Qt.MouseButton.NoButton, left)
    _send_mouse(
        view, QEvent.Type.MouseButtonRelease, QPointF(260, 280), left, Qt.MouseButton.NoButton
    )
    x1, y1 = _center(view)
    assert (x1 - x0) * 8 == pytest.approx(40, abs=1)
    assert (y1 - y0) * 8 == pytest.approx(20, abs=1)
    assert view.zoom() == 8.0


def test_wipe_shows_before_left_and_after_right_of_a_draggable_divider(
    run_viewer: ComparisonViewer,
) -> None:
    run_viewer.set_mode("wipe")
    view = run_viewer.primary
    view.set_zoom(3.0)  # 768 scene px cover the whole viewport
    vp = view.viewport()
    assert view.divider_x() == pytest.approx(vp.width() / 2)
    shot = vp.grab().toImage()
    y = vp.height() // 2
    assert _pixel(shot, vp.width() // 4, y) == RED
    assert _pixel(shot, vp.width() * 3 // 4, y) == BLUE

    left = Qt.MouseButton.LeftButton
    start = QPointF(view.divider_x() + 3, y)
    _send_mouse(view, QEvent.Type.MouseButtonPress, start, left, left)
    _send_mouse(view, QEvent.Type.MouseMove, QPointF(vp.width() * 0.25, y), left, left)
    _send_mouse(
        view,
        QEvent.Type.MouseButtonRelease,
        QPointF(vp.width() * 0.25, y),
        left,
        Qt.MouseButton.NoButton,
    )
    assert view.wipe_fraction == pytest.approx(0.25)
    before = view.before_layer()
    left_edge = view.visible_scene_rect()[0]
    assert before.boundingRect().width() == pytest.approx(left_edge + vp.width() * 0.25 / 3.0)
    shot = vp.grab().toImage()
    assert _pixel(shot, int(vp.width() * 0.2), y) == RED
    assert _pixel(shot, int(vp.width() * 0.3), y) == BLUE


def test_side_by_side_views_follow_each_other_both_ways(run_viewer: ComparisonViewer) -> None:
    run_viewer.set_mode("side_by_side")
    QApplication.processEvents()
    left, right = run_viewer.primary, run_viewer.secondary
    assert right.isVisible()
    emitted = {"left": 0, "right": 0}
    left.stateChanged.connect(lambda: emitted.__setitem__("left", emitted["left"] + 1))
    right.stateChanged.connect(lambda: emitted.__setitem__("right", emitted["right"] + 1))

    left.set_zoom(4.0)
    assert right.zoom() == 4.0
    assert _center(right) == pytest.approx(_center(left), abs=0.5)

    right.horizontalScrollBar().setValue(right.horizontalScrollBar().value() + 100)
    right.verticalScrollBar().setValue(right.verticalScrollBar().value() - 60)
    assert _center(left) == pytest.approx(_center(right), abs=0.5)

    right.set_zoom(6.0, QPointF(10, 10))
    assert left.zoom() == 6.0
    assert _center(left) == pytest.approx(_center(right), abs=0.5)
    # Each change echoes once to the other view and stops there: no feedback loop.
    assert emitted["left"] < 20 and emitted["right"] < 20
    shot_left = left.viewport().grab().toImage()
    shot_right = right.viewport().grab().toImage()
    assert _pixel(shot_left, 100, 300) == RED
    assert _pixel(shot_right, 100, 300) == BLUE


@pytest.mark.parametrize("order", [("wipe", "side_by_side", "toggle", "single", "wipe")])
def test_switching_modes_keeps_the_region(run_viewer: ComparisonViewer, order) -> None:
    view = run_viewer.primary
    run_viewer.set_mode(order[0])
    view.set_zoom(5.0)
    view.centerOn(120, 140)  # away from the edges, so that every view width can center it
    center = _center(view)
    for mode in order[1:]:
        run_viewer.set_mode(mode)
        QApplication.processEvents()
        assert run_viewer.mode == mode
        assert view.zoom() == 5.0
        assert _center(view) == pytest.approx(center, abs=1.0)
        assert run_viewer.mode_buttons[mode].isChecked()


def test_toggle_shows_before_while_space_or_right_button_is_held(
    qtbot, run_viewer: ComparisonViewer
) -> None:
    run_viewer.set_mode("toggle")
    view = run_viewer.primary
    view.set_zoom(3.0)
    vp = view.viewport()
    middle = (vp.width() // 2, vp.height() // 2)
    assert _pixel(vp.grab().toImage(), *middle) == BLUE
    qtbot.keyPress(view, Qt.Key.Key_Space)
    assert run_viewer.held
    assert _pixel(vp.grab().toImage(), *middle) == RED
    qtbot.keyRelease(view, Qt.Key.Key_Space)
    assert not run_viewer.held
    assert _pixel(vp.grab().toImage(), *middle) == BLUE

    right = Qt.MouseButton.RightButton
    _send_mouse(view, QEvent.Type.MouseButtonPress, QPointF(*middle), right, right)
    assert _pixel(vp.grab().toImage(), *middle) == RED
    _send_mouse(
        view, QEvent.Type.MouseButtonRelease, QPointF(*middle), right, Qt.MouseButton.NoButton
    )
    assert _pixel(vp.grab().toImage(), *middle) == BLUE

    run_viewer.hold_button.pressed.emit()
    assert run_viewer.held
    run_viewer.hold_button.released.emit()
    assert not run_viewer.held


def test_export_writes_the_wipe_and_side_by_side_at_full_size(
    tmp_path: Path, run_viewer: ComparisonViewer
) -> None:
    view = run_viewer.primary
    run_viewer.set_mode("wipe")
    view.set_zoom(3.0)
    split = round(view.divider_scene_x())
    path = run_viewer.export_comparison(tmp_path / "wipe")
    assert path == tmp_path / "wipe.png"
    with Image.open(path) as wipe:
        assert wipe.size == (256, 256)
        rgb = wipe.convert("RGB")
        assert rgb.getpixel((split - 1, 250)) == RED
        assert rgb.getpixel((split, 250)) == BLUE

    run_viewer.set_mode("side_by_side")
    QApplication.processEvents()
    path = run_viewer.export_comparison(tmp_path / "pair.png")
    with Image.open(path) as pair:
        assert pair.size == (256 + GAP + 256, 256)
        rgb = pair.convert("RGB")
        assert rgb.getpixel((128, 250)) == RED
        assert rgb.getpixel((256 + GAP + 128, 250)) == BLUE

    with pytest.raises(OSError, match="does not exist"):
        run_viewer.export_comparison(tmp_path / "missing" / "x.png")


def test_a_run_in_progress_adds_stages_one_by_one(viewer: ComparisonViewer) -> None:
    with pytest.raises(ViewerError, match="nothing to export"):
        viewer.export_comparison("unused.png")
    viewer.add_image("Stage 1", _solid(64, RED))
    assert viewer.pair == ("Stage 1", "Stage 1")
    assert viewer.geometry_size == (64, 64)
    viewer.set_mode("wipe")  # only one image: shown alone until a second exists
    assert not viewer.primary.wipe_on

    viewer.add_image("Stage 2", _solid(128, (30, 200, 30)))
    assert viewer.pair == ("Stage 1", "Stage 2")
    assert viewer.geometry_size == (128, 128)
    assert viewer.primary.wipe_on
    viewer.primary.set_zoom(4.0)
    viewer.primary.centerOn(40, 50)
    center = _center(viewer.primary)

    viewer.add_image("Final", QImage(256, 256, QImage.Format.Format_RGB32))
    assert viewer.pair == ("Stage 1", "Final")
    assert viewer.geometry_size == (256, 256)
    # The same picture content stays in view as the scene doubles.
    assert viewer.primary.zoom() == pytest.approx(2.0)
    assert _center(viewer.primary) == pytest.approx((center[0] * 2, center[1] * 2), abs=1.0)


def test_a_chosen_pair_stays_while_stages_arrive(viewer: ComparisonViewer) -> None:
    viewer.add_image("Stage 1", _solid(64, RED))
    viewer.add_image("Stage 2", _solid(128, RED))
    viewer.set_pair("Stage 2", "Stage 1")
    viewer.add_image("Final", _solid(256, BLUE))
    assert viewer.pair == ("Stage 2", "Stage 1")
    viewer.show_single("Final")
    assert viewer.mode == "single"
    assert viewer.current_name() == "Final"
    with pytest.raises(ViewerError, match="Stage 9"):
        viewer.show_single("Stage 9")
    with pytest.raises(ViewerError, match="Unknown viewer mode"):
        viewer.set_mode("blink")
    viewer.clear()
    assert viewer.names == []
    assert viewer.pair == (None, None)
    assert viewer.before_combo.count() == 0
