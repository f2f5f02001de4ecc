"""How the Linux kernel's printk family is harvested: call names, the prefix each call
writes (``dev_err`` → ``<driver> <device>: ``), and the default category per subtree."""

from __future__ import annotations

KERNEL_CALLS = (
    r"printk|printk_ratelimited|pr_(emerg|alert|crit|err|warn|warning|notice|info|cont)"
    r"(_ratelimited|_once)?"
    r"|dev_(emerg|alert|crit|err|warn|notice|info|printk)(_ratelimited|_once)?"
    r"|netdev_(emerg|alert|crit|err|warn|notice|info)|netif_(err|warn|info|notice)"
    r"|ata_(dev|link|port)_(err|warn|notice|info)|sd_printk|sdev_printk|scmd_printk"
    r"|ext4_msg|ext4_error|ext4_warning|ext4_error_inode|edac_printk|edac_mc_printk"
    r"|hub_(err|warn|info)|mmc_(err|warn)|jbd2_err|WARN|WARN_ONCE"
)
KERNEL_PREFIXES = {
    r"dev_.*|hub_.*": "%{kdev}: ",
    r"netdev_.*|netif_.*": "%{knetdev}: ",
    r"ata_dev_.*": "ata%{n}.00: ",
    r"ata_(link|port)_.*": "ata%{n}: ",
    r"sd_printk": "sd %{scsi}: [%{disk}] ",
    r"sdev_printk|scmd_printk": "sd %{scsi}: ",
    r"ext4_msg": "EXT4-fs (%{part}): ",
    r"ext4_error.*": "EXT4-fs error (device %{part}): %{func}:%{n}: comm %{comm}: ",
    r"ext4_warning": "EXT4-fs warning (device %{part}): %{func}:%{n}: ",
    r"edac_.*": "EDAC MC0: ",
}

KERNEL_PATHS = (
    ("drivers/hwmon/", "sensor"),
    ("drivers/iio/", "sensor"),
    ("drivers/w1/", "sensor"),
    ("drivers/power/", "power"),
    ("drivers/regulator/", "power"),
    ("drivers/acpi/battery", "power"),
    ("drivers/acpi/ac", "power"),
    ("drivers/net/", "network"),
    ("net/", "network"),
    ("fs/", "storage"),
    ("drivers/ata/", "storage"),
    ("drivers/scsi/", "storage"),
    ("drivers/mmc/", "storage"),
    ("drivers/nvme/", "storage"),
    ("drivers/md/", "storage"),
    ("block/", "storage"),
    ("drivers/usb/storage/", "storage"),
    ("mm/", "software"),
    ("kernel/", "software"),
    ("security/", "security"),
)
