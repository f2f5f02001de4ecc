#!/usr/bin/env bash
# Build the device-only nanofleet-agent .deb with plain dpkg-deb (no debhelper).
#
#   packaging/debian/build.sh [--flavour litert|onnxruntime] [--arch amd64|arm64]
#                             [--out DIR] [--wheelhouse DIR] [--offline]
#                             [--compression zstd|xz|gzip|none]
#
# Flavours (one model runtime each): litert (default: ai-edge-litert, the lean one for
# small devices) and onnxruntime. --arch builds for another architecture from that
# architecture's wheels (pip download --platform ...): nothing is compiled.
#
# Layout: everything of nanofleet lives under its private prefix, never in the system
# site-packages (the generic top-level names agent/ and contract/ cannot collide there):
#   /usr/lib/nanofleet-agent                  a venv on the system python3 (3.11) holding
#                                             agent/, contract/ and their run-time wheels
#   /usr/bin/nanofleet-agent                  -> /usr/lib/nanofleet-agent/bin/nanofleet-agent
#   /lib/systemd/system/nanofleet-agent.service
#   /usr/lib/sysusers.d/nanofleet.conf, /usr/lib/tmpfiles.d/nanofleet.conf
#   /etc/nanofleet/agent.toml                 conffile (the example config)
#   /usr/share/doc/nanofleet-agent/           operations.md, the example, copyright
#
# Only agent/ and contract/ are copied from the tree (no fleet server, rig or training
# code). Wheels are trimmed (tests, stubs, headers, unused backends: trim_site.py) and
# their shared objects stripped. python3-systemd comes from Debian through the venv's
# system site-packages (the venv's own packages come first on sys.path).
#
# Wheels come from a wheelhouse per architecture (default build/wheelhouse/<arch>),
# filled by `pip download` from the configured package index on the first build;
# --offline builds only from it. Either way only the versions and bytes pinned in
# requirements/lock/ are installed (packaging/debian/lock.py makes the lock).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/packaging/debian"
PKG=nanofleet-agent
OUT="$ROOT/dist"
WHEELHOUSE=""
OFFLINE=0
TARGET_PY=/usr/bin/python3      # the interpreter on the device (same Debian release)
BUILD_PY="${BUILD_PY:-}"        # a python with pip >= 22.3 that runs pip
FLAVOUR=litert
ARCH=""
COMPRESSION=zstd
PREFIX=/usr/lib/nanofleet-agent

while (($#)); do
  case "$1" in
    --flavour|--flavor) FLAVOUR="$2"; shift 2 ;;
    --arch) ARCH="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
    --offline) OFFLINE=1; shift ;;
    --compression) COMPRESSION="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$FLAVOUR" in
  litert|onnxruntime) ;;
  *) echo "build.sh: --flavour must be litert or onnxruntime" >&2; exit 2 ;;
esac
[[ -n "$ARCH" ]] || ARCH="$(dpkg --print-architecture)"
case "$ARCH" in
  amd64) STRIP=strip ;;
  arm64) STRIP=aarch64-linux-gnu-strip ;;
  *) echo "build.sh: --arch must be amd64 or arm64" >&2; exit 2 ;;
esac
[[ "$ARCH" == "$(dpkg --print-architecture)" ]] && STRIP=strip
WHEELHOUSE="${WHEELHOUSE:-$ROOT/build/wheelhouse}/$ARCH"

