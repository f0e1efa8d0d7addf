"""Progress of a run: stage k of S, step i of N, the UNet-evaluation bar, elapsed and ETA, the live
preview (double-click it to see it large) and a strip of stage thumbnails (click one to see it
large) whose size follows the strip's height."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFontMetrics, QIcon, QImage, QMouseEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QWidget,
)

from .fields import name_control

PREVIEW_SIZE = 180
PREVIEW_EMPTY = "Live preview"
PREVIEW_LOADING = "Loading…"
READY = "Ready: write a prompt and press Generate, or drop a picture here to upscale it."
THUMB_SIZE = 96  # the smallest thumbnail; a taller strip shows them larger
THUMB_MAX = 256  # thumbnails are made this large, so a tall strip shows them sharp
LARGE_PREVIEW_SIZE = (720, 720)
STATUS_LINES = 2


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Time left if the rest goes at the pace so far; None before anything is done."""
    if done <= 0 or total <= 0:
        return None
    return elapsed * max(0, total - done) / done


class StatusLabel(QLabel):
    """The run's status line, wrapped: unwrapped, the longest text would set the window's minimum
    width (about 1180 px with READY). Always `STATUS_LINES` high, so the bar and the strip do not
    move as the text changes; a text longer than that is whole in the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        metrics = self.fontMetrics()
        self.setFixedHeight(STATUS_LINES * metrics.lineSpacing())
        self.setMinimumWidth(_wrap_width(metrics, READY, STATUS_LINES))
        self.setText(text)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)


def _wrap_width(metrics: QFontMetrics, text: str, lines: int) -> int:
    """The narrowest width (to 8 px) at which `text` wraps into at most `lines` lines."""
    width = metrics.horizontalAdvance(text) // lines
    flags = int(Qt.TextFlag.TextWordWrap)
    while metrics.boundingRect(QRect(0, 0, width, 10_000), flags, text).height() > (
        lines * metrics.lineSpacing()
    ):
        width += 8
    return width


class PreviewLabel(QLabel):
    """The live preview; a double-click asks for it large."""

    double_clicked = Signal()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.double_clicked.emit()
        super().mouseDoubleClickEvent(event)


class LargePreview(QLabel):
    """The live preview in a resizable window of its own: the picture fits the window as it is
    resized and follows the run while it is open."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("large_preview")
        self.setWindowTitle("Live preview")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 160)
        self.setStyleSheet("background: #202020; color: #bbbbbb;")
        self.image = QImage()
        self.resize(*LARGE_PREVIEW_SIZE)

    def set_image(self, image: QImage) -> None:
        self.image = image
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self.image.isNull():
            self.setText(PREVIEW_EMPTY)
            return
        self.setPixmap(
            QPixmap.fromImage(self.image).scaled(
                self.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )


class StageStrip(QListWidget):
    """The finished stages side by side; the thumbnails fill the strip's height."""

    def sizeHint(self) -> QSize:
        # Ask for no more than the smallest thumbnails need: the picture area keeps the height;
        # the strip (and its thumbnails) grow only when the window has height to spare.
        return QSize(super().sizeHint().width(), self.minimumHeight())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        # room for the name under the icon and the item's own margins
        text = self.fontMetrics().lineSpacing() + 2 * self.spacing() + 16
        side = max(THUMB_SIZE, min(THUMB_MAX, self.viewport().height() - text))
        if side != self.iconSize().height():
            self.setIconSize(QSize(side, side))


class ProgressPanel(QWidget):
    """Shows one run at a time; `thumbnail_clicked` carries the stage's name (e.g. "Stage 2")."""

    thumbnail_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.bar = name_control(QProgressBar(), "progress", "How much of the whole run is done")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.status = name_control(StatusLabel(READY), "status")
        self.times = name_control(QLabel(""), "times")
        self.preview = name_control(
            PreviewLabel(),
            "live_preview",
            "What the picture looks like so far; double-click to see it large",
        )
        self.preview.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("background: #3a3a3a; color: #bbbbbb; border-radius: 4px;")
        self.preview.setText(PREVIEW_EMPTY)
        self.strip = name_control(
            StageStrip(), "stage_strip", "Each finished stage; click one to see it large"
        )
        self.strip.setViewMode(QListView.ViewMode.IconMode)
        self.strip.setFlow(QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.strip.setMinimumHeight(THUMB_SIZE + 40)
        self.strip.setMovement(QListView.Movement.Static)
        grid.addWidget(self.preview, 0, 0, 4, 1)
        grid.addWidget(self.status, 0, 1)
        grid.addWidget(self.bar, 1, 1)
        grid.addWidget(self.times, 2, 1)
        grid.addWidget(self.strip, 3, 1)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(3, 1)  # the strip takes what the preview's height leaves
        self.last_preview = QImage()  # the newest preview as sent (QImage: any thread may make it)
        self.large_preview: LargePreview | None = None
        self.preview.double_clicked.connect(self.show_large_preview)
        self.strip.itemClicked.connect(lambda item: self.thumbnail_clicked.emit(item.text()))
        self._started: float | None = None
        self._done = 0
        self._total = 0
        self._ticker = QTimer(self)
        self._ticker.setInterval(500)
        self._ticker.timeout.connect(self._update_times)

    # A run ---------------------------------------------------------------------------------------
    def start(self, total_evaluations: int, description: str) -> None:
        self.strip.clear()
        self.preview.clear()
        self.preview.setText(PREVIEW_LOADING)
        self.last_preview = QImage()
        if self.large_preview is not None and self.large_preview.isVisible():
            self.large_preview.set_image(self.last_preview)
        self._started = time.monotonic()
        self._done, self._total = 0, max(1, total_evaluations)
        self.bar.setRange(0, self._total)
        self.bar.setValue(0)
        self.status.setText(f"Starting: {description}")
        self.times.setText("Loading the model…")
        self._ticker.start()

    def stage_started(self, stage: int, stages: int, width: int, height: int) -> None:
        self.status.setText(f"Stage {stage} of {stages} ({width} x {height})")

    def step(self, stage: int, stages: int, step: int, steps: int, done: int, total: int) -> None:
        self._done, self._total = done, max(1, total)
        self.bar.setRange(0, self._total)
        self.bar.setValue(min(done, self._total))
        self.status.setText(f"Stage {stage} of {stages} · step {step} of {steps}")
        self._update_times()

    def show_large_preview(self) -> LargePreview:
        """The last preview in a resizable window of its own (made once, raised again)."""
        if self.large_preview is None:
            self.large_preview = LargePreview(self)
        self.large_preview.set_image(self.last_preview)
        self.large_preview.show()
        self.large_preview.raise_()
        return self.large_preview

    def show_preview(self, image: QImage) -> None:
        self.last_preview = image
        if self.large_preview is not None and self.large_preview.isVisible():
            self.large_preview.set_image(image)
        pixmap = QPixmap.fromImage(image).scaled(
            PREVIEW_SIZE,
            PREVIEW_SIZE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.preview.setPixmap(pixmap)

    def show_window_prompts(self, windows: Any) -> None:
        """AccDiffusion: the next stage's windows and their prompts drawn over the preview now shown (the
        stage-1 picture); `windows` is an `engine.events.StageWindows`. The prompts stay in the tooltip."""
        from PySide6.QtGui import QColor, QFont, QPainter, QPen

        lines = [f"{i + 1}: {p or '(empty)'}" for i, p in enumerate(windows.prompts)]
        self.preview.setToolTip(
            "Window prompts of stage {}:\n{}".format(windows.stage, "\n".join(lines))
        )
        pixmap = self.preview.pixmap()
        if pixmap.isNull():
            return
        pixmap = pixmap.copy()
        sx = pixmap.width() / windows.latent_width
        sy = pixmap.height() / windows.latent_height
        painter = QPainter(pixmap)
        font = QFont(painter.font())
        font.setPointSizeF(6.5)
        painter.setFont(font)
        for i, ((top, left, height, width), prompt) in enumerate(
            zip(windows.boxes, windows.prompts, strict=True)
        ):
            rect = QRect(round(left * sx), round(top * sy), round(width * sx), round(height * sy))
            painter.setPen(QPen(QColor(255, 200, 0, 200), 1))
            painter.drawRect(rect.adjusted(0, 0, -1, -1))
            painter.setPen(QColor(255, 255, 255))
            flags = (
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap
            )
            painter.drawText(rect.adjusted(2, 2, -2, -2), flags, f"{i + 1} {prompt}")
        painter.end()
        self.preview.setPixmap(pixmap)

    def add_stage(self, name: str, image: QImage | None, path: str | None) -> None:
        item = QListWidgetItem(name)
        if image is not None:
            thumb = QPixmap.fromImage(image).scaled(
                THUMB_MAX,
                THUMB_MAX,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            item.setIcon(QIcon(thumb))
            self.show_preview(image)
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setToolTip(path or name)
        self.strip.addItem(item)

    def finish(self, text: str) -> None:
        self._ticker.stop()
        self.bar.setValue(self.bar.maximum())
        self.status.setText(text)
        self._update_times(final=True)

    def stop(self, text: str) -> None:
        """A run ended without finishing (cancelled or failed)."""
        self._ticker.stop()
        if self.preview.pixmap().isNull():  # nothing came: "Loading…" would wait forever
            self.preview.clear()
            self.preview.setText(PREVIEW_EMPTY)
        self.status.setText(text)
        self._update_times(final=True)

    def elapsed(self) -> float:
        return 0.0 if self._started is None else time.monotonic() - self._started

    def _update_times(self, final: bool = False) -> None:
        if self._started is None:
            return
        elapsed = self.elapsed()
        text = f"Elapsed {format_seconds(elapsed)}"
        left = None if final else eta_seconds(elapsed, self._done, self._total)
        if left is not None:
            text += f" · about {format_seconds(left)} left"
        self.times.setText(text)
