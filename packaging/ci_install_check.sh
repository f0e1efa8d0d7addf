#!/usr/bin/env bash
# End-to-end check of the Linux installer, for CI: a fresh install into a temporary prefix with the CPU
# torch build, the installed app's --version and a tiny-model generate, then the desktop integration
# (update run with HOME in a temporary folder) and the uninstall.
#
#   bash packaging/ci_install_check.sh                 # torch from the configured pip indexes
#   TORCH_SPEC="torch==2.13.0 --index-url URL" bash packaging/ci_install_check.sh
#
# Environment: INSTALL_PYTHON picks the base Python (default: the installer's choice); KEEP_WORK=1
# keeps the temporary folder for a look afterwards.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INSTALLER="$SCRIPT_DIR/install.sh"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
WORK="$(mktemp -d)"
PREFIX="$WORK/prefix"
FAKE_HOME="$WORK/home"
APP="$PREFIX/env/bin/demofusion-app"
ENV_PY="$PREFIX/env/bin/python"

finish() {
    local status=$?
    if [[ "${KEEP_WORK:-0}" == "1" || $status -ne 0 ]]; then
        echo "ci_install_check: work folder kept at $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap finish EXIT

step() { printf '\n### %s\n' "$*"; }

# The installer with HOME in the temporary folder and no XDG overrides from the caller.
installer() {
    env -u XDG_DATA_HOME -u XDG_CONFIG_HOME -u XDG_CACHE_HOME -u XDG_STATE_HOME HOME="$FAKE_HOME" \
        bash "$INSTALLER" --prefix "$PREFIX" "$@"
}
fail() {
    printf 'ci_install_check: FAILED: %s\n' "$*" >&2
    exit 1
}

python_args=()
if [[ -n "${INSTALL_PYTHON:-}" ]]; then
    python_args=(--python "$INSTALL_PYTHON")
fi

mkdir -p "$FAKE_HOME"
started=$(date +%s)

step "install into $PREFIX (CPU torch: $TORCH_SPEC, no desktop entries)"
# --no-uv: uv ignores pip's configuration, which is what points at the local torch wheel here.
installer --cpu --torch-spec "$TORCH_SPEC" --no-desktop --no-uv "${python_args[@]}"
install_seconds=$(($(date +%s) - started))
for unwanted in .local/share/applications .local/share/icons .local/bin; do
    [[ ! -e "$FAKE_HOME/$unwanted" ]] || fail "--no-desktop created ~/$unwanted"
done

step "the installed app answers --version"
version="$("$APP" --version)"
echo "$version"
[[ "$version" == *"$("$ENV_PY" -I -c 'import demofusion_app; print(demofusion_app.__version__)')"* ]] \
    || fail "--version printed '$version'"
"$ENV_PY" -I -c "import torch; print('torch', torch.__version__)"

step "the installed app generates with a tiny model"
if "$APP" generate --help >/dev/null 2>&1; then
    "$ENV_PY" -I -c "
import sys
from pathlib import Path
from demofusion_app.models.synthetic import save_tiny_model
save_tiny_model(Path(sys.argv[1]), 'sdxl', 16)
" "$WORK/tiny"
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 DEMOFUSION_STUDIO_HOME="$WORK/store" \
        "$APP" generate --model "$WORK/tiny" --prompt test --width 256 --height 256 --steps 2 \
        --output "$WORK/x.png"
    "$ENV_PY" -I -c "
import sys
from PIL import Image
with Image.open(sys.argv[1]) as image:
    assert image.size == (256, 256), image.size
print('generated', sys.argv[1], image.size)
" "$WORK/x.png"
else
    fail "the installed app has no 'generate' command"
fi

step "the installed app finds its resources and builds its window"
QT_QPA_PLATFORM=offscreen DEMOFUSION_STUDIO_HOME="$WORK/store" "$ENV_PY" -I -c "
import sys
from pathlib import Path
from demofusion_app.resources import resources_dir
found = resources_dir().resolve()
# From the environment, not from the source tree the installer ran from.
assert Path(sys.prefix).resolve() in found.parents, found
from demofusion_app.gui.app import create_window
window = create_window()
window.show()
print('window:', window.windowTitle(), '| resources:', found)
"

step "update with desktop integration (HOME=$FAKE_HOME)"
installer --update --no-uv
desktop="$FAKE_HOME/.local/share/applications/demofusion-studio.desktop"
[[ -f "$desktop" ]] || fail "no menu entry at $desktop"
grep -qx "Exec=$APP %F" "$desktop" || fail "menu entry does not run $APP: $(grep '^Exec=' "$desktop")"
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$desktop"
fi
for size in 16 24 32 48 64 128 256 512; do
    icon="$FAKE_HOME/.local/share/icons/hicolor/${size}x${size}/apps/demofusion-studio.png"
    [[ -s "$icon" ]] || fail "missing icon $icon"
done
[[ -s "$FAKE_HOME/.local/share/icons/hicolor/scalable/apps/demofusion-studio.svg" ]] \
    || fail "missing scalable icon"
[[ "$("$FAKE_HOME/.local/bin/demofusion-app" --version)" == "$version" ]] \
    || fail "the command link in .local/bin does not run the installed app"

step "uninstall (settings kept) and purge"
mkdir -p "$FAKE_HOME/.config/demofusion-studio"
echo '{}' >"$FAKE_HOME/.config/demofusion-studio/settings.json"
installer --uninstall
[[ ! -e "$PREFIX/env" ]] || fail "the environment is still there"
[[ ! -e "$desktop" ]] || fail "the menu entry is still there"
[[ ! -e "$FAKE_HOME/.local/bin/demofusion-app" ]] || fail "the command link is still there"
[[ -f "$FAKE_HOME/.config/demofusion-studio/settings.json" ]] || fail "uninstall deleted settings"
installer --uninstall --purge
[[ ! -e "$FAKE_HOME/.config/demofusion-studio" ]] || fail "--purge kept the settings"

total=$(($(date +%s) - started))
printf '\nci_install_check: passed (install %ss, total %ss)\n' "$install_seconds" "$total"