if [[ -z "$BUILD_PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then BUILD_PY="$ROOT/.venv/bin/python"; else BUILD_PY=python3; fi
fi
for tool in dpkg-deb dpkg "$TARGET_PY" "$STRIP"; do
  command -v "$tool" >/dev/null || {
    echo "build.sh: $tool not found (arm64 needs binutils-aarch64-linux-gnu)" >&2; exit 1; }
done

PYVER="$("$TARGET_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VERSION="$("$TARGET_PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
DEB_VERSION="${VERSION}-1+${FLAVOUR}"
MAINTAINER="${DEB_MAINTAINER:-nanofleet maintainers <nanofleet@localhost>}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nanofleet-deb.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/root"
VENV="$STAGE$PREFIX"
SITE="$VENV/lib/python$PYVER/site-packages"

echo "build.sh: $PKG $DEB_VERSION ($ARCH, python$PYVER, $FLAVOUR)" >&2

# 1. Wheels for the target platform, exactly those of the lock (pip's hash-checking
#    mode; requirements/lock/*.txt, made by lock.py): the common run-time set, and the
#    runtime without its declared dependencies (see requirements/*.txt). A wheel whose
#    bytes are not the locked ones fails the build.
LOCK="$HERE/requirements/lock"
LOCK_PY="$("$TARGET_PY" "$HERE/lock.py" python-version)"
if [[ "$LOCK_PY" != "$PYVER" ]]; then
  echo "build.sh: the lock is for CPython $LOCK_PY, the target python3 is $PYVER:" \
       "set PYTHON_VERSION in packaging/debian/lock.py and run it" >&2; exit 1
fi
"$TARGET_PY" "$HERE/lock.py" check || {
  echo "build.sh: the lock does not match requirements/ (see above)" >&2; exit 1; }
mkdir -p "$WHEELHOUSE"
# Read through a variable: set -e does not see a process substitution fail, and without
# its --platform arguments pip would take the build machine's wheels (the lock holds
# both architectures' hashes, so only the platform keeps them apart).
pip_target="$("$TARGET_PY" "$HERE/lock.py" pip-target "$ARCH")"
mapfile -t target <<<"$pip_target"
[[ " ${target[*]} " == *" --only-binary=:all: "* ]] || {
  echo "build.sh: lock.py pip-target gave no platform arguments" >&2; exit 1; }
pip_src=(--find-links "$WHEELHOUSE")
((OFFLINE)) && pip_src+=(--no-index)
pip_q() {  # pip with its output in the log, shown on failure
  if ! "$BUILD_PY" -m pip "$@" >>"$WORK/pip.log" 2>&1; then
    cat "$WORK/pip.log" >&2
    if grep -q "DO NOT MATCH THE HASHES" "$WORK/pip.log"; then
      echo "build.sh: a wheel is not the one locked in packaging/debian/requirements/lock/" \
           "(a corrupt download, or the index serves other bytes for that version): delete" \
           "it from $WHEELHOUSE and build again (not --offline: the build downloads it;" \
           "or copy it from a wheelhouse you trust); if the index changed it, find out" \
           "why before running packaging/debian/lock.py" >&2
    fi
    if grep -q "Hashes are required in --require-hashes mode" "$WORK/pip.log"; then
      echo "build.sh: a package is not in packaging/debian/requirements/lock/: run" \
           "packaging/debian/lock.py and review the diff" >&2
    fi
    echo "build.sh: pip $1 failed" >&2; exit 1
  fi
}
if ((!OFFLINE)); then
  pip_q download -q -d "$WHEELHOUSE" "${target[@]}" "${pip_src[@]}" --require-hashes \
    -r "$LOCK/common.txt"
  pip_q download -q -d "$WHEELHOUSE" "${target[@]}" "${pip_src[@]}" --require-hashes \
    --no-deps -r "$LOCK/$FLAVOUR.txt"
fi

# 2. The venv in the staging tree. --system-site-packages: python3-systemd from Debian.
"$TARGET_PY" -m venv --without-pip --system-site-packages "$VENV"
[[ -d "$SITE" ]] || { echo "build.sh: $SITE missing" >&2; exit 1; }
pip_q install -q --no-compile --target "$SITE" "${target[@]}" --no-index \
  --find-links "$WHEELHOUSE" --require-hashes -r "$LOCK/common.txt"
pip_q install -q --no-compile --target "$SITE" "${target[@]}" --no-index \
  --find-links "$WHEELHOUSE" --require-hashes --no-deps -r "$LOCK/$FLAVOUR.txt"

# 3. nanofleet's device code: agent/ and contract/ only, and an entry point.
for pkg in agent contract; do
  (cd "$ROOT" && find "$pkg" -name __pycache__ -prune -o -type f \
     \( -name '*.py' -o -name '*.nfb' -o -name '*.json' -o -name py.typed \) -print) |
    while read -r f; do install -D -m 0644 "$ROOT/$f" "$SITE/$f"; done
done
mkdir -p "$SITE/nanofleet_agent-$VERSION.dist-info"
printf 'Metadata-Version: 2.1\nName: nanofleet-agent\nVersion: %s\nSummary: nanofleet device agent (%s flavour)\n' \
  "$VERSION" "$FLAVOUR" > "$SITE/nanofleet_agent-$VERSION.dist-info/METADATA"
echo build.sh > "$SITE/nanofleet_agent-$VERSION.dist-info/INSTALLER"
# -s: no per-user site-packages. The venv sees the system's (python3-systemd), which
# leaves Python's user site on, and the service's HOME is its state directory: a .pth the
# agent's user wrote to ~/.local/lib/python3.X/site-packages ran at every later start and
# in the unsandboxed renewal job (review, December 2026).
cat > "$VENV/bin/nanofleet-agent" <<EOF
#!$PREFIX/bin/python -s
import sys

# The unit runs the agent with PYTHONOPTIMIZE=2. Byte-code for that level that the
# package does not ship (Debian's standard library has plain byte-code only) is compiled
# by postinst, as root, into a root-owned cache with checked hashes. The service never
# writes byte-code: before, it wrote its own cache, where a compromised agent could plant
# code that every later start, even after an upgrade, ran (docs/operations.md).
if sys.flags.optimize:
    sys.pycache_prefix = "/var/cache/nanofleet-agent/pycache"
    sys.dont_write_bytecode = True

from agent.cli import main  # noqa: E402

sys.exit(main())
EOF
chmod 0755 "$VENV/bin/nanofleet-agent"

# 4. Trim, strip, relocate, byte-compile.
"$TARGET_PY" "$HERE/trim_site.py" "$SITE" 2>>"$WORK/trim.log" || { cat "$WORK/trim.log" >&2; exit 1; }
# Symbol tables out of the wheels' shared objects, except the libraries auditwheel
# vendored and patched (*.libs/): strip corrupts patchelf's layout ("ELF load command
# address/offset not page-aligned").
find "$SITE" -type f \( -name '*.so' -o -name '*.so.*' \) ! -path '*.libs/*' -print0 |
  xargs -0 -r "$STRIP" --strip-unneeded
grep -rlI --null "$STAGE" "$VENV/bin" "$VENV/pyvenv.cfg" | xargs -0 -r sed -i "s#$STAGE##g"
rm -f "$VENV"/bin/activate* "$VENV"/bin/Activate.ps1
# nanofleet's own code keeps its sources (tracebacks a technician can read); the
# dependencies ship byte-code only (legacy .pyc beside where the .py was), as
# OpenWrt and Yocto do on flash-bound devices: ~8 MB less. The unit runs the agent
# with PYTHONOPTIMIZE=2 (no docstrings: ~2.3 MB less RSS, docs/operations.md): the
# dependencies' byte-code is made at that level (a legacy .pyc is loaded whatever the
# interpreter's level); the byte-code of our code and of the standard library at that
# level is made by postinst into a root-owned cache (the entry point above).
"$TARGET_PY" -m compileall -q -j 0 -s "$STAGE" -p / "$SITE/agent" "$SITE/contract" >/dev/null
find "$SITE" -mindepth 1 -maxdepth 1 ! -name agent ! -name contract ! -name '*.dist-info' \
  -print0 | xargs -0 -r "$TARGET_PY" -m compileall -q -j 0 -b -o 2 -s "$STAGE" -p / \
  >/dev/null || true
find "$SITE" -name '*.py' ! -path "$SITE/agent/*" ! -path "$SITE/contract/*" -print0 |
  while IFS= read -r -d '' py; do [[ -f "${py}c" ]] && rm -f "$py"; done
find "$SITE" -name __pycache__ ! -path "$SITE/agent/*" ! -path "$SITE/contract/*" -prune \
  -exec rm -rf {} +
if grep -rlI "$STAGE" "$VENV/bin" "$VENV/pyvenv.cfg" >/dev/null; then
  echo "build.sh: staging path left in the venv" >&2; exit 1
fi

# 5. System integration files.
install -D -m 0644 "$ROOT/packaging/systemd/nanofleet-agent.service" \
  "$STAGE/lib/systemd/system/nanofleet-agent.service"
install -D -m 0644 "$ROOT/packaging/sysusers.d/nanofleet.conf" "$STAGE/usr/lib/sysusers.d/nanofleet.conf"
install -D -m 0644 "$ROOT/packaging/tmpfiles.d/nanofleet.conf" "$STAGE/usr/lib/tmpfiles.d/nanofleet.conf"
install -D -m 0640 "$ROOT/packaging/agent.toml.example" "$STAGE/etc/nanofleet/agent.toml"
if [[ "$FLAVOUR" == litert ]]; then
  printf '\n# This package carries LiteRT only (the litert flavour).\n[model]\nruntime = "litert"\n' \
    >> "$STAGE/etc/nanofleet/agent.toml"
fi
mkdir -p "$STAGE/usr/bin"
ln -s "$PREFIX/bin/nanofleet-agent" "$STAGE/usr/bin/nanofleet-agent"
DOC="$STAGE/usr/share/doc/$PKG"
install -D -m 0644 "$STAGE/etc/nanofleet/agent.toml" "$DOC/agent.toml.example"
[[ -f "$ROOT/docs/operations.md" ]] && install -m 0644 "$ROOT/docs/operations.md" "$DOC/operations.md"
cat > "$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nanofleet
Files: *
License: Apache-2.0
Comment: Python dependencies under $PREFIX keep their own licenses,
 listed in each */dist-info/ directory.
EOF

# 6. Control files.
mkdir -p "$STAGE/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "$HERE/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/nanofleet/agent.toml > "$STAGE/DEBIAN/conffiles"
# The standard library or python3-systemd upgraded: postinst "triggered" compiles the
# service's byte-code cache again (stale checked-hash entries are ignored, not trusted,
# so until then the agent only starts slower).
printf 'interest-noawait /usr/lib/python%s\ninterest-noawait %s\n' "$PYVER" \
  /usr/lib/python3/dist-packages/systemd > "$STAGE/DEBIAN/triggers"
INSTALLED_KB="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
NEXT_MINOR="${PYVER%.*}.$(( ${PYVER#*.} + 1 ))"
case "$FLAVOUR" in
  litert) RUNTIME_TEXT="LiteRT (ai-edge-litert)" ;;
  onnxruntime) RUNTIME_TEXT="ONNX Runtime" ;;
