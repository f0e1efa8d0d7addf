#!/usr/bin/env bash
# DemoFusion Studio installer for Linux.
#
# Creates a private Python environment, installs the torch build that fits this machine (CUDA when an
# NVIDIA GPU answers nvidia-smi, CPU otherwise), the pinned dependencies from packaging/locks/linux.txt
# and the app from the source tree this script lives in, then adds a menu entry and icons.
# Nothing is installed system-wide and no root rights are needed.
#
#   bash packaging/install.sh                # install (or repair) for the current user
#   bash packaging/install.sh --update       # reinstall the app into the existing environment
#   bash packaging/install.sh --uninstall    # remove the environment, menu entry and icons
#   bash packaging/install.sh --help
set -euo pipefail

APP_ID="demofusion-studio"
APP_NAME="DemoFusion Studio"
COMMAND_NAME="demofusion-app"
TORCH_VERSION="2.13.0"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
CUDA_INDEX_DEFAULT="https://download.pytorch.org/whl/cu128"
ICON_SIZES=(16 24 32 48 64 128 256 512)
MIN_PYTHON_MINOR=11

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"

PREFIX="$DATA_HOME/$APP_ID"
PYTHON=""
TORCH_MODE="auto"
CUDA_INDEX="$CUDA_INDEX_DEFAULT"
TORCH_SPEC=""
USE_UV="auto"
DESKTOP=1
ACTION="install"
PURGE=0

usage() {
    cat <<EOF
Install $APP_NAME for the current user.

Usage: bash install.sh [options]

  --prefix DIR       where the private environment goes (default: $DATA_HOME/$APP_ID;
                     the environment is DIR/env)
  --python PATH      the Python (3.$MIN_PYTHON_MINOR or newer) to build the environment from
                     (default: the newest python3.x on PATH)
  --cpu              install the CPU build of torch even if an NVIDIA GPU is present
  --cuda             install the CUDA build of torch even if nvidia-smi finds no GPU
  --cuda-index URL   the wheel index for the CUDA build (default: $CUDA_INDEX_DEFAULT)
  --torch-spec SPEC  install torch with exactly these pip arguments instead, from the configured
                     package indexes (for example: --torch-spec "torch==$TORCH_VERSION")
  --no-uv            use python -m venv and pip even when uv is installed
  --no-desktop       skip the menu entry, icons and the command link in ~/.local/bin
  --update           reinstall the app (and refresh pinned dependencies) in the existing environment
  --uninstall        remove the environment, menu entry, icons and command link
  --purge            with --uninstall: also delete settings, presets, caches and logs
                     (your generated pictures are never deleted)
  -h, --help         show this help
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

need_value() {
    # $1: option name, $2: number of arguments left including the option
    if [[ "$2" -lt 2 ]]; then
        die "$1 needs a value; see --help"
    fi
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix)
            need_value "$1" "$#"
            PREFIX="$2"
            shift 2
            ;;
        --python)
            need_value "$1" "$#"
            PYTHON="$2"
            shift 2
            ;;
        --cpu)
            TORCH_MODE="cpu"
            shift
            ;;
        --cuda)
            TORCH_MODE="cuda"
            shift
            ;;
        --cuda-index)
            need_value "$1" "$#"
            CUDA_INDEX="$2"
            shift 2
            ;;
        --torch-spec)
            need_value "$1" "$#"
            TORCH_SPEC="$2"
            shift 2
            ;;
        --no-uv)
            USE_UV="no"
            shift
            ;;
        --no-desktop)
            DESKTOP=0
            shift
            ;;
        --update)
            ACTION="update"
            shift
            ;;
        --uninstall)
            ACTION="uninstall"
            shift
            ;;
        --purge)
            PURGE=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            die "unknown option '$1'; see --help"
            ;;
    esac
done

if [[ "$PURGE" -eq 1 && "$ACTION" != "uninstall" ]]; then
    die "--purge only goes with --uninstall"
fi

mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"
ENV_DIR="$PREFIX/env"
ENV_PY="$ENV_DIR/bin/python"
APP_BIN="$ENV_DIR/bin/$COMMAND_NAME"
APPS_DIR="$DATA_HOME/applications"
ICON_ROOT="$DATA_HOME/icons/hicolor"
DESKTOP_FILE="$APPS_DIR/$APP_ID.desktop"
BIN_LINK="$HOME/.local/bin/$COMMAND_NAME"
LOCK_FILE="$SCRIPT_DIR/locks/linux.txt"

# --- Python and uv ---------------------------------------------------------------------------------

python_ok() {
    # A usable base Python: new enough and able to make a venv with pip (Debian splits that off).
    "$1" -c "import sys; sys.exit(sys.version_info < (3, $MIN_PYTHON_MINOR))" 2>/dev/null \
        && "$1" -c "import venv, ensurepip" 2>/dev/null
}

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

apt_python_packages() {
    # The Debian/Ubuntu packages that give a Python 3.11+ able to make a venv: the default python3's
    # venv package when it is new enough (Debian 12, Ubuntu 24.04), else Python 3.11 (Ubuntu 22.04).
    local version
    if version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
        && python3 -c "import sys; sys.exit(sys.version_info < (3, $MIN_PYTHON_MINOR))" 2>/dev/null; then
        printf 'python%s-venv\n' "$version"
    else
        printf 'python3.11 python3.11-venv\n'
    fi
}

offer_python_packages() {
    # No usable Python: on Debian/Ubuntu offer to install one, elsewhere say what to do.
    local manual="Install Python 3.$MIN_PYTHON_MINOR or newer with its venv module, or install uv \
(https://docs.astral.sh/uv/), or pass --python /path/to/python3."
    if ! command -v apt-get >/dev/null 2>&1; then
        die "no Python 3.$MIN_PYTHON_MINOR+ with the venv module was found. $manual"
    fi
    local -a packages
    read -r -a packages <<<"$(apt_python_packages)"
    local command="sudo apt-get install -y ${packages[*]}"
    if [[ ! -t 0 ]]; then
        die "no Python 3.$MIN_PYTHON_MINOR+ with the venv module was found. Run: $command"
    fi
    local answer
    read -r -p "Python's venv support is missing. Run '$command' now? [Y/n] " answer
    if [[ "$answer" =~ ^[Nn] ]]; then
        die "no Python 3.$MIN_PYTHON_MINOR+ with the venv module. $manual"
    fi
    if [[ "$(id -u)" -eq 0 ]]; then
        apt-get install -y "${packages[@]}"
    else
        sudo apt-get install -y "${packages[@]}"
    fi
}

have_uv() {
    [[ "$USE_UV" != "no" ]] && command -v uv >/dev/null 2>&1
}

# pip_install ARGS...: install into the private environment with uv or pip.
pip_install() {
    if have_uv; then
        uv pip install --python "$ENV_PY" "$@"
    else
        "$ENV_PY" -m pip install --disable-pip-version-check "$@"
    fi
}

create_env() {
    if [[ -x "$ENV_PY" ]]; then
        say "Reusing the environment in $ENV_DIR"
        return
    fi
    if have_uv; then
        # uv can fetch a suitable Python itself when the system has none.
        local request="${PYTHON:-3.12}"
        say "Creating the environment with uv (Python $request) in $ENV_DIR"
        uv venv --python "$request" "$ENV_DIR"
        return
    fi
    if [[ -z "$PYTHON" ]]; then
        if ! PYTHON="$(find_python)"; then
            offer_python_packages
            PYTHON="$(find_python)" || die "still no Python 3.$MIN_PYTHON_MINOR+ with venv."
        fi
    elif ! python_ok "$PYTHON"; then
        die "$PYTHON is not Python 3.$MIN_PYTHON_MINOR+ with the venv module \
(Debian/Ubuntu: sudo apt install python3-venv); pass another with --python."
    fi
    say "Creating the environment with $PYTHON in $ENV_DIR"
    "$PYTHON" -m venv "$ENV_DIR"
}

# --- torch ---------------------------------------------------------------------------------------

detect_gpu() {
    # Prints the first NVIDIA GPU's name and succeeds when the driver answers.
    command -v nvidia-smi >/dev/null 2>&1 || return 1
    local name
    name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)" || return 1
    [[ -n "$name" ]] || return 1
    printf '%s\n' "$name"
}

