"""The window fits the screen it opens on: its first size, a restored geometry, and a form column
that scrolls instead of being clipped."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QMargins, QPoint, QRect, QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QScrollArea, QWidget

PREFERRED_SIZE = QSize(1560, 960)
# The title bar and borders the window manager adds around the client area, which Qt does not know
# before the window is first shown.
FRAME_MARGINS = QMargins(8, 32, 8, 8)


def available_rect(widget: QWidget) -> QRect:
    """The part of the widget's screen that windows may use (without task bars and docks)."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    if screen is None:  # no screen at all: nothing to fit
        return QRect(QPoint(0, 0), PREFERRED_SIZE.grownBy(FRAME_MARGINS))
    return screen.availableGeometry()


def fit_rect(rect: QRect, available: QRect) -> QRect:
    """Client-area `rect` shrunk and moved so that it and its frame lie inside `available`."""
    room = available.marginsRemoved(FRAME_MARGINS)
    fitted = QRect(rect.topLeft(), rect.size().boundedTo(room.size()).expandedTo(QSize(1, 1)))
    fitted.moveLeft(min(max(fitted.left(), room.left()), room.right() - fitted.width() + 1))
    fitted.moveTop(min(max(fitted.top(), room.top()), room.bottom() - fitted.height() + 1))
    return fitted


def first_rect(available: QRect) -> QRect:
    """The first geometry: the preferred size where the screen allows it, centred on the screen."""
    rect = QRect(QPoint(0, 0), PREFERRED_SIZE)
    rect.moveCenter(available.marginsRemoved(FRAME_MARGINS).center())
    return fit_rect(rect, available)


def place_first(window: QWidget) -> None:
    window.setGeometry(first_rect(available_rect(window)))


def keep_on_screen(window: QWidget) -> None:
    """After restoring a saved geometry: shrink and move the window onto the current screen (the
    saved one may come from a larger monitor)."""
    if window.isMaximized() or window.isFullScreen():
        return
    fitted = fit_rect(window.geometry(), available_rect(window))
    if fitted != window.geometry():
        window.setGeometry(fitted)


class FormScroll(QScrollArea):
    """A vertically scrolling form column whose minimum width includes the vertical scroll bar, so
    the form is never squeezed under its own minimum width (and clipped) when the bar shows."""

    def __init__(self, form: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setWidget(form)
        self._form = form

    def form_changed(self, *_args: object) -> None:
        """The form's minimum width changed (a section opened or closed): let the layouts above, and
        the splitter, ask for the new minimum.

        Connected to the sections' signals rather than watched with an event filter: a Python event
        filter on the form was called on half-destroyed objects while windows were torn down (an
        intermittent segfault in the GUI suite).
        """
        self.updateGeometry()

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        form = self._form
        if not shiboken6.isValid(form):
            return hint
        bar = self.verticalScrollBar().sizeHint().width()
        width = form.minimumSizeHint().width() + bar + 2 * self.frameWidth()
        return QSize(max(hint.width(), width), hint.height())
