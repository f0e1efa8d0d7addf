"""Tell the person a run has finished when the window is not in front."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget


class Notifier:
    """A tray message where the desktop has a tray, else the taskbar's attention hint."""

    def __init__(self, window: QWidget) -> None:
        self._window = window
        self._tray: QSystemTrayIcon | None = None
        self.last: tuple[str, str] | None = None

    def notify(self, title: str, text: str) -> bool:
        """Notify unless the window is active; True when a notification was given."""
        if self._window.isActiveWindow():
            return False
        self.last = (title, text)
        if QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages():
            if self._tray is None:
                self._tray = QSystemTrayIcon(self._window.windowIcon(), self._window)
            self._tray.show()
            self._tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, 8000)
        else:
            QApplication.alert(self._window)
        return True