install_torch() {
    if [[ -n "$TORCH_SPEC" ]]; then
        local -a spec
        read -r -a spec <<<"$TORCH_SPEC"
        say "Installing torch as asked: ${spec[*]}"
        pip_install "${spec[@]}"
        return
    fi
    local mode="$TORCH_MODE" gpu=""
    if [[ "$mode" == "auto" ]]; then
        if gpu="$(detect_gpu)"; then
            mode="cuda"
            say "Found an NVIDIA GPU: $gpu"
        else
            mode="cpu"
            say "No NVIDIA GPU answered nvidia-smi; installing the CPU build (slow: minutes per image)"
        fi
    fi
    if [[ "$mode" == "cuda" ]]; then
        say "Installing torch $TORCH_VERSION with CUDA from $CUDA_INDEX (about 3 GB)"
        pip_install "torch==$TORCH_VERSION" --index-url "$CUDA_INDEX"
    else
        say "Installing torch $TORCH_VERSION, CPU build"
        pip_install "torch==$TORCH_VERSION" --index-url "$CPU_INDEX"
    fi
}

# --- the app ---------------------------------------------------------------------------------------

install_dependencies() {
    [[ -f "$LOCK_FILE" ]] || die "the lock file $LOCK_FILE is missing; get a complete copy of the app."
    say "Installing the pinned dependencies from ${LOCK_FILE#"$REPO_ROOT"/}"
    pip_install -r "$LOCK_FILE"
}

STAGE_DIR=""
cleanup() {
    if [[ -n "$STAGE_DIR" ]]; then
        rm -rf "$STAGE_DIR"
    fi
}
trap cleanup EXIT

install_app() {
    # Build from a clean copy so the source tree gets no build/ or egg-info folders.
    STAGE_DIR="$(mktemp -d)"
    local stage="$STAGE_DIR" item
    for item in pyproject.toml setup.py setup.cfg MANIFEST.in README.md LICENSE demofusion_app resources; do
        if [[ -e "$REPO_ROOT/$item" ]]; then
            cp -R "$REPO_ROOT/$item" "$stage/"
        fi
    done
    [[ -f "$stage/pyproject.toml" ]] || die "$REPO_ROOT is not the app's source tree (no pyproject.toml)."
    find "$stage" -name '__pycache__' -type d -prune -exec rm -rf {} +
    say "Installing $APP_NAME from $REPO_ROOT"
    pip_install --no-deps --force-reinstall "$stage"
    rm -rf "$STAGE_DIR"
    STAGE_DIR=""
}

check_app() {
    local version
    version="$("$APP_BIN" --version)" || die "the installed app does not start; see the messages above."
    say "Installed: $version"
    # The window needs the system libraries of Qt's X11 plugin: name the missing packages now
    # rather than when the menu entry is first clicked.
    local missing
    if missing="$("$ENV_PY" -c 'from demofusion_app.gui.desktop.display_check import check_display as c
print(c() or "")' 2>/dev/null)" && [[ -n "$missing" ]]; then
        warn "$missing"
    fi
}

# --- desktop integration ---------------------------------------------------------------------------

