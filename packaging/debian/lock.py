#!/usr/bin/env python3
"""Pin the device package's Python dependencies: exact versions and sha256 of every wheel.

    python3 packaging/debian/lock.py                   # resolve, write requirements/lock/
    python3 packaging/debian/lock.py check             # exit 1 if requirements/ changed since
    python3 packaging/debian/lock.py pip-target ARCH   # pip's platform arguments (build.sh)
    python3 packaging/debian/lock.py python-version    # the CPython the lock is for

``requirements/*.txt`` say what the agent needs (ranges); ``requirements/lock/*.txt``
say exactly which wheels a package is built from, in pip's hash-checking mode: one
``name==version`` per package with the sha256 of its wheel for every architecture we
build (amd64, arm64). build.sh installs only from the lock (``--require-hashes``), so

- a wheel that changed after it was locked (a replaced upload, a compromised or wrong
  mirror, a corrupt download in the wheelhouse) fails the build instead of landing on
  devices, and
- two builds of the same commit carry the same dependency bytes, whatever the index
  serves that day.

Moving to new versions is this script, run by a person with the configured index, and
a reviewed diff of the lock. The lock records each requirements file's sha256; build.sh
refuses a lock older than its requirements (``check``). Nothing here runs at build or
test time but ``check``, ``pip-target`` and ``python-version``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"
LOCK_DIR = REQUIREMENTS / "lock"
# Debian 12: CPython 3.11, glibc 2.36 (pip does not expand manylinux tags below the one
# given, so every tag up to 2.36 is listed).
PYTHON_VERSION = "3.11"
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
MANYLINUX = ["manylinux_2_36", "manylinux_2_34", "manylinux_2_31", "manylinux_2_28",
             "manylinux_2_27", "manylinux_2_24", "manylinux2014", "manylinux_2_17"]
# Input file -> whether its requirements bring their dependencies (the runtimes are
# installed without theirs: requirements/litert.txt says why).
INPUTS = {"common": True, "litert": False, "onnxruntime": False}


class LockError(Exception):
    """The architectures do not resolve to one set of versions (or no wheel was found)."""


@dataclass(frozen=True)
class Wheel:
    name: str  # normalized (PEP 503)
    version: str
    sha256: str
    filename: str


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel(path: Path) -> Wheel:
    """``name-version(-build)?-py-abi-platform.whl`` (the wheel spec's file name)."""
    parts = path.name[:-len(".whl")].split("-")
    if not path.name.endswith(".whl") or len(parts) not in (5, 6):
        raise LockError(f"{path.name}: not a wheel file name")
    return Wheel(normalize(parts[0]), parts[1], hashlib.sha256(path.read_bytes()).hexdigest(),
                 path.name)


def pip_target(arch: str, python_version: str = PYTHON_VERSION) -> list[str]:
    """pip's arguments for the target platform: binary wheels for Debian 12 on ``arch``."""
    if arch not in MACHINES:
        raise LockError(f"unknown architecture {arch!r}: one of {sorted(MACHINES)}")
    tag = python_version.replace(".", "")
    args: list[str] = []
    for manylinux in MANYLINUX:
        args += ["--platform", f"{manylinux}_{MACHINES[arch]}"]
    return [*args, "--python-version", python_version, "--implementation", "cp",
            "--abi", f"cp{tag}", "--only-binary=:all:"]


def merge(per_arch: dict[str, list[Wheel]]) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sorted sha256s): one version per package over all architectures,
    each architecture's wheel hash listed (pure-Python wheels have one)."""
    versions: dict[str, dict[str, str]] = {}
    hashes: dict[str, set[str]] = {}
    for arch, wheels in sorted(per_arch.items()):
        for w in wheels:
            versions.setdefault(w.name, {})[arch] = w.version
            hashes.setdefault(w.name, set()).add(w.sha256)
    problems = []
    for name, by_arch in sorted(versions.items()):
        missing = sorted(set(per_arch) - set(by_arch))
        if missing:
            problems.append(f"{name}: no wheel for {', '.join(missing)}")
        elif len(set(by_arch.values())) > 1:
            seen = ", ".join(f"{a} {v}" for a, v in sorted(by_arch.items()))
            problems.append(f"{name}: the architectures resolve to different versions ({seen})")
    if problems:
        raise LockError("; ".join(problems) + ": pin one version in requirements/*.txt")
    return {name: (next(iter(versions[name].values())), sorted(hashes[name]))
            for name in sorted(versions)}


