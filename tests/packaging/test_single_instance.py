"""A second launch hands its files to the running instance over a local socket."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path

import pytest

from demofusion_app.gui.desktop.single_instance import (
    SingleInstance,
    SingleInstanceError,
    decode_message,
    default_server_name,
    encode_message,
    forward_or_listen,
    stale_socket_path,
)


@pytest.fixture
def name() -> str:
    """A fresh server name per test, so tests never meet each other or a real running app."""
    return f"dfs-test-{uuid.uuid4().hex[:12]}"


def test_second_instance_forwards_paths_and_first_emits_them(qtbot, name, tmp_path):
    first = SingleInstance(name)
    assert not first.try_forward(["nobody-listens.png"])
    first.listen()
    try:
        second = SingleInstance(name)
        picture = tmp_path / "dropped picture.png"
        with qtbot.waitSignal(first.filesReceived, timeout=5000) as blocker:
            assert second.try_forward([picture, "relative.webp"])
        assert blocker.args == [[str(picture), os.path.abspath("relative.webp")]]
    finally:
        first.close()


def test_forward_without_files_asks_the_window_to_come_forward(qtbot, name):
    first = SingleInstance(name)
    first.listen()
    try:
        with qtbot.waitSignal(first.filesReceived, timeout=5000) as blocker:
            assert SingleInstance(name).try_forward([])
        assert blocker.args == [[]]
    finally:
        first.close()


def test_several_launches_in_a_row_are_all_received(qtbot, name):
    first = SingleInstance(name)
    first.listen()
    received: list[list[str]] = []
    first.filesReceived.connect(received.append)
    try:
        for i in range(3):
            assert SingleInstance(name).try_forward([f"/pictures/{i}.png"])
        qtbot.waitUntil(lambda: len(received) == 3, timeout=5000)
        assert sorted(received) == [[f"/pictures/{i}.png"] for i in range(3)]
    finally:
        first.close()


def test_after_close_the_next_launch_becomes_the_running_instance(name):
    first = SingleInstance(name)
    first.listen()
    first.close()
    second = SingleInstance(name)
    assert not second.try_forward(["a.png"])
    second.listen()
    assert second.is_listening
    second.close()


def test_listening_twice_on_a_live_name_is_refused(name):
    first = SingleInstance(name)
    first.listen()
    try:
        with pytest.raises(SingleInstanceError, match="already running"):
            SingleInstance(name).listen()
        assert first.is_listening
    finally:
        first.close()


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes leave no file behind on Windows")
def test_stale_socket_file_from_a_crash_is_recovered(qtbot, name):
    path = stale_socket_path(name)
    assert path is not None
    # What a crashed instance leaves: a bound Unix socket file that nobody accepts on.
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(path))
    crashed.close()
    try:
        assert path.exists()
        primary = SingleInstance(name)
        assert not primary.try_forward(["x.png"])
        primary.listen()
        try:
            with qtbot.waitSignal(primary.filesReceived, timeout=5000) as blocker:
                assert SingleInstance(name).try_forward(["/pictures/after-crash.png"])
            assert blocker.args == [["/pictures/after-crash.png"]]
        finally:
            primary.close()
    finally:
        path.unlink(missing_ok=True)


def test_launch_decision_forwards_to_the_instance_of_the_same_home(qtbot, tmp_path):
    primary = forward_or_listen([], home=tmp_path / "one")
    assert primary is not None and primary.is_listening
    try:
        with qtbot.waitSignal(primary.filesReceived, timeout=5000) as blocker:
            assert forward_or_listen(["/p/a.png"], home=tmp_path / "one") is None
        assert blocker.args == [["/p/a.png"]]
        other = forward_or_listen([], home=tmp_path / "two")  # another store: its own window
        assert other is not None and other.is_listening
        other.close()
    finally:
        primary.close()


def test_server_name_depends_on_the_store_root(monkeypatch, tmp_path):
    monkeypatch.setenv("DEMOFUSION_STUDIO_HOME", str(tmp_path / "a"))
    a = default_server_name()
    monkeypatch.setenv("DEMOFUSION_STUDIO_HOME", str(tmp_path / "b"))
    b = default_server_name()
    assert a != b
    assert default_server_name(tmp_path / "a") == a  # --home gives what the variable gives
    assert a.startswith("demofusion-studio-")
    # The socket file path must fit a sockaddr_un (108 bytes) even under a longish temp folder.
    assert len(a) < 60


def test_messages_round_trip_and_foreign_data_is_ignored(tmp_path):
    picture = tmp_path / "ü picture.png"
    assert decode_message(encode_message([picture]).strip()) == [str(picture)]
    assert decode_message(b"not json") is None
    assert decode_message(b'{"paths": "one.png"}') is None
    assert decode_message(b'{"paths": [1, 2]}') is None
    assert decode_message(b"[]") is None
    assert decode_message(b'{"paths": ["' + b"a" * (1 << 20) + b'"]}') is None


def test_garbage_from_another_program_emits_nothing(qtbot, name):
    from PySide6.QtNetwork import QLocalSocket

    first = SingleInstance(name)
    first.listen()
    received: list[list[str]] = []
    first.filesReceived.connect(received.append)
    try:
        rogue = QLocalSocket()
        rogue.connectToServer(name)
        assert rogue.waitForConnected(2000)
        rogue.write(b"hello\n")
        rogue.waitForBytesWritten(2000)
        rogue.disconnectFromServer()
        # A real message after the garbage still arrives: the server is not wedged.
        with qtbot.waitSignal(first.filesReceived, timeout=5000) as blocker:
            assert SingleInstance(name).try_forward([Path("/p/ok.png")])
        assert blocker.args == [["/p/ok.png"]]
        assert received == [["/p/ok.png"]]
    finally:
        first.close()