esac
cat > "$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $INSTALLED_KB
Depends: python$PYVER, python3 (>= $PYVER), python3 (<< $NEXT_MINOR), python3-systemd, systemd
Provides: nanofleet-agent-$FLAVOUR
Recommends: mosquitto-clients
Section: net
Priority: optional
Description: nanofleet device agent: local text -> nano model -> MQTT ($FLAVOUR)
 Follows local logs, the journal and sensor topics, runs a small text model on
 every line ($RUNTIME_TEXT) and publishes results and alerts over MQTT v5 with a
 store-and-forward spool. Technicians query it over MQTT or the local CLI.
 Runs as a hardened systemd service (Type=notify, watchdog).
EOF

mkdir -p "$OUT"
DEB="$OUT/${PKG}_${DEB_VERSION}_${ARCH}.deb"
# zstd -9: dpkg >= 1.21.18 (Debian 12, Ubuntu 22.04) reads it. "none" is for quick
# local test builds.
case "$COMPRESSION" in
  zstd) zopts=(-Zzstd -z9) ;;
  xz|gzip|none) zopts=("-Z$COMPRESSION") ;;
  *) echo "build.sh: --compression must be zstd, xz, gzip or none" >&2; exit 2 ;;
esac
dpkg-deb --root-owner-group "${zopts[@]}" --build "$STAGE" "$DEB" >/dev/null
echo "build.sh: installed size $((INSTALLED_KB / 1024)) MB; trimmed:" >&2
tail -n 1 "$WORK/trim.log" >&2
echo "$DEB"