desktop_exec_path() {
    # The Exec key's quoting rules: quote a path with spaces, escape \ " ` $ inside the quotes.
    local path="$1"
    if [[ "$path" =~ [[:space:]\"\`\$\\] ]]; then
        path="${path//\\/\\\\\\\\}"
        path="${path//\"/\\\\\"}"
        path="${path//\`/\\\\\`}"
        path="${path//\$/\\\\\$}"
        printf '"%s"' "$path"
    else
        printf '%s' "$path"
    fi
}

install_desktop() {
    local source="$REPO_ROOT/resources/linux/$APP_ID.desktop"
    [[ -f "$source" ]] || die "$source is missing; get a complete copy of the app."
    mkdir -p "$APPS_DIR"
    local exec_path
    exec_path="$(desktop_exec_path "$APP_BIN")"
    local line
    : >"$DESKTOP_FILE.tmp"
    while IFS= read -r line || [[ -n "$line" ]]; do
        case "$line" in
            Exec=*) line="Exec=$exec_path %F" ;;
            TryExec=*) line="TryExec=$APP_BIN" ;;
        esac
        printf '%s\n' "$line" >>"$DESKTOP_FILE.tmp"
    done <"$source"
    mv "$DESKTOP_FILE.tmp" "$DESKTOP_FILE"
    chmod 0644 "$DESKTOP_FILE"
    if command -v desktop-file-validate >/dev/null 2>&1; then
        desktop-file-validate "$DESKTOP_FILE" || warn "the menu entry did not validate; it may not show."
    fi

    local size
    for size in "${ICON_SIZES[@]}"; do
        mkdir -p "$ICON_ROOT/${size}x${size}/apps"
        cp "$REPO_ROOT/resources/icons/hicolor/${size}x${size}/apps/$APP_ID.png" \
            "$ICON_ROOT/${size}x${size}/apps/$APP_ID.png"
    done
    mkdir -p "$ICON_ROOT/scalable/apps"
    cp "$REPO_ROOT/resources/icons/$APP_ID.svg" "$ICON_ROOT/scalable/apps/$APP_ID.svg"

    mkdir -p "$(dirname "$BIN_LINK")"
    ln -sfn "$APP_BIN" "$BIN_LINK"
    refresh_desktop_caches
    say "Added '$APP_NAME' to the applications menu and $BIN_LINK"
}

remove_desktop() {
    rm -f "$DESKTOP_FILE"
    local size
    for size in "${ICON_SIZES[@]}"; do
        rm -f "$ICON_ROOT/${size}x${size}/apps/$APP_ID.png"
    done
    rm -f "$ICON_ROOT/scalable/apps/$APP_ID.svg"
    # Only remove the command link if it is ours.
    if [[ -L "$BIN_LINK" && "$(readlink "$BIN_LINK")" == "$APP_BIN" ]]; then
        rm -f "$BIN_LINK"
    fi
    refresh_desktop_caches
}

refresh_desktop_caches() {
    if command -v update-desktop-database >/dev/null 2>&1 && [[ -d "$APPS_DIR" ]]; then
        update-desktop-database -q "$APPS_DIR" || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [[ -d "$ICON_ROOT" ]]; then
        gtk-update-icon-cache -q -t -f "$ICON_ROOT" || true
    fi
}

# --- actions -------------------------------------------------------------------------------------

do_install() {
    create_env
    install_torch
    install_dependencies
    install_app
    check_app
    if [[ "$DESKTOP" -eq 1 ]]; then
        install_desktop
        say "Done. Start $APP_NAME from the applications menu, or run: $APP_BIN"
    else
        say "Done. Run: $APP_BIN"
    fi
}

do_update() {
    [[ -x "$ENV_PY" ]] || die "there is no installation in $PREFIX to update; run without --update."
    install_dependencies
    install_app
    check_app
    if [[ "$DESKTOP" -eq 1 ]]; then
        install_desktop
    fi
    say "Updated."
}

do_uninstall() {
    if [[ -d "$ENV_DIR" ]]; then
        # Refuse to delete anything that is not a Python environment.
        [[ -f "$ENV_DIR/pyvenv.cfg" ]] || die "$ENV_DIR is not a Python environment; not deleting it."
        rm -rf "$ENV_DIR"
        say "Removed $ENV_DIR"
    fi
    if [[ "$DESKTOP" -eq 1 ]]; then
        remove_desktop
        say "Removed the menu entry and icons"
    fi
    if [[ "$PURGE" -eq 1 ]]; then
        local config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
        local cache_home="${XDG_CACHE_HOME:-$HOME/.cache}"
        local state_home="${XDG_STATE_HOME:-$HOME/.local/state}"
        local folder
        for folder in "$config_home/$APP_ID" "$cache_home/$APP_ID" "$state_home/$APP_ID" \
            "$DATA_HOME/$APP_ID"; do
            if [[ -d "$folder" ]]; then
                rm -rf "$folder"
                say "Removed $folder"
            fi
        done
        say "Your pictures were kept."
    fi
    rmdir "$PREFIX" 2>/dev/null || true
    say "$APP_NAME is uninstalled."
}

case "$ACTION" in
    install) do_install ;;
    update) do_update ;;
    uninstall) do_uninstall ;;
esac
