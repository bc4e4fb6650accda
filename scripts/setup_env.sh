#!/usr/bin/env bash
# Set up everything napari-acs needs on a fresh Linux machine:
#   1. system packages (Xvfb and Qt's xcb/OpenGL libraries) when missing,
#   2. the virtual environment .venv with exactly the versions of the lock files
#      (requirements/lock.txt: the project's dependencies and its test extra;
#      requirements/lock-nodeps.txt: packages installed without their declared
#      dependencies), installed by uv, then the project itself (editable).
# Called by the Makefile; safe to re-run. `make lock` regenerates the lock files.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

APT_PACKAGES=(xvfb xauth libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
  libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
  libxcb-xinerama0 libxcb-xfixes0 libfontconfig1 libdbus-1-3)

missing_system_packages() {
  local pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

if [ "$(uname -s)" = "Linux" ] && command -v dpkg-query >/dev/null 2>&1; then
  mapfile -t missing < <(missing_system_packages)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
      echo ">> installing system packages: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "napari-acs needs these system packages, which are missing:" >&2
      echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
      echo "Run that command, then run make again." >&2
      exit 1
    fi
  fi
elif [ "$(uname -s)" = "Linux" ]; then
  echo "note: not a Debian/Ubuntu system; make sure Xvfb and Qt's xcb libraries are installed." >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# uv installs the locked versions several times faster than pip; it is pinned here.
UV_VERSION=0.13.9
UV="$VENV/bin/uv"
if [ ! -x "$UV" ] || [ "$("$UV" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
echo ">> installing the locked versions into $VENV (torch is large: the first run takes minutes)"
# --no-deps: the lock files list every package, resolved; nothing else is installed.
"$UV" pip install -q --python "$VENV/bin/python" --no-deps \
  -r requirements/lock.txt -r requirements/lock-nodeps.txt
"$UV" pip install -q --python "$VENV/bin/python" --no-deps -e .
# Bytecode written once here: uv writes no .pyc files, and where PYTHONDONTWRITEBYTECODE is
# set (as on the CI machines) Python never does either, so every process compiled torch,
# timm, monai and napari again (import torch 7.8 s instead of 4.5 s on 2 cores; see
# benchmarks/RESULTS.md, "Test suite time"). Files already compiled are skipped. A few
# packages ship test files for newer Pythons that cannot compile: compileall reports them
# (exit status 1), which is harmless, so only a missing interpreter stops the script here.
echo ">> compiling bytecode"
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" napari_acs \
  >/dev/null 2>&1 || test -x "$VENV/bin/python"
echo ">> environment ready: $VENV"
