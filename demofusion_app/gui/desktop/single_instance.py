"""One window per user: a second launch hands its files to the running app and exits.

Opening a picture from the file manager starts `demofusion-app FILE`. A second process would load a
second model into the GPU, so the new process first tries to reach a running one over a local socket
(a Unix socket on Linux and macOS, a named pipe on Windows); if one answers, it sends the file paths
and quits.

The wire format is one line of JSON: `{"paths": ["/abs/a.png", ...]}`. An empty list means "come to
the front". The server has user-only access, and its name includes the user and the store root, so
two users, or two test runs with different homes, never meet.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QAbstractSocket, QLocalServer, QLocalSocket

from demofusion_app import APP_ID
from demofusion_app.store.paths import store_paths

MAX_MESSAGE_BYTES = 1 << 20
"""A message longer than this is dropped: thousands of paths fit, a runaway writer does not."""

log = logging.getLogger(__name__)


class SingleInstanceError(RuntimeError):
    """This process could neither reach a running instance nor become the running one."""


def _user_key() -> str:
    if hasattr(os, "getuid"):
        return str(os.getuid())
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "user"


def default_server_name(home: Path | str | None = None) -> str:
    """The per-user, per-store name of the running instance's socket.

    `home` is the store root the app was started with (`--home`), as `store_paths` takes it. Short
    on purpose: a Unix socket path (temp folder + name) must stay under about 100 bytes.
    """
    root = store_paths(home).config_dir.expanduser().resolve()
    digest = hashlib.sha256(f"{_user_key()}\0{root}".encode()).hexdigest()[:16]
    user = "".join(ch for ch in _user_key() if ch.isalnum())[:16] or "user"
    return f"{APP_ID}-{user}-{digest}"


def _absolute(path: str | os.PathLike[str]) -> str:
    """The path as the running instance must see it: absolute, since its working folder differs."""
    return os.path.abspath(os.fspath(path))


def encode_message(paths: Sequence[str | os.PathLike[str]]) -> bytes:
    """One JSON line carrying the absolute paths."""
    return (json.dumps({"paths": [_absolute(p) for p in paths]}) + "\n").encode("utf-8")


def decode_message(data: bytes) -> list[str] | None:
    """The paths in one message, or None if it is not ours (bad JSON, wrong shape, too long)."""
    if len(data) > MAX_MESSAGE_BYTES:
        return None
    try:
        message = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and bad JSON; RecursionError a deeply nested one ("[[[[...").
        # Anyone on this machine running as this user can write here: never let it raise.
        return None
    if not isinstance(message, dict):
        return None
    paths = message.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return None
    return list(paths)


class SingleInstance(QObject):
    """The handshake between a new launch and the running app.

    ```
    instance = SingleInstance()
    if instance.try_forward(sys.argv[1:]):
        return 0                      # the running window has the files now
    instance.listen()
    instance.filesReceived.connect(window.open_files)
    ```
    """

    # list[str] of absolute paths; an empty list: bring the window to the front
    filesReceived = Signal(list)

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._name = name or default_server_name()
        self._server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytearray] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def is_listening(self) -> bool:
        return self._server is not None and self._server.isListening()

    def try_forward(
        self, paths: Sequence[str | os.PathLike[str]] = (), timeout_ms: int = 2000
    ) -> bool:
        """Send `paths` to a running instance; True if one took them (this process should exit)."""
        socket = QLocalSocket()
        socket.connectToServer(self._name)
        if not socket.waitForConnected(timeout_ms):
            return False
        payload = encode_message(paths)
        sent = socket.write(payload) == len(payload)
        if sent and socket.bytesToWrite() > 0:
            sent = socket.waitForBytesWritten(timeout_ms)
        socket.disconnectFromServer()
        if socket.state() != QLocalSocket.LocalSocketState.UnconnectedState:
            socket.waitForDisconnected(timeout_ms)
        return sent

    def listen(self) -> None:
        """Become the running instance; clear a socket left behind by a crashed one.

        Raises SingleInstanceError if another live instance holds the name (call `try_forward`
        first) or the socket cannot be created.
        """
        if self.is_listening:
            return
        # Ask first: with user-only access Qt binds in a private folder and renames the socket into
        # place, which would silently take the name from a live instance.
        if self._someone_answers():
            raise SingleInstanceError(
                "DemoFusion Studio is already running for this user; use its window, or close it "
                "first."
            )
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self._name):
            if server.serverError() != QAbstractSocket.SocketError.AddressInUseError:
                raise SingleInstanceError(
                    f"Could not open the app's local socket {self._name!r}: "
                    f"{server.errorString()}. Check that the temporary folder is writable."
                )
            # Nobody answered at that name: a crashed instance left its socket file behind.
            QLocalServer.removeServer(self._name)
            if not server.listen(self._name):
                raise SingleInstanceError(
                    f"Could not take over the app's local socket {self._name!r}: "
                    f"{server.errorString()}. Delete it from the temporary folder and start again."
                )
        server.newConnection.connect(self._accept)
        self._server = server

    def close(self) -> None:
        """Stop listening and remove the socket, so the next launch becomes the running instance."""
        if self._server is not None:
            self._server.close()
            self._server.deleteLater()
            self._server = None

    def _someone_answers(self) -> bool:
        probe = QLocalSocket()
        probe.connectToServer(self._name)
        answered = probe.waitForConnected(500)
        if answered:
            probe.abort()
        return answered

    def _accept(self) -> None:
        assert self._server is not None
        while self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            if socket is None:
                break
            self._buffers[socket] = bytearray()
            # Qt would otherwise buffer whatever the writer sends; one byte over the cap is enough
            # to know the message is too long.
            socket.setReadBufferSize(MAX_MESSAGE_BYTES + 1)
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(lambda s=socket: self._finish(s))
            self._read(socket)
            if socket.state() == QLocalSocket.LocalSocketState.UnconnectedState:
                self._finish(socket)

    @staticmethod
    def _take(socket: QLocalSocket, buffer: bytearray) -> None:
        """Move what has arrived into `buffer`, never past one byte over the size cap."""
        room = MAX_MESSAGE_BYTES + 1 - len(buffer)
        if room > 0:
            buffer.extend(bytes(socket.read(room).data()))

    def _read(self, socket: QLocalSocket) -> None:
        buffer = self._buffers.get(socket)
        if buffer is None:
            return
        self._take(socket, buffer)
        newline = buffer.find(b"\n")
        if newline >= 0:
            self._deliver(bytes(buffer[:newline]))
            self._drop(socket)
        elif len(buffer) > MAX_MESSAGE_BYTES:
            log.warning(
                "Ignored a message from another launch: longer than %d bytes.", MAX_MESSAGE_BYTES
            )
            self._drop(socket)

    def _finish(self, socket: QLocalSocket) -> None:
        buffer = self._buffers.get(socket)
        if buffer is None:
            return
        self._take(socket, buffer)
        if buffer.strip():
            self._deliver(bytes(buffer))
        self._drop(socket)

    def _drop(self, socket: QLocalSocket) -> None:
        self._buffers.pop(socket, None)
        # Cut the signals first: the socket's destructor emits `disconnected`, and a handler running
        # on a half-destroyed socket crashes the process.
        socket.readyRead.disconnect()
        socket.disconnected.disconnect()
        socket.abort()
        socket.deleteLater()

    def _deliver(self, data: bytes) -> None:
        paths = decode_message(data)
        if paths is None:
            log.warning(
                "Ignored a message from another launch (%d bytes): not a list of file paths.",
                len(data),
            )
            return
        self.filesReceived.emit(paths)


def forward_or_listen(
    paths: Sequence[str | os.PathLike[str]], home: Path | str | None = None
) -> SingleInstance | None:
    """The launch-time decision in one call: None if a running app took `paths` (exit now), else
    the listening instance this process now is. Raises SingleInstanceError as `listen` does."""
    instance = SingleInstance(default_server_name(home))
    if instance.try_forward(paths):
        return None
    instance.listen()
    return instance


def stale_socket_path(name: str) -> Path | None:
    """Where QLocalServer keeps the socket file for `name` (None on Windows: named pipes)."""
    if sys.platform == "win32":
        return None
    from PySide6.QtCore import QDir

    return Path(QDir.tempPath()) / name
