"""The files the installers ship are valid: .desktop entry, shell scripts, icons and locks."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
DESKTOP_FILE = REPO / "resources" / "linux" / "demofusion-studio.desktop"
ICONS = REPO / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
SHELL_SCRIPTS = (PACKAGING / "install.sh", PACKAGING / "ci_install_check.sh")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {_APT[name]}); CI installs it")
    return path


_APT = {"desktop-file-validate": "desktop-file-utils", "shellcheck": "shellcheck"}


def test_desktop_file_passes_desktop_file_validate():
    result = subprocess.run(
        [_tool("desktop-file-validate"), str(DESKTOP_FILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""  # no hints or warnings either


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script):
    result = subprocess.run([_tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_installer_help_lists_every_option_it_parses():
    result = subprocess.run(
        ["bash", str(PACKAGING / "install.sh"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    source = (PACKAGING / "install.sh").read_text(encoding="utf-8")
    parsed = set(re.findall(r"^\s+(--[a-z-]+)\)", source, flags=re.MULTILINE))
    assert {"--prefix", "--python", "--cpu", "--cuda", "--torch-spec", "--no-desktop"} <= parsed
    assert {"--update", "--uninstall", "--purge"} <= parsed
    for option in parsed:
        assert option in result.stdout


def test_installer_rejects_unknown_options_and_a_lone_purge(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    unknown = subprocess.run(
        ["bash", str(PACKAGING / "install.sh"), "--prefix", str(tmp_path / "p"), "--frobnicate"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert unknown.returncode == 1
    assert "unknown option '--frobnicate'" in unknown.stderr
    purge = subprocess.run(
        ["bash", str(PACKAGING / "install.sh"), "--prefix", str(tmp_path / "p"), "--purge"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert purge.returncode == 1
    assert "--purge only goes with --uninstall" in purge.stderr


def test_uninstall_refuses_to_delete_a_folder_that_is_not_an_environment(tmp_path):
    prefix = tmp_path / "prefix"
    precious = prefix / "env" / "my-pictures.png"
    precious.parent.mkdir(parents=True)
    precious.write_bytes(b"not a venv")
    result = subprocess.run(
        ["bash", str(PACKAGING / "install.sh"), "--prefix", str(prefix), "--uninstall"],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "not a Python environment" in result.stderr
    assert precious.is_file()


def test_update_without_an_installation_says_what_to_do(tmp_path):
    result = subprocess.run(
        ["bash", str(PACKAGING / "install.sh"), "--prefix", str(tmp_path / "p"), "--update"],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "run without --update" in result.stderr


@pytest.mark.parametrize("size", PNG_SIZES)
def test_hicolor_png_exists_at_its_size(size):
    path = ICONS / "hicolor" / f"{size}x{size}" / "apps" / "demofusion-studio.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (size, size)
        assert image.mode == "RGBA"
        # Rounded corners: the corner pixel is transparent, the centre is opaque.
        assert image.getpixel((0, 0))[3] == 0
        assert image.getpixel((size // 2, size // 2))[3] == 255


def test_ico_holds_every_windows_size():
    with Image.open(ICONS / "demofusion-studio.ico") as ico:
        assert ico.format == "ICO"
        assert set(ico.ico.sizes()) == {(s, s) for s in ICO_SIZES}
        for size in ICO_SIZES:
            frame = ico.ico.getimage((size, size))
            assert frame.size == (size, size)


def test_svg_is_the_source_of_the_pngs(qapp):
    """The committed PNGs are what make_icons.py renders from the committed SVG.

    `qapp` first: make_icons would otherwise make a bare QGuiApplication, useless to widget tests.
    """
    sys.path.insert(0, str(PACKAGING))
    try:
        import make_icons
    finally:
        sys.path.remove(str(PACKAGING))

    data = make_icons.render_png(make_icons.SVG_PATH, 48)
    rendered = Image.open(io.BytesIO(data)).convert("RGBA")
    with Image.open(make_icons.png_path(48)) as committed:
        difference = ImageChops.difference(rendered, committed.convert("RGBA"))
    assert max(high for _low, high in difference.getextrema()) <= 2, (
        "icons are stale: run python packaging/make_icons.py"
    )


@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_lock_files_pin_everything_exactly_and_leave_torch_out(platform):
    lines = [
        line.strip()
        for line in (PACKAGING / "locks" / f"{platform}.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = {}
    for line in lines:
        match = re.fullmatch(r"([a-z0-9\-]+)==([0-9][^\s;]*)", line)
        assert match, f"not an exact pin: {line}"
        pins[match.group(1)] = match.group(2)
    assert not any(name == "torch" or name.startswith(("nvidia-", "triton")) for name in pins)
    wanted = {
        "diffusers": "0.42.1",
        "transformers": "5.24.0",
        "tokenizers": "0.23.3",
        "huggingface-hub": "2.4.0",
        "accelerate": "1.15.0",
        "safetensors": "0.8.0",
        "pillow": "13.0.0",
        "pyside6-essentials": "6.11.3",  # not 6.12.0: see tests/gui/test_qt_binding.py
        "shiboken6": "6.11.3",
        "filelock": "4.3.1",
        "compel": "2.5.1",
        "peft": "0.21.2",
    }
    for name, version in wanted.items():
        assert pins.get(name) == version, name
    assert pins["platformdirs"].startswith("4.14.")
    assert ("colorama" in pins) is (platform == "windows")


def test_powershell_installer_offers_the_same_choices():
    """No PowerShell here to run it: its parameters and paths must mirror install.sh."""
    source = (PACKAGING / "install.ps1").read_text(encoding="utf-8")
    for parameter in (
        "Prefix", "Python", "Cpu", "Cuda", "CudaIndex", "TorchSpec", "NoUv", "NoDesktop",
        "Update", "Uninstall", "Purge",
    ):  # fmt: skip
        assert re.search(rf"\[(switch|string)\]\${parameter}\b", source), parameter
    assert "locks\\windows.txt" in source
    assert "DemoFusionStudio" in source  # %LOCALAPPDATA%\DemoFusionStudio\env
    assert "CreateShortcut" in source
    assert "demofusion-studio.ico" in source or "$AppId.ico" in source
    from demofusion_app.gui.desktop.platform_integration import WINDOWS_APP_USER_MODEL_ID

    assert f'$AppUserModelId = "{WINDOWS_APP_USER_MODEL_ID}"' in source
    # Balanced braces and parentheses: a cheap guard against a broken edit.
    code = re.sub(r'@"(.|\n)*?"@', "", source)
    assert code.count("{") == code.count("}")
    assert code.count("(") == code.count(")")


def test_pyinstaller_spec_is_valid_python_and_bundles_the_resources():
    source = (PACKAGING / "demofusion-studio.spec").read_text(encoding="utf-8")
    compile(source, "demofusion-studio.spec", "exec")
    assert '(str(REPO / "resources"), "resources")' in source
    assert "copy_metadata" in source and '"torchvision"' in source
    assert (PACKAGING / "pyinstaller_entry.py").is_file()


def test_windows_double_click_wrapper_runs_the_powershell_installer():
    wrapper = (PACKAGING / "install.cmd").read_bytes()
    assert b"\r\n" in wrapper  # cmd.exe wants CRLF line ends
    assert b'-ExecutionPolicy Bypass -File "%~dp0install.ps1" %*' in wrapper


def _bare_path(tmp_path: Path, with_apt: bool) -> str:
    """A PATH with only what install.sh needs before it looks for Python: no Python, no uv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mkdir", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    if with_apt:
        # Only looked up with `command -v`; a non-interactive run must not call it.
        fake = bin_dir / "apt-get"
        fake.write_text("#!/bin/sh\necho 'apt-get must not run' >&2\nexit 99\n")
        fake.chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("with_apt", [True, False], ids=["debian", "other"])
def test_without_python_the_installer_says_which_packages_to_install(tmp_path, with_apt):
    bash = shutil.which("bash")
    result = subprocess.run(
        [bash, str(PACKAGING / "install.sh"), "--prefix", str(tmp_path / "p"), "--no-uv"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"HOME": str(tmp_path), "PATH": _bare_path(tmp_path, with_apt)},
    )
    assert result.returncode == 1
    assert "no Python 3.11+ with the venv module" in result.stderr
    if with_apt:
        assert "Run: sudo apt-get install -y python3.11 python3.11-venv" in result.stderr
    else:
        assert "--python /path/to/python3" in result.stderr
    assert "must not run" not in result.stderr
    assert not (tmp_path / "p" / "env").exists()
