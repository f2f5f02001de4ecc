"""Boot Debian's kernel under QEMU and keep its ring buffer, for the model's real kernel
text (:mod:`nanomodel.harvest.capture_kernel` labels it).

Usage (root not needed; qemu-system-x86, cpio, gcc with a static libc, e2fsprogs and
``apt-get download`` of Debian's packages; a manual tool, CI never runs it)::

    python -m hil.kernel_capture /work/scratch/kernel-capture

The kernel (``linux-image-amd64``'s image package) and ``busybox-static`` are downloaded
into WORKDIR and unpacked there; the initramfs holds BusyBox, the driver modules of
:data:`~nanomodel.harvest.scenarios_kernel.MODULES` with their dependencies, two small
static programs and :data:`~nanomodel.harvest.scenarios_kernel.INIT`. Two machines boot
it in turn (:data:`MACHINES`: q35 and i440FX, 512 MiB, software emulation), each with five
disks made here: a healthy ext4 one, a raw one whose reads fail (``blkdebug``), an ext4
one with a cleared inode, a SATA or IDE one, and an ext4 USB stick.
``WORKDIR/dmesg-<machine>.txt`` is the ring buffer ``/init`` dumps before powering off;
the console is ``WORKDIR/console-<machine>.txt``.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from nanomodel.harvest.capture_kernel import label_dmesg
from nanomodel.harvest.scenarios_kernel import CRASH_C, INIT, MEMHOG_C, MODULES

# EIO on every read at or past this sector of the failing disk
BLKDEBUG = """[inject-error]
event = "read_aio"
errno = "5"
sector = "4096"
"""


def _run(*cmd: str, cwd: Path | None = None) -> None:
    subprocess.run(list(cmd), check=True, cwd=cwd, capture_output=True)


def unpack(work: Path) -> tuple[Path, Path]:
    """The kernel package's tree and busybox-static's binary, downloaded once."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not glob.glob(str(debs / "linux-image-*.deb")):
        meta = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True,
                              capture_output=True, text=True).stdout
        image = next(w for w in meta.split() if w.startswith("linux-image-6"))
        _run("apt-get", "download", image, "busybox-static", cwd=debs)
    tree = work / "image"
    if not tree.exists():
        for deb in debs.glob("*.deb"):
            _run("dpkg-deb", "-x", str(deb), str(tree))
    return tree, tree / "bin" / "busybox"


def _norm(name: str) -> str:
    return name.replace("-", "_")


def module_order(moddir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Module paths (relative to ``moddir``) for ``wanted`` and what they need, each after
    its dependencies. The package leaves modules.dep to depmod at install, so each
    module's own ``depends=`` (its .modinfo section) is read."""
    paths = {_norm(p.name.removesuffix(".ko")): p for p in moddir.rglob("*.ko")}

    def needs(path: Path) -> list[str]:
        found = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", path.read_bytes())
        names = found.group(1).decode() if found else ""
        return [_norm(n) for n in names.split(",") if n]

    order: list[str] = []

    def visit(name: str) -> None:
        for dep in needs(paths[name]):
            visit(dep)
        rel = str(paths[name].relative_to(moddir))
        if rel not in order:
            order.append(rel)

    for name in wanted:
        visit(_norm(name))
    return order


def initramfs(work: Path, tree: Path, busybox: Path) -> Path:
    root = work / "initramfs"
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "sbin", "proc", "sys", "dev", "mnt", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    moddir = next((tree / "lib" / "modules").iterdir())
    order = module_order(moddir, MODULES)
    for mod in order:
        (root / "lib" / "modules" / mod).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(moddir / mod, root / "lib" / "modules" / mod)
    (root / "modules.order").write_text("\n".join(order) + "\n")
    for name, source in (("crashme", CRASH_C), ("memhog", MEMHOG_C)):
        (work / f"{name}.c").write_text(source)
        _run("gcc", "-static", "-O0", "-o", str(root / name), str(work / f"{name}.c"))
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    out = work / "initramfs.cpio.gz"
    files = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=files, cwd=root,
                          check=True, capture_output=True).stdout
    out.write_bytes(subprocess.run(["gzip", "-1"], input=cpio, check=True,
                                   capture_output=True).stdout)
    return out


def disks(work: Path) -> dict[str, Path]:
    made: dict[str, Path] = {}
    content = work / "disk-content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    (content / "config.txt").write_text("mode=auto\nsetpoint=41.5\n")
    (content / "readings").mkdir()
    for i in range(20):
        (content / "readings" / f"{i:03d}.csv").write_text("t,v\n1,2\n" * 50)
    for name, size, fs in (("data", "64M", True), ("failing", "16M", False),
                           ("broken", "32M", True), ("small", "24M", True),
                           ("stick", "32M", True)):
        path = work / f"{name}.img"
        path.unlink(missing_ok=True)
        _run("truncate", "-s", size, str(path))
        if fs:
            _run("mkfs.ext4", "-F", "-q", "-d", str(content), "-L", name, str(path))
        made[name] = path
    # a crash that cleared config.txt's inode while its directory entry stayed
    _run("debugfs", "-w", "-R", "clri /config.txt", str(made["broken"]))
    (work / "blkdebug.cfg").write_text(BLKDEBUG)
    return made


