"""The kernel capture: how a ``dmesg -r`` dump is cut and labelled, the boot lines whose
labels the captures showed were wrong, and how the rig orders driver modules
(nanomodel/harvest/capture_kernel.py, scenarios_kernel.py, hil/kernel_capture.py)."""

from __future__ import annotations

import json
from pathlib import Path

from hil.kernel_capture import module_order
from nanomodel import realtext
from nanomodel.harvest.capture_kernel import dmesg_rows, label_dmesg
from nanomodel.harvest.scenarios_kernel import INIT, MODULES

DUMP = """<6>[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)
<6>[    0.000000] Command line: console=ttyS0 quiet panic=10
<13>[    2.682237] nfcapture: BEGIN kernel in qemu: a disk with unreadable sectors is read
<3>[ 13.35] I/O error, dev vda, sector 4096 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2
<3>[   13.354906] Buffer I/O error on dev vda, logical block 512, async page read
<6>[   13.4] ata4: SATA link down (SStatus 0 SControl 300)
<2>[   13.5] EXT4-fs (vdc): Remounting filesystem read-only
<6>[ 13.6] crashme[197]: segfault at 0 ip 0000000000401678 sp 00007ffc44b04620 error 4 in \
crashme[401000+78000]
console noise without a priority
"""


def test_records_are_labelled_with_their_level_and_the_step_that_made_them() -> None:
    rows = dmesg_rows(DUMP)
    assert [r["text"].split(":")[1].strip().split(" ")[0] for r in rows][:2] == [
        "Linux", "Command"]
    assert all(r["source"] == "linux" and r["text"].startswith("kernel: ") for r in rows)
    by_text = {r["text"].removeprefix("kernel: ").split(",")[0]: r for r in rows}
    io = by_text["I/O error"]
    assert (io["level"], io["label"], io["how"]) == (
        "error", "storage", "kernel in qemu: a disk with unreadable sectors is read")
    assert by_text["Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)"]["how"] == "boot"
    assert by_text["EXT4-fs (vdc): Remounting filesystem read-only"]["level"] == "crit"
    assert not any("nfcapture" in r["text"] or "console noise" in r["text"] for r in rows)
    crash = "crashme[197]: segfault at 0 ip 0000000000401678 sp 00007ffc44b04620 error 4 in "
    assert by_text[crash + "crashme[401000+78000]"]["label"] == "software"


def test_boot_chatter_the_rules_misread_is_decided_normal() -> None:
    """"panic=10" on the command line, an empty SATA port probed at boot: line decisions."""
    rows = {r["text"]: r for r in dmesg_rows(DUMP)}
    rows.update({r["text"]: r for r in dmesg_rows(
        "<4>[ 0.3] acpi PNP0A03:00: fail to add MMCONFIG information, can't access extended "
        "PCI configuration space under this bridge.")})
    for text in ("kernel: Command line: console=ttyS0 quiet panic=10",
                 "kernel: ata4: SATA link down (SStatus 0 SControl 300)",
                 "kernel: acpi PNP0A03:00: fail to add MMCONFIG information, can't access "
                 "extended PCI configuration space under this bridge."):
        assert rows[text]["label"] == "normal", rows[text]["reason"]
        assert rows[text]["reason"].startswith("line decision: ")
    # a link that goes down with a device behind it (SStatus not 0) keeps its template's label
    other = dmesg_rows("<6>[ 1.0] ata4: SATA link down (SStatus 1 SControl 300)")[0]
    assert other["label"] != "normal"


def test_label_dmesg_writes_the_linux_file_of_the_folder(tmp_path: Path) -> None:
    counts = label_dmesg(DUMP, folder=tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "linux.jsonl").read_text().splitlines()]
    assert sum(counts.values()) == len(rows) == 7
    assert label_dmesg(DUMP, write=False, folder=tmp_path / "none") == counts
    assert not (tmp_path / "none").exists()


def _module(root: Path, rel: str, depends: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    # what a .ko's .modinfo section holds: NUL-separated key=value strings
    path.write_bytes(b"\x7fELF...\x00license=GPL\x00depends=" + depends.encode()
                     + b"\x00intree=Y\x00name=" + path.stem.encode() + b"\x00")


def test_modules_load_after_what_they_depend_on(tmp_path: Path) -> None:
    _module(tmp_path, "kernel/fs/ext4/ext4.ko", "mbcache,jbd2,crc16")
    _module(tmp_path, "kernel/fs/jbd2/jbd2.ko", "")
    _module(tmp_path, "kernel/fs/mbcache.ko", "")
    _module(tmp_path, "kernel/lib/crc16.ko", "")
    _module(tmp_path, "kernel/drivers/usb/storage/usb-storage.ko", "usbcore,scsi_mod")
    _module(tmp_path, "kernel/drivers/usb/core/usbcore.ko", "usb-common")
    _module(tmp_path, "kernel/drivers/usb/common/usb-common.ko", "")
    _module(tmp_path, "kernel/drivers/scsi/scsi_mod.ko", "")
    order = module_order(tmp_path, ("usb-storage", "ext4", "jbd2"))
    assert order == [
        "kernel/drivers/usb/common/usb-common.ko", "kernel/drivers/usb/core/usbcore.ko",
        "kernel/drivers/scsi/scsi_mod.ko", "kernel/drivers/usb/storage/usb-storage.ko",
        "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko",
        "kernel/fs/ext4/ext4.ko",
    ]


def test_the_two_machines_differ_in_controllers_nics_and_cpus() -> None:
    from hil.kernel_capture import MACHINES

    q35, pc = (" ".join(MACHINES[m]) for m in ("q35", "pc"))
    assert "ahci" in q35 and "e1000" in q35 and "-smp 1" in q35
    assert "ide.0" in pc and "rtl8139" in pc and "-smp 2" in pc
    assert {"ata_piix", "8139too", "ahci", "e1000"} <= set(MODULES)


def test_every_request_init_can_make_is_one_the_rig_answers() -> None:
    import re

    from hil.kernel_capture import REQUESTS

    asked = set(re.findall(r"^\s*ask (\S+)$", INIT, re.M))
    assert asked and asked <= set(REQUESTS)
    assert REQUESTS["unplug-stick"]["arguments"] == {"id": "stickdev"}


def test_init_finds_its_disks_by_label_and_dumps_the_ring_buffer_last() -> None:
    assert "findfs LABEL=data" in INIT and "findfs LABEL=broken" in INIT
    assert INIT.rstrip().splitlines()[-3:] == ["dmesg -r > /dev/ttyS1", "sync", "poweroff -f"]
    assert "ext4" in MODULES and MODULES.index("crc32c_generic") < MODULES.index("ext4")


def test_the_committed_kernel_lines_are_a_boot_and_its_trouble() -> None:
    lines = realtext.load_captured_next(["linux"])
    hows = {c.how for c in lines}
    assert "boot" in hows and any("unreadable sectors" in h for h in hows)
    alerts = [c for c in lines if c.label != "normal"]
    assert len(lines) > 400 and 5 <= len(alerts) < 0.06 * len(lines)
    assert any("Out of memory: Killed process" in c.text for c in alerts)
    assert any("I/O error, dev" in c.text for c in alerts)
    # what the rig did over QMP when /init asked for it
    assert any("NIC Link is Down" in c.text for c in alerts)
    assert any("USB disconnect" in c.text for c in lines)
    assert any("attempt to access beyond end of device" in c.text for c in alerts)
