"""What the kernel capture does inside its virtual machine: Debian's own kernel booted
under QEMU with a BusyBox initramfs whose ``/init`` is :data:`INIT` (the booting is the
rig's, :mod:`hil.kernel_capture`).

A device's kernel log is mostly the boot (CPU, memory, ACPI, PCI, clocks, the drivers of
its hardware) and then little, until hardware or software fails. The machines have the
hardware a small x86 box or a cluster node has (``hil.kernel_capture.MACHINES``): virtio
disks, a SATA disk on an AHCI controller with five empty ports or an IDE disk, an e1000 or
RTL8139 NIC, a USB 3 controller with a memory stick and a keyboard. After the boot
``/init`` loads the drivers the way udev would (``insmod``, dependencies first; a driver
for hardware the machine lacks loads and finds nothing) and runs the scenarios, each
after a marker it writes into the kernel log itself (``/dev/kmsg``: ``nfcapture: BEGIN
<how>``):

- healthy: an ext4 file system mounted, written, checked and unmounted; the NIC up with a
  DHCP lease from QEMU's own user-mode network (``restrict=on``: nothing leaves the VM);
  the USB stick mounted and unmounted;
- trouble: the network cable pulled and plugged back and the USB stick pulled out while
  mounted (``/init`` asks the host, ``NFSYNC <request>`` on the console, and the rig does
  it over QMP), a disk that returns read errors (QEMU's ``blkdebug`` injects EIO), an ext4 file
  system whose inode a crash cleared (``debugfs clri``) used (mounted ``errors=remount-ro``,
  as Debian's installer mounts the root file system), a program that dereferences
  a null pointer, a program that eats all memory (the OOM killer), a file system filled up.

At the end ``/init`` dumps the ring buffer (``dmesg -r``: each line with its priority) to
the second serial port and powers off.
"""

from __future__ import annotations

# Drivers for the machine's devices (the module files' names); their dependencies come
# from each module's own .modinfo (hil.kernel_capture.module_order)
MODULES = (
    "virtio_pci", "virtio_blk", "virtio_net", "e1000", "8139too", "ahci", "ata_piix", "sd_mod",
    "xhci-pci",
    "usb-storage", "usbhid", "hid-generic", "crc32c_generic", "ext4",
)

# A null pointer dereference, as a buggy daemon does it (static, no libc in the initramfs)
CRASH_C = """#include <stdio.h>
int main(void) { volatile int *p = 0; puts("reading config"); return *p; }
"""
# Memory eaten 1 MiB at a time, each page touched, until the OOM killer ends it
MEMHOG_C = """#include <stdlib.h>
#include <string.h>
int main(void) {
    for (;;) { char *p = malloc(1 << 20); if (!p) return 1; memset(p, 1, 1 << 20); }
}
"""

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark() { echo "<13>nfcapture: BEGIN $*" > /dev/kmsg; }
mark "kernel in qemu: the drivers of the machine's devices load"
for m in $(cat /modules.order); do insmod "/lib/modules/$m"; done
sleep 3
mkdir -p /mnt/data /mnt/stick /mnt/broken
# the disks by label (the kernel names them in the order it finds them), the failing one
# (raw, 16 MiB) by its size
data=$(findfs LABEL=data); broken=$(findfs LABEL=broken); stick=$(findfs LABEL=stick)
for d in /sys/block/vd*; do [ "$(cat "$d/size")" = 32768 ] && failing=/dev/${d##*/}; done
mark "kernel in qemu: a healthy ext4 file system mounted, written, unmounted"
mount -t ext4 "$data" /mnt/data && echo reading-1 > /mnt/data/log.txt && sync && umount /mnt/data
mark "kernel in qemu: the network comes up and gets a lease"
ip link set lo up
ip link set eth0 up
sleep 3
udhcpc -i eth0 -n -q -s /bin/true -t 3 -T 2
mark "kernel in qemu: the USB stick is mounted and unmounted"
mount -t ext4 "$stick" /mnt/stick && ls /mnt/stick > /dev/null && umount /mnt/stick
mark "kernel in qemu: a disk with unreadable sectors is read"
dd if="$failing" of=/dev/null bs=64k 2> /dev/null
mark "kernel in qemu: an ext4 file system with a cleared inode is used"
if mount -t ext4 -o errors=remount-ro "$broken" /mnt/broken; then
  ls -l /mnt/broken > /dev/null; cat /mnt/broken/config.txt > /dev/null; umount /mnt/broken
fi
mark "kernel in qemu: the network cable is pulled and plugged back"
ask() { echo "NFSYNC $1" > /dev/ttyS0; sleep 4; }
ask link-down
ask link-up
mark "kernel in qemu: the USB stick is pulled out while mounted"
if mount -t ext4 "$stick" /mnt/stick; then
  ask unplug-stick
  ls /mnt/stick > /dev/null 2>&1; echo x > /mnt/stick/late.txt 2> /dev/null; sync
  umount /mnt/stick 2> /dev/null
fi
mark "kernel in qemu: a program dereferences a null pointer"
/crashme
mark "kernel in qemu: a program eats all memory"
/memhog
sleep 1
mark "kernel in qemu: power off"
dmesg -r > /dev/ttyS1
sync
poweroff -f
"""