# Two machines: a q35 box (AHCI with five empty ports, e1000, one CPU) and an older i440FX
# one (IDE on PIIX, an RTL8139 NIC, two CPUs); both with the virtio disks and the USB stick
MACHINES: dict[str, list[str]] = {
    "q35": ["-M", "q35", "-smp", "1", "-device", "ahci,id=ahci",
            "-device", "ide-hd,drive=small,bus=ahci.0", "-device", "e1000,netdev=n0"],
    "pc": ["-M", "pc", "-smp", "2", "-device", "ide-hd,drive=small,bus=ide.0",
           "-device", "rtl8139,netdev=n0"],
}


def boot(work: Path, kernel: Path, initrd: Path, made: dict[str, Path], machine: str = "q35",
         timeout: float = 900) -> Path:
    """One boot of ``machine``; its ring buffer as ``/init`` dumped it."""
    dmesg, console = work / f"dmesg-{machine}.txt", work / f"console-{machine}.txt"
    dmesg.unlink(missing_ok=True)
    cmd = [
        "qemu-system-x86_64", *MACHINES[machine], "-m", "512", "-no-reboot",
        "-display", "none", "-monitor", "none",
        "-kernel", str(kernel), "-initrd", str(initrd),
        # (no panic=: the boot line would carry the word into the captured text)
        "-append", "console=ttyS0 quiet log_buf_len=4M",
        "-serial", f"file:{console}", "-serial", f"file:{dmesg}",
        "-drive", f"file={made['data']},format=raw,if=virtio",
        # blkdebug under the raw format driver, which raises the read_aio event on it
        "-drive", f"driver=raw,file.driver=blkdebug,file.config={work / 'blkdebug.cfg'},"
                  f"file.image.filename={made['failing']},if=none,id=bad",
        "-device", "virtio-blk-pci,drive=bad",
        "-drive", f"file={made['broken']},format=raw,if=virtio",
        "-drive", f"file={made['small']},format=raw,if=none,id=small",
        "-device", "qemu-xhci,id=xhci",
        "-drive", f"file={made['stick']},format=raw,if=none,id=stick",
        "-device", "usb-storage,drive=stick,bus=xhci.0,id=stickdev",
        "-device", "usb-kbd,bus=xhci.0",
        "-netdev", "user,id=n0,restrict=on",
    ]
    qmp = work / f"qmp-{machine}.sock"
    qmp.unlink(missing_ok=True)
    cmd += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    proc = subprocess.Popen(cmd)
    try:
        _answer_requests(proc, console, qmp, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.wait() != 0:
        raise RuntimeError(f"qemu exited {proc.returncode}")
    return dmesg


# What the guest asks the host to do to its hardware (``NFSYNC <request>`` on its console,
# :data:`~nanomodel.harvest.scenarios_kernel.INIT`), as QMP commands
REQUESTS: dict[str, dict[str, object]] = {
    "link-down": {"execute": "set_link", "arguments": {"name": "n0", "up": False}},
    "link-up": {"execute": "set_link", "arguments": {"name": "n0", "up": True}},
    "unplug-stick": {"execute": "device_del", "arguments": {"id": "stickdev"}},
}


def _answer_requests(proc: subprocess.Popen[bytes], console: Path, qmp: Path,
                     timeout: float) -> None:
    """Until QEMU exits: each ``NFSYNC <request>`` the guest prints is done over QMP."""
    deadline = time.monotonic() + timeout
    done = 0
    sock: socket.socket | None = None
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the kernel capture's boot did not finish")
        time.sleep(0.2)
        seen = re.findall(r"NFSYNC (\S+)", console.read_text(errors="replace")
                          if console.exists() else "")
        for request in seen[done:]:
            if sock is None:
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(qmp))
                sock.recv(65536)  # the greeting
                sock.sendall(b'{"execute": "qmp_capabilities"}\n')
                sock.recv(65536)
            sock.sendall(json.dumps(REQUESTS[request]).encode() + b"\n")
            sock.recv(65536)
        done = len(seen)
    if sock is not None:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path, help="scratch directory outside the repository")
    ap.add_argument("--no-write", action="store_true",
                    help="print the label counts only; leave the repository's files as they are")
    args = ap.parse_args(argv)
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tree, busybox = unpack(work)
    kernel = next((tree / "boot").glob("vmlinuz-*"))
    initrd = initramfs(work, tree, busybox)
    dumps = []
    for machine in MACHINES:  # fresh disks for each (the broken one is broken further)
        dumps.append(boot(work, kernel, initrd, disks(work), machine).read_text(errors="replace"))
    # one text: the shape cap sees both boots (each restarts at "boot")
    counts = label_dmesg("".join(d if d.endswith("\n") else d + "\n" for d in dumps),
                         write=not args.no_write)
    print(", ".join(f"{label}: {n}" for label, n in sorted(counts.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
