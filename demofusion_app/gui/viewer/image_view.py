"""One zoomable, pannable QGraphicsView of a tiled image: the building block of the comparison viewer.

Wheel zoom about the cursor, drag to pan, fixed zooms on 1/2/4, smooth filtering below 100% and nearest
above; the arithmetic lives in `compare.py`, the tiles in `tiles.py`.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from demofusion_app.gui.viewer.compare import (
    ViewState,
    clamp_zoom,
    fit_zoom,
    smooth_for_zoom,
    wheel_zoom,
    wipe_fraction,
    wipe_geometry,
    zoom_about,
)
from demofusion_app.gui.viewer.tiles import ImageLayer
from demofusion_app.gui.viewer.viewer_export import (
    BACKGROUND,
)

EMPTY_TEXT = "Your picture will appear here."

HANDLE_GRAB_PX = 8
"""How near (view pixels) to the wipe divider a press grabs it instead of panning."""

_ZOOM_KEYS = {Qt.Key.Key_1: 1.0, Qt.Key.Key_2: 2.0, Qt.Key.Key_4: 4.0}


class ImageView(QGraphicsView):
    """One view of the comparison scene: zoom about the cursor, hand-drag pan, fit, wipe divider.

    Emits `stateChanged` whenever its region (center or zoom) changes and `holdChanged(bool)` while
    the right mouse button or the space key is held.
    """

    stateChanged = Signal()
    holdChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(BACKGROUND)
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        # Panning is by hand drag; without scroll bars the viewport keeps one size at every zoom.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # `set_zoom` anchors zoom itself (exact under the cursor, testable without a mouse), and
        # `resizeEvent` keeps the region.
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.PreventContextMenu)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.geometry_size: tuple[int, int] = (0, 0)
        self.fit_mode = True
        self.wipe_on = False
        self.wipe_fraction = 0.5
        self.captions: tuple[str, str] = ("", "")
        self.empty_text = ""
        self._dragging_divider = False
        self._quiet = 0
        self._wanted = ViewState(0.0, 0.0, 1.0, fit=True)
        self.scene().setSceneRect(QRectF(0, 0, 1, 1))

    # ----- region ---------------------------------------------------------------------------------

    def zoom(self) -> float:
        """Screen pixels per scene pixel."""
        return self.transform().m11()

    def _to_scene(self, point: QPointF) -> QPointF:
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(point)

    def _viewport_center(self) -> QPointF:
        vp = self.viewport()
        return QPointF(vp.width() / 2.0, vp.height() / 2.0)

    def state(self) -> ViewState:
        """The region shown now."""
        center = self._to_scene(self._viewport_center())
        return ViewState(center.x(), center.y(), self.zoom(), self.fit_mode)

    def visible_scene_rect(self) -> tuple[float, float, float, float]:
        """The scene rect (x, y, w, h) the viewport covers."""
        vp = self.viewport()
        top_left = self._to_scene(QPointF(0, 0))
        zoom = self.zoom()
        return (top_left.x(), top_left.y(), vp.width() / zoom, vp.height() / zoom)

    def set_geometry(self, size: tuple[int, int]) -> None:
        """Make the scene `size` (w, h) pixels: the comparison geometry."""
        self.geometry_size = size
        self.scene().setSceneRect(QRectF(0, 0, max(1, size[0]), max(1, size[1])))

    def apply_state(self, state: ViewState) -> None:
        """Show the region `state` describes (fit: the whole scene in this viewport)."""
        self._quiet += 1
        try:
            self.fit_mode = state.fit
            if state.fit:
                w, h = self.geometry_size
                vp = self.viewport()
                zoom = fit_zoom(w, h, vp.width(), vp.height())
                center = QPointF(w / 2.0, h / 2.0)
            else:
                zoom = state.zoom
                center = QPointF(state.center_x, state.center_y)
            self.setTransform(QTransform.fromScale(zoom, zoom))
            self.centerOn(center)
            self._after_change()
        finally:
            self._quiet -= 1
        # The region asked for, kept even where this viewport cannot reach it (the scene fits in
        # it): a later resize returns to it.
        self._wanted = ViewState(center.x(), center.y(), zoom, state.fit)
        self.stateChanged.emit()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom to `zoom`; the scene point under `anchor` (view pixels; default: center) stays."""
        new = clamp_zoom(zoom)
        old_state = self.state()
        anchor = self._viewport_center() if anchor is None else anchor
        anchor_scene = self._to_scene(anchor)
        cx, cy = zoom_about(
            (old_state.center_x, old_state.center_y),
            (anchor_scene.x(), anchor_scene.y()),
            old_state.zoom,
            new,
        )
        self.apply_state(ViewState(cx, cy, new, fit=False))

    def fit(self) -> None:
        """Show the whole scene, and keep doing so when the view is resized."""
        self.apply_state(ViewState(0, 0, 1.0, fit=True))

    def _after_change(self) -> None:
        zoom = self.zoom()
        smooth = smooth_for_zoom(zoom)
        for item in self.scene().items():
            if isinstance(item, ImageLayer):
                item.update_for_zoom(zoom, smooth)
        self._update_wipe()

    # ----- wipe -----------------------------------------------------------------------------------

    def before_layer(self) -> ImageLayer | None:
        """The layer of the "before" image in this view's scene, if any."""
        for item in self.scene().items():
            if isinstance(item, ImageLayer) and item.data(0) == "before":
                return item
        return None

    def divider_x(self) -> float:
        """The wipe divider's x in view pixels."""
        return self.wipe_fraction * self.viewport().width()

    def divider_scene_x(self) -> float:
        """The wipe divider's x in scene pixels (the comparison geometry), where it cuts now."""
        left = self._to_scene(QPointF(0, 0)).x()
        return wipe_geometry(
            self.wipe_fraction, self.viewport().width(), left, self.zoom(), self.geometry_size
        ).divider_scene_x

    def set_wipe(self, on: bool, fraction: float | None = None) -> None:
        """Turn the wipe on or off, optionally moving the divider to `fraction` of the width."""
        self.wipe_on = on
        if not on:
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        if fraction is not None:
            self.wipe_fraction = min(1.0, max(0.0, fraction))
        self._update_wipe()

    def _update_wipe(self) -> None:
        layer = self.before_layer()
        if layer is not None:
            if self.wipe_on:
                left = self._to_scene(QPointF(0, 0)).x()
                geometry = wipe_geometry(
                    self.wipe_fraction,
                    self.viewport().width(),
                    left,
                    self.zoom(),
                    self.geometry_size,
                )
                layer.set_clip(geometry.before_clip)
            else:
                layer.set_clip(None)
        self.viewport().update()

    # ----- painting -------------------------------------------------------------------------------

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        painter.save()
        painter.resetTransform()
        vp = self.viewport()
        if self.wipe_on:
            x = self.divider_x()
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setPen(QPen(QColor(0, 0, 0, 140), 3))
            painter.drawLine(QPointF(x, 0), QPointF(x, vp.height()))
            painter.setPen(QPen(QColor(255, 255, 255), 1))
            painter.drawLine(QPointF(x, 0), QPointF(x, vp.height()))
            mid = vp.height() / 2.0
            painter.setBrush(QColor(255, 255, 255))
            painter.setPen(QPen(QColor(0, 0, 0, 160), 1))
            painter.drawEllipse(QPointF(x, mid), 9, 9)
            painter.setPen(QPen(QColor(40, 40, 40), 1.5))
            painter.drawLine(QPointF(x - 4, mid), QPointF(x - 1, mid - 3))
            painter.drawLine(QPointF(x - 4, mid), QPointF(x - 1, mid + 3))
            painter.drawLine(QPointF(x + 4, mid), QPointF(x + 1, mid - 3))
            painter.drawLine(QPointF(x + 4, mid), QPointF(x + 1, mid + 3))
        if self.empty_text:
            painter.setPen(QColor(187, 187, 187))
            painter.drawText(
                QRectF(0, 0, vp.width(), vp.height()), Qt.AlignmentFlag.AlignCenter, self.empty_text
            )
        self._draw_caption(painter, self.captions[0], 8, False)
        self._draw_caption(painter, self.captions[1], vp.width() - 8, True)
        painter.restore()

    def _draw_caption(self, painter: QPainter, text: str, x: float, right: bool) -> None:
        if not text:
            return
        metrics = painter.fontMetrics()
        w = metrics.horizontalAdvance(text) + 12
        h = metrics.height() + 6
        left = x - w if right else x
        painter.fillRect(QRectF(left, 8, w, h), QColor(0, 0, 0, 150))
        painter.setPen(QColor(235, 235, 235))
        painter.drawText(QPointF(left + 6, 8 + 3 + metrics.ascent()), text)

    # ----- events ---------------------------------------------------------------------------------

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        if self._quiet:
            return
        self._wanted = self.state()
        self._update_wipe()
        self.stateChanged.emit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        # Qt's own resize anchor drifts when the scene was smaller than the old viewport; go back to
        # the region last asked for instead, so showing or hiding the second view keeps the region.
        self._quiet += 1
        try:
            super().resizeEvent(event)
        finally:
            self._quiet -= 1
        self.apply_state(self._wanted)

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y()
        if delta == 0:
            event.ignore()
            return
        self.set_zoom(wheel_zoom(self.zoom(), delta), event.position())
        event.accept()

    def _near_divider(self, x: float) -> bool:
        return self.wipe_on and abs(x - self.divider_x()) <= HANDLE_GRAB_PX

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.RightButton:
            self.holdChanged.emit(True)
            event.accept()
            return
        if event.button() == Qt.MouseButton.LeftButton and self._near_divider(event.position().x()):
            self._dragging_divider = True
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        x = event.position().x()
        if self._dragging_divider:
            self.set_wipe(True, wipe_fraction(x, self.viewport().width()))
            event.accept()
            return
        if self.wipe_on and not event.buttons():
            shape = (
                Qt.CursorShape.SplitHCursor
                if self._near_divider(x)
                else Qt.CursorShape.OpenHandCursor
            )
            self.viewport().setCursor(shape)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.RightButton:
            self.holdChanged.emit(False)
            event.accept()
            return
        if self._dragging_divider and event.button() == Qt.MouseButton.LeftButton:
            self._dragging_divider = False
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self.holdChanged.emit(True)
            event.accept()
        elif key in (Qt.Key.Key_F, Qt.Key.Key_0):
            self.fit()
        elif key in _ZOOM_KEYS:
            self.set_zoom(_ZOOM_KEYS[key])
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.set_zoom(wheel_zoom(self.zoom(), 120))
        elif key == Qt.Key.Key_Minus:
            self.set_zoom(wheel_zoom(self.zoom(), -120))
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self.holdChanged.emit(False)
            event.accept()
            return
        super().keyReleaseEvent(event)
