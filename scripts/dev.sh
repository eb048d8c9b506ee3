#!/usr/bin/env bash
# One entry point for newcomers and CI.
#   bash scripts/dev.sh demo   set everything up, then open the app on the built-in demo sequence
#   bash scripts/dev.sh test   set everything up, then run the whole test suite under Xvfb
#   bash scripts/dev.sh setup  only set up (Debian packages + .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0
  libxcb-image0 libxcb-xinerama0 libxcb-randr0 libxcb-xfixes0 libxcb-xkb1)
TEST_APT_PACKAGES=(gdb)  # native stacks of a hung test (tests/hang_watchdog.py)

install_debian_packages() {  # packages...
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "==> installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

setup_venv() {
  local py=python3.11
  command -v "$py" >/dev/null || py=python3
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($py --version)"
    "$py" -m venv .venv
  fi
  # torch first and exactly: a bare range would make pip fetch a multi-GB CUDA build.
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "==> installing torch 2.13.0 (CPU)"
    .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  fi
  # the project's requirements as last installed: unchanged, pip is not asked again (it takes 20 s to say so)
  local installed=.venv/.irsam-review-installed wanted
  wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ "$(cat "$installed" 2>/dev/null)" != "$wanted" ] \
      || ! .venv/bin/python -c "import torch, PySide6, pyqtgraph, cv2, tifffile, pytest, pytestqt, app, model" 2>/dev/null; then
    echo "==> installing irsam-review and its test tools"
    .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, PySide6, pyqtgraph, cv2, tifffile, pytest, pytestqt" \
      || { echo "setup failed: the venv is missing packages" >&2; exit 1; }
    echo "$wanted" > "$installed"
  fi
}

cmd="${1:-}"
case "$cmd" in
  setup)
    install_debian_packages "${APT_PACKAGES[@]}" "${TEST_APT_PACKAGES[@]}"; setup_venv ;;
  demo)
    install_debian_packages "${APT_PACKAGES[@]}"; setup_venv
    if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      echo "No display found (DISPLAY is unset): run this from a desktop session." >&2
      exit 2
    fi
    exec .venv/bin/irsam-review --demo ;;
  test)
    install_debian_packages "${APT_PACKAGES[@]}" "${TEST_APT_PACKAGES[@]}"; setup_venv
    shift
    exec xvfb-run -a -s "-screen 0 1600x1000x24 +extension GLX" \
      .venv/bin/python -m pytest -q -p no:cacheprovider "$@" ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test|setup" >&2; exit 2 ;;
esac
