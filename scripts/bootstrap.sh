#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently:
#  - Debian packages (mosquitto, journal-remote, libsystemd-dev...) when run as root,
#  - a virtualenv in .venv with nanofleet and all its extras.
# Sourced by scripts/demo and scripts/test; sets $PY to the venv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(mosquitto mosquitto-clients systemd-journal-remote libsystemd-dev pkg-config
              python3-venv systemd dpkg-dev fakeroot postgresql xdelta3 time iproute2
              python3-systemd debootstrap qemu-user-static binfmt-support systemd-container
              binutils-aarch64-linux-gnu openssh-server openssh-client
              chromium chromium-driver)  # chromium: the console's browser tests

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Installing mosquitto must not leave a system broker on port 1883 behind our back.
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
  else
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "bootstrap: run as root once, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
stamp="$VENV/.nanofleet-installed"
if [[ ! -x "$PY" ]]; then
  python3 -m venv "$VENV"
fi
# The versions are pinned (scripts/constraints/): the suite checks the same code on every
# machine and every day, whatever the index has published since.
CONSTRAINTS="$ROOT/scripts/constraints"
if [[ ! -f "$stamp" || "$ROOT/pyproject.toml" -nt "$stamp" || "$CONSTRAINTS/dev.txt" -nt "$stamp" ]]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  "$PY" -m pip install -q --upgrade pip >/dev/null
  "$PY" -m pip install -q -c "$CONSTRAINTS/dev.txt" -e "$ROOT[agent,litert,systemd,server,dev]"
  touch "$stamp"
fi
# A second venv for the other LiteRT import path: tflite-runtime 2.14 needs numpy<2,
# which must never share a venv with numpy 2 (tests/test_runtime_tflite_runtime.py).
TFLITE_VENV="$ROOT/.venv-tflite"
tstamp="$TFLITE_VENV/.nanofleet-installed"
if [[ ! -f "$tstamp" || "$ROOT/pyproject.toml" -nt "$tstamp" || "$CONSTRAINTS/tflite.txt" -nt "$tstamp" ]]; then
  echo "bootstrap: installing the tflite-runtime (numpy<2) venv into .venv-tflite" >&2
  [[ -x "$TFLITE_VENV/bin/python" ]] || python3 -m venv "$TFLITE_VENV"
  "$TFLITE_VENV/bin/python" -m pip install -q -c "$CONSTRAINTS/tflite.txt" \
    "numpy<2" "tflite-runtime>=2.14" "pydantic>=2.7,<3"
  "$TFLITE_VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
  touch "$tstamp"
fi
export PY
