"""Debian root file systems for device targets (amd64 and arm64), built once and cached.

A target is what a small board runs: Debian 12 with its own ``python3``, systemd's
tools (the package's postinst runs ``systemd-sysusers``/``systemd-tmpfiles``),
Debian's ``python3-systemd`` (the device package uses it from the system), and
``openssh-server`` (the SSH device driver's way in).

- ``debootstrap --variant=minbase --include=...`` from the Debian mirror this
  machine's apt is configured with (read from ``/etc/apt/sources.list*`` at run
  time: no mirror is written in the repository).
- A foreign architecture (arm64 here) is made with ``--foreign``; the second stage
  runs under ``qemu-user-static`` through binfmt_misc (registered here when needed:
  ``mount -t binfmt_misc`` and qemu's own ``/usr/lib/binfmt.d`` line).
- The result is cached under ``$NANOFLEET_CACHE`` (default ``/var/cache/nanofleet``)
  in ``rootfs/<arch>-<key>/``, ``key`` a hash of the inputs (suite, architecture,
  packages, this recipe's version): reruns reuse it, a changed input builds anew.
  Users of a rootfs never write into the cached tree: they copy it (``clone``).

``python -m hil.rootfs [--arch arm64]`` builds (or finds) one and prints its path.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

RECIPE_VERSION = 1
SUITE = "bookworm"
PACKAGES = ("python3", "systemd", "python3-systemd",
            "openssh-server", "iproute2", "procps", "ca-certificates")
QEMU = {"arm64": "qemu-aarch64"}


class RootfsError(RuntimeError):
    """A root file system could not be built; the message says which step and why."""


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def cache_root() -> Path:
    return Path(os.environ.get("NANOFLEET_CACHE", "/var/cache/nanofleet"))


def cache_key(arch: str, packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> str:
    """The inputs that decide a root file system's content (pure)."""
    text = f"{RECIPE_VERSION}|{suite}|{arch}|{','.join(sorted(packages))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_apt_mirror(text: str, suite: str = SUITE) -> str | None:
    """The first ``URIs:`` (deb822) or ``deb URI SUITE`` (one-line) mirror serving
    ``suite`` main, not a security archive (pure)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.M))
        if "URIs" in fields and suite in fields.get("Suites", "").split() \
                and "deb" in fields.get("Types", "deb").split():
            return fields["URIs"].split()[0]
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            uri_at = 1 + sum(p.startswith("[") or p.endswith("]") for p in parts[1:3])
            if parts[uri_at + 1:uri_at + 2] == [suite]:
                return parts[uri_at]
    return None


def apt_mirror(suite: str = SUITE) -> str:
    """The Debian mirror this machine's apt uses for ``suite``."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if path.is_file() and path.suffix in (".list", ".sources", ""):
            found = parse_apt_mirror(path.read_text(errors="replace"), suite)
            if found:
                return found
    raise RootfsError(f"no Debian mirror for {suite} in /etc/apt/sources.list*: "
                      "configure apt (debootstrap uses the same mirror)")


def ensure_binfmt(arch: str) -> None:
    """Make the kernel run ``arch`` binaries through qemu-user-static."""
    name = QEMU[arch]
    if not shutil.which(f"{name}-static"):
        raise RootfsError(f"{name}-static missing: apt-get install qemu-user-static")
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)],
                       capture_output=True, text=True)
    if (misc / name).exists():
        return
    conf = Path(f"/usr/lib/binfmt.d/{name}.conf")
    if not conf.exists():
        raise RootfsError(f"{conf} missing: qemu-user-static installs it")
    try:
        (misc / "register").write_text(conf.read_text().strip())
    except OSError as exc:
        raise RootfsError(f"registering {name} with binfmt_misc failed ({exc}); run the "
                          f"binaries with `{name}-static -L ROOTFS` instead") from None


def _run(cmd: list[str], log: Path, what: str, timeout: float) -> None:
    with log.open("ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RootfsError(f"{what} failed (exit {proc.returncode}); log {log}:\n{tail}")


def build_rootfs(arch: str | None = None, *, quiet: bool = False) -> Path:
    """The cached root file system for ``arch`` (default: this machine's), built if
    missing. Needs root (debootstrap, chroot)."""
    arch = arch or host_arch()
    final = cache_root() / "rootfs" / f"{arch}-{cache_key(arch)}"
    if (final / ".nanofleet-rootfs").exists():
        return final
    if os.geteuid() != 0:
        raise RootfsError("building a root file system needs root (debootstrap, chroot)")
    foreign = arch != host_arch()
    if foreign:
        ensure_binfmt(arch)
    work = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    log = final.with_name(final.name + ".log")
    log.write_text("")
    t0 = time.monotonic()
    mirror = apt_mirror()
    if not quiet:
        print(f"hil.rootfs: debootstrap {SUITE} {arch} into {work} (log {log})", flush=True)
    cmd = ["debootstrap", f"--arch={arch}", "--variant=minbase",
           f"--include={','.join(PACKAGES)}", *(["--foreign"] if foreign else []),
           SUITE, str(work), mirror]
    _run(cmd, log, "debootstrap", 3600)
    if foreign:
        _run(["chroot", str(work), "/debootstrap/debootstrap", "--second-stage"], log,
             "debootstrap --second-stage under qemu", 7200)
    # Without an init, nothing may start services inside (sshd is started by hand).
    (work / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (work / "usr/sbin/policy-rc.d").chmod(0o755)
    for key in work.glob("etc/ssh/ssh_host_*"):
        key.unlink()  # every clone makes its own host keys
    (work / "etc/hostname").write_text("nanofleet-target\n")
    (work / ".nanofleet-rootfs").write_text(
        f"arch={arch} suite={SUITE} key={cache_key(arch)} packages={','.join(PACKAGES)} "
        f"built_s={time.monotonic() - t0:.0f} host={platform.node()}\n")
    work.rename(final)
    return final


def clone(rootfs: Path, dest: Path) -> Path:
    """A private copy of a cached root file system (hard links would share inodes with
    the cache: a writer could change it, so the copy is real; ~10 s for 300 MB)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(dest)], check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.rootfs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=None, help="Debian architecture (default: this "
                        "machine's); arm64 runs its second stage under qemu-user-static")
    args = parser.parse_args(argv)
    try:
        print(build_rootfs(args.arch))
    except RootfsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
