"""Run progress on the taskbar or dock icon, where the platform offers it.

Linux: the LauncherEntry D-Bus signal (`com.canonical.Unity.LauncherEntry`) that KDE Plasma's task manager,
Ubuntu's dock, Dash to Dock and Plank read, addressed to our `.desktop` file. Windows: `ITaskbarList3`'s
progress bar on the window's taskbar button. Elsewhere, and whenever the platform says no, it does nothing:
progress on the icon is a courtesy, never a reason for a run to fail.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from PySide6.QtWidgets import QWidget

log = logging.getLogger(__name__)

DESKTOP_ID = "demofusion-studio.desktop"
LAUNCHER_PATH = "/com/demofusion/studio/launcher"
LAUNCHER_INTERFACE = "com.canonical.Unity.LauncherEntry"


def launcher_update(fraction: float | None, desktop_id: str = DESKTOP_ID) -> Any:
    """The LauncherEntry `Update` signal: progress in [0, 1] shown, or hidden when `fraction` is None."""
    from PySide6.QtDBus import QDBusMessage

    message = QDBusMessage.createSignal(LAUNCHER_PATH, LAUNCHER_INTERFACE, "Update")
    properties: dict[str, Any] = {"progress-visible": fraction is not None}
    if fraction is not None:
        properties["progress"] = min(1.0, max(0.0, float(fraction)))
    message.setArguments([f"application://{desktop_id}", properties])
    return message


class _WindowsTaskbar:
    """ITaskbarList3 through ctypes: SetProgressState / SetProgressValue on one window's button."""

    CLSID_TASKBAR_LIST = "{56FDF344-FD6D-11d0-958A-006097C9A090}"
    IID_ITASKBAR_LIST3 = "{EA1AFB91-9E28-4B86-90E9-9E9F8A5EEFAF}"
    HR_INIT, SET_PROGRESS_VALUE, SET_PROGRESS_STATE = 3, 9, 10  # vtable slots
    TBPF_NOPROGRESS, TBPF_NORMAL = 0, 2

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self.ctypes, self.wintypes = ctypes, wintypes
        ole32 = ctypes.OleDLL("ole32")
        ole32.CoInitialize(None)
        clsid, iid = self._guid(self.CLSID_TASKBAR_LIST), self._guid(self.IID_ITASKBAR_LIST3)
        self.obj = ctypes.c_void_p()
        ole32.CoCreateInstance(
            ctypes.byref(clsid), None, 1, ctypes.byref(iid), ctypes.byref(self.obj)
        )
        self._call(self.HR_INIT, [])

    def _guid(self, text: str) -> Any:
        ctypes = self.ctypes

        class GUID(ctypes.Structure):
            _fields_ = (("data", ctypes.c_byte * 16),)

        guid = GUID()
        ctypes.OleDLL("ole32").CLSIDFromString(ctypes.c_wchar_p(text), ctypes.byref(guid))
        return guid

    def _call(self, slot: int, args: list[tuple[Any, Any]]) -> None:
        ctypes = self.ctypes
        vtable = ctypes.cast(
            ctypes.c_void_p.from_address(self.obj.value).value, ctypes.POINTER(ctypes.c_void_p)
        )
        prototype = ctypes.WINFUNCTYPE(ctypes.HRESULT, ctypes.c_void_p, *[t for t, _ in args])
        prototype(vtable[slot])(self.obj, *[v for _, v in args])

    def show(self, hwnd: int, fraction: float | None) -> None:
        handle = (self.wintypes.HWND, hwnd)
        if fraction is None:
            self._call(self.SET_PROGRESS_STATE, [handle, (self.ctypes.c_int, self.TBPF_NOPROGRESS)])
            return
        self._call(self.SET_PROGRESS_STATE, [handle, (self.ctypes.c_int, self.TBPF_NORMAL)])
        done = round(min(1.0, max(0.0, fraction)) * 1000)
        ulong = self.ctypes.c_ulonglong
        self._call(self.SET_PROGRESS_VALUE, [handle, (ulong, done), (ulong, 1000)])


class TaskbarProgress:
    """Shows a run's progress on the app's taskbar button or dock icon (see the module docstring)."""

    def __init__(self, window: QWidget, desktop_id: str = DESKTOP_ID) -> None:
        self._window = window
        self._desktop_id = desktop_id
        self._windows: _WindowsTaskbar | None = None
        self._failed = False
        self.last: float | None = None

    def set(self, fraction: float) -> None:
        self._show(fraction)

    def clear(self) -> None:
        self._show(None)

    def _show(self, fraction: float | None) -> None:
        self.last = fraction
        if self._failed:
            return
        try:
            if sys.platform == "win32":
                if self._windows is None:
                    self._windows = _WindowsTaskbar()
                self._windows.show(int(self._window.winId()), fraction)
            elif sys.platform.startswith("linux"):
                from PySide6.QtDBus import QDBusConnection

                bus = QDBusConnection.sessionBus()
                if bus.isConnected():
                    bus.send(launcher_update(fraction, self._desktop_id))
        except Exception as exc:  # a desktop without the API: stop trying, keep running
            self._failed = True
            log.info("taskbar progress unavailable: %s", exc)