def input_digest(requirements: Path) -> str:
    """The sha256 of a requirements file as the lock records it (its bytes)."""
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


INPUT_LINE = "# requirements sha256: "


def render(source: str, pinned: dict[str, tuple[str, list[str]]], digest: str) -> str:
    """A lock file: the header (with ``digest``, the input's sha256), then one entry per
    package, names and hashes sorted."""
    lines = [f"# Generated by packaging/debian/lock.py from requirements/{source}.txt: CPython",
             f"# {PYTHON_VERSION}, wheels for {' and '.join(sorted(MACHINES))}. Do not edit; "
             "run the script and review the diff.", f"{INPUT_LINE}{digest}", ""]
    for name, (version, hashes) in sorted(pinned.items()):
        lines.append(f"{name}=={version} \\")
        lines += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "")
                  for i, h in enumerate(sorted(hashes))]
    return "\n".join(lines) + "\n"


def stale(requirements: Path = REQUIREMENTS, lock_dir: Path = LOCK_DIR) -> list[str]:
    """Why the lock does not describe today's requirements files (empty: it does). A floor
    raised for a security fix, or a new dependency, must not build from the old lock."""
    problems = []
    for source in INPUTS:
        lock = lock_dir / f"{source}.txt"
        if not lock.is_file():
            problems.append(f"requirements/lock/{source}.txt is missing")
            continue
        recorded = [line[len(INPUT_LINE):].strip() for line in lock.read_text().splitlines()
                    if line.startswith(INPUT_LINE)]
        if recorded != [input_digest(requirements / f"{source}.txt")]:
            problems.append(f"requirements/{source}.txt changed since "
                            f"requirements/lock/{source}.txt was made")
    return problems


def check_python(python: str) -> None:
    """pip evaluates environment markers for the interpreter that runs it: only the
    target's CPython resolves the target's dependencies."""
    proc = subprocess.run([python, "-c", "import platform, sys; print(platform."
                           "python_implementation(), '%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True)
    found = proc.stdout.strip()
    if found != f"CPython {PYTHON_VERSION}":
        raise LockError(f"{python} is {found or 'not runnable'}; the lock is made with "
                        f"CPython {PYTHON_VERSION} (--python PATH), the devices' interpreter")


def download(source: str, with_deps: bool, arch: str, python: str) -> list[Wheel]:
    with tempfile.TemporaryDirectory(prefix=f"lock-{arch}-") as tmp:
        cmd = [python, "-m", "pip", "download", "-q", "-d", tmp, *pip_target(arch),
               *([] if with_deps else ["--no-deps"]), "-r", str(REQUIREMENTS / f"{source}.txt")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LockError(f"pip download for {source} ({arch}) failed:\n{proc.stderr[-3000:]}")
        wheels = [parse_wheel(p) for p in sorted(Path(tmp).iterdir())]
    if not wheels:
        raise LockError(f"pip download for {source} ({arch}) gave no wheel")
    return wheels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="lock",
                        choices=["lock", "check", "pip-target", "python-version"])
    parser.add_argument("arch", nargs="?", help="pip-target: amd64 or arm64")
    parser.add_argument("--python", default=sys.executable,
                        help="the python whose pip downloads (pip >= 22.3)")
    args = parser.parse_args(argv)
    try:
        if args.command == "python-version":
            print(PYTHON_VERSION)
            return 0
        if args.command == "pip-target":
            print("\n".join(pip_target(args.arch or "")))
            return 0
        if args.command == "check":
            problems = stale()
            if problems:
                raise LockError("; ".join(problems) + ": run packaging/debian/lock.py and "
                                "review the diff")
            return 0
        check_python(args.python)
        texts = {}  # every input resolved before any file is written
        for source, with_deps in INPUTS.items():
            pinned = merge({arch: download(source, with_deps, arch, args.python)
                            for arch in MACHINES})
            texts[source] = render(source, pinned, input_digest(REQUIREMENTS / f"{source}.txt"))
            print(f"requirements/lock/{source}.txt: {len(pinned)} packages", file=sys.stderr)
        LOCK_DIR.mkdir(exist_ok=True)
        for source, text in texts.items():
            (LOCK_DIR / f"{source}.txt").write_text(text, encoding="utf-8")
    except LockError as exc:
        print(f"lock.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
