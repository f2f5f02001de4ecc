#!/usr/bin/env bash
# Build the nanofleet-agent .deb with plain dpkg-deb (no debhelper).
#
#   packaging/debian/build.sh [--out DIR] [--wheelhouse DIR] [--offline] [--python PY]
#                             [--compression zstd|xz|gzip|none]
#
# Layout of the package:
#   /opt/nanofleet/venv                       a virtualenv on the system python3 (3.11)
#                                             with nanofleet[agent,systemd] and its wheels
#   /usr/bin/nanofleet-agent                  -> /opt/nanofleet/venv/bin/nanofleet-agent
#   /lib/systemd/system/nanofleet-agent.service
#   /usr/lib/sysusers.d/nanofleet.conf, /usr/lib/tmpfiles.d/nanofleet.conf
#   /etc/nanofleet/agent.toml                 conffile (the example config)
#   /usr/share/doc/nanofleet-agent/           operations.md, the example, copyright
#
# Why a venv: Debian has no onnxruntime and an older paho-mqtt, so the agent brings
# its own dependencies; using the system interpreter keeps security fixes to Python
# itself coming from Debian. The venv is built in a staging directory and relocated
# to /opt/nanofleet/venv (shebangs rewritten, byte-code compiled for the final
# paths, so a read-only /opt never needs writing).
#
# Wheels come from a wheelhouse (default build/wheelhouse): filled with
# `pip wheel` from the configured package index on the first build, reused after.
# --offline builds only from the wheelhouse (no index at all). The package is
# architecture-specific (onnxruntime, numpy): build it on the target architecture.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PKG=nanofleet-agent
OUT="$ROOT/dist"
WHEELHOUSE="$ROOT/build/wheelhouse"
OFFLINE=0
TARGET_PY=/usr/bin/python3      # the interpreter on the device
BUILD_PY="${BUILD_PY:-}"        # a python with pip >= 22.3 that runs the builds
EXTRAS="agent,systemd"
COMPRESSION=zstd

while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
    --offline) OFFLINE=1; shift ;;
    --python) TARGET_PY="$2"; shift 2 ;;
    --compression) COMPRESSION="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$BUILD_PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then BUILD_PY="$ROOT/.venv/bin/python"; else BUILD_PY=python3; fi
fi
for tool in dpkg-deb dpkg "$TARGET_PY"; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found" >&2; exit 1; }
done

PYVER="$("$TARGET_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VERSION="$("$TARGET_PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
DEB_VERSION="${VERSION}-1"
ARCH="$(dpkg --print-architecture)"
MAINTAINER="${DEB_MAINTAINER:-nanofleet maintainers <nanofleet@localhost>}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nanofleet-deb.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/root"
VENV_FINAL=/opt/nanofleet/venv
VENV="$STAGE$VENV_FINAL"

echo "build.sh: $PKG $DEB_VERSION ($ARCH, python$PYVER)" >&2

# 1. Wheels: nanofleet itself (built from this checkout) and its dependencies.
mkdir -p "$WHEELHOUSE"
rm -f "$WHEELHOUSE"/nanofleet-*.whl   # always rebuild our own wheel from the tree
pip_index=()
((OFFLINE)) && pip_index=(--no-index --find-links "$WHEELHOUSE")
if ! "$BUILD_PY" -m pip wheel -q --wheel-dir "$WHEELHOUSE" --find-links "$WHEELHOUSE" \
     "${pip_index[@]}" "$ROOT[$EXTRAS]" >"$WORK/pip-wheel.log" 2>&1; then
  cat "$WORK/pip-wheel.log" >&2; echo "build.sh: pip wheel failed" >&2; exit 1
fi

# 2. The venv, in the staging tree, from the wheelhouse only.
"$TARGET_PY" -m venv --without-pip "$VENV"
"$BUILD_PY" -m pip --python "$VENV/bin/python" install -q --no-compile --no-index \
  --find-links "$WHEELHOUSE" "nanofleet[$EXTRAS]"

# 3. Relocate: every text file under bin/ that names the staging path.
grep -rlI --null "$STAGE" "$VENV/bin" "$VENV/pyvenv.cfg" | xargs -0 -r sed -i "s#$STAGE##g"
rm -f "$VENV"/bin/activate.csh "$VENV"/bin/activate.fish "$VENV"/bin/Activate.ps1
# Byte-code compiled by the device's interpreter, recorded with final paths.
"$TARGET_PY" -m compileall -q -j 0 -s "$STAGE" -p / "$VENV/lib" >/dev/null
if grep -rlI "$STAGE" "$VENV/bin" "$VENV/pyvenv.cfg" >/dev/null; then
  echo "build.sh: staging path left in the venv" >&2; exit 1
fi

# 4. System integration files.
install -D -m 0644 "$ROOT/packaging/systemd/nanofleet-agent.service" \
  "$STAGE/lib/systemd/system/nanofleet-agent.service"
install -D -m 0644 "$ROOT/packaging/sysusers.d/nanofleet.conf" "$STAGE/usr/lib/sysusers.d/nanofleet.conf"
install -D -m 0644 "$ROOT/packaging/tmpfiles.d/nanofleet.conf" "$STAGE/usr/lib/tmpfiles.d/nanofleet.conf"
install -D -m 0640 "$ROOT/packaging/agent.toml.example" "$STAGE/etc/nanofleet/agent.toml"
mkdir -p "$STAGE/usr/bin"
ln -s "$VENV_FINAL/bin/nanofleet-agent" "$STAGE/usr/bin/nanofleet-agent"
DOC="$STAGE/usr/share/doc/$PKG"
install -D -m 0644 "$ROOT/packaging/agent.toml.example" "$DOC/agent.toml.example"
[[ -f "$ROOT/docs/operations.md" ]] && install -m 0644 "$ROOT/docs/operations.md" "$DOC/operations.md"
cat > "$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nanofleet
Files: *
License: Apache-2.0
Comment: Python dependencies under /opt/nanofleet/venv keep their own licenses,
 listed in each */dist-info/ directory.
EOF

# 5. Control files.
mkdir -p "$STAGE/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "$ROOT/packaging/debian/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/nanofleet/agent.toml > "$STAGE/DEBIAN/conffiles"
INSTALLED_KB="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
NEXT_MINOR="${PYVER%.*}.$(( ${PYVER#*.} + 1 ))"
cat > "$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $INSTALLED_KB
Depends: python$PYVER, python3 (>= $PYVER), python3 (<< $NEXT_MINOR), libsystemd0, systemd
Recommends: mosquitto-clients
Section: net
Priority: optional
Description: nanofleet device agent: local text -> nano model -> MQTT
 Follows local logs, the journal and sensor topics, runs a small text model on
 every line (ONNX Runtime) and publishes results and alerts over MQTT v5 with a
 store-and-forward spool. Technicians query it over MQTT or the local CLI.
 Runs as a hardened systemd service (Type=notify, watchdog).
EOF

mkdir -p "$OUT"
DEB="$OUT/${PKG}_${DEB_VERSION}_${ARCH}.deb"
# zstd -9: 20 s and ~60 MB here (-19 saves 10 % for 6x the time); dpkg >= 1.21.18
# (Debian 12, Ubuntu 22.04) reads it. "none" is for quick local test builds.
case "$COMPRESSION" in
  zstd) zopts=(-Zzstd -z9) ;;
  xz|gzip|none) zopts=("-Z$COMPRESSION") ;;
  *) echo "build.sh: --compression must be zstd, xz, gzip or none" >&2; exit 2 ;;
esac
dpkg-deb --root-owner-group "${zopts[@]}" --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
