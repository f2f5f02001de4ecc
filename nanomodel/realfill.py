"""Values for the placeholders of real message templates, and the prefixes real logs add.

:func:`fill` replaces printf conversions (``%s %d %lu %.100s %02x %m %zu``…), the
harvester's named placeholders (``%{unit}``, ``%{iface}``, ``%{kdev}``…) and slf4j's
``{}`` with values a device would log: the value is chosen from the words just before
the placeholder (``port %d`` gets a port, ``from %s`` an address, ``user %s`` a user
name), so rendered lines read like logs rather than like templates. Pure functions of
the template and a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import re

CONVERSION = re.compile(
    r"%\{(?P<name>\w+)\}"
    r"|%(?P<flags>[-+ #0']*)(?P<width>\d+|\*)?(?:\.(?P<prec>\d+|\*))?(?P<len>hh|h|ll|l|j|z|t|L|q)?"
    r"(?P<conv>[diouxXeEfgGcspmn%])"
    r"|\{\}"
)

USERS = [
    "root",
    "admin",
    "pi",
    "ubuntu",
    "operator",
    "test",
    "oracle",
    "git",
    "deploy",
    "user",
    "guest",
    "support",
    "ftp",
    "www-data",
    "postgres",
    "debian",
    "ansible",
    "jenkins",
    "service",
    "mqtt",
]
IFACES = [
    "eth0",
    "eth1",
    "wlan0",
    "enp3s0",
    "end0",
    "usb0",
    "br0",
    "wg0",
    "tun0",
    "enx00e04c680001",
    "wlp2s0",
]
UNITS = [
    "ssh.service",
    "nginx.service",
    "mosquitto.service",
    "systemd-networkd.service",
    "chrony.service",
    "nanofleet-agent.service",
    "cron.service",
    "rsyslog.service",
    "dnsmasq.service",
    "user@1000.service",
    "session-4.scope",
    "apt-daily.timer",
    "logrotate.service",
    "var-log.mount",
    "dev-mmcblk0p2.device",
    "systemd-journald.socket",
    "NetworkManager.service",
    "bluetooth.service",
    "modbus-bridge.service",
    "docker.service",
    "getty@tty1.service",
    "e2scrub_all.timer",
]
DISKS = ["sda", "sdb", "mmcblk0", "nvme0n1", "mmcblk1"]
PARTS = ["sda1", "sda2", "sdb1", "mmcblk0p1", "mmcblk0p2", "nvme0n1p1", "mmcblk1p1", "dm-0", "md0"]
KDEVS = [
    "usb 1-1",
    "usb 1-1.3",
    "usb 2-1.4",
    "xhci_hcd 0000:00:14.0",
    "mmc0",
    "sdhci-pltfm 7e300000.mmc",
    "i2c i2c-1",
    "ahci 0000:00:17.0",
    "lan78xx 1-1.1.1:1.0",
    "cdc_acm 1-1.2:1.0",
    "brcmfmac mmc1:0001:1",
    "thermal thermal_zone0",
    "raspberrypi-hwmon raspberrypi-hwmon",
    "nvme nvme0",
    "pcieport 0000:00:1c.0",
]
KNETDEVS = [
    "lan78xx 1-1.1.1:1.0 eth0",
    "e1000e 0000:00:1f.6 eth0",
    "smsc95xx 1-1.1:1.0 eth0",
    "r8169 0000:02:00.0 enp2s0",
    "igb 0000:03:00.0 eth1",
    "brcmfmac mmc1:0001:1 wlan0",
]
HOSTS = [
    "gw.site4.lan",
    "broker.local",
    "pool.ntp.org",
    "time.example.org",
    "mqtt.plant2.example.net",
    "fleet.example.com",
    "localhost",
    "ns1.example.net",
    "updates.example.com",
    "edge-07.lan",
]
ERRNOS = [
    "No such file or directory",
    "Permission denied",
    "Connection refused",
    "Input/output error",
    "Device or resource busy",
    "Operation not permitted",
    "Connection timed out",
    "No space left on device",
    "Resource temporarily unavailable",
    "Invalid argument",
    "Connection reset by peer",
    "Network is unreachable",
    "No route to host",
    "Broken pipe",
    "Read-only file system",
    "Cannot allocate memory",
    "Protocol error",
    "Bad file descriptor",
]
PATHS = [
    "/etc/ssh/sshd_config",
    "/var/lib/nanofleet/state.json",
    "/run/systemd/resolve/stub-resolv.conf",
    "/home/pi/.ssh/authorized_keys",
    "/var/log/syslog",
    "/etc/mosquitto/mosquitto.conf",
    "/var/lib/dhcp/dhclient.eth0.leases",
    "/etc/chrony/chrony.conf",
    "/dev/mmcblk0p2",
    "/tmp/upload.bin",
    "/var/spool/cron/crontabs/root",
    "/etc/nginx/nginx.conf",
    "/usr/sbin/sshd",
    "/srv/data/export.csv",
    "/etc/wpa_supplicant/wpa_supplicant.conf",
    "/var/lib/systemd/timesync/clock",
    "/boot/firmware",
]
CLIENTS = [
    "sensor-07",
    "pump-12",
    "auto-3F2A9C1B-77D0",
    "gw-north-2",
    "mosq-PxW1b3",
    "hvac-ctl",
    "meter-0042",
    "paho8841203",
    "edge-agent-5",
    "cam-dock-1",
]
TOPICS = [
    "sensors/pump-07/temp",
    "nanofleet/v1/dev/gw-3/status",
    "site4/plc/alarms",
    "$SYS/broker/uptime",
    "home/boiler/state",
    "plant2/meter/+/power",
]
KEYS = [
    "ED25519 SHA256:Xq3N9bV0aYt8TzKcE1uPq5l4mHh2sWfR7dJgB6oLxQk",
    "RSA SHA256:k7Gc1oZ2eTn4Yp0wQ9mB3rV8sXa5LdHfJ6uIyE2tNcM",
    "ECDSA SHA256:Mv8bN2cX4zL1kJ7hG5fD3sA9pO0iU6yT8rE4wQ2eRtY",
]
WORDS = [
    "default",
    "main",
    "ok",
    "enabled",
    "none",
    "auto",
    "primary",
    "local",
    "system",
    "config",
    "running",
    "idle",
    "active",
    "standard",
    "public",
    "internal",
    "v2",
    "generic",
    "static",
]
SIGNALS = ["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL", "SIGSEGV", "SIGABRT", "SIGUSR1"]
COMMS = [
    "python3",
    "nginx",
    "mosquitto",
    "sshd",
    "systemd",
    "kworker/u8:2",
    "jbd2/mmcblk0p2-8",
    "rsync",
    "nanofleet-agent",
    "java",
    "node",
    "containerd",
]
FUNCS = [
    "ext4_find_entry",
    "ext4_lookup",
    "htree_dirblock_to_tree",
    "ext4_iget",
    "__ext4_get_inode_loc",
    "mm_answer_authserv",
    "process_request",
    "input_userauth_request",
    "do_connection",
    "main",
]
DISCONNECT_REASONS = [
    "Bye Bye",
    "disconnected by user",
    "Normal Shutdown, Thank you for playing",
    "Closed due to user request.",
    "Session closed",
]
PAM_SERVICES = [
    "sshd:auth",
    "sshd:session",
    "login:auth",
    "su:session",
    "cron:session",
    "sudo:auth",
    "sudo:session",
    "systemd-user:session",
    "sshd:account",
]

# Context words → value kind; checked on the text just before the placeholder.
_CONTEXT: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"disconnect from \S+ port \S+: ?$|disconnect\S*:\S*$", re.I), "reason"),
    (re.compile(r"\bport:? ?$", re.I), "port"),
    (re.compile(r"\b(pid|process|child|pgid|ppid)[ =:]*\(?$", re.I), "pid"),
    (re.compile(r"\b(uid|gid|euid)[ =:]*$", re.I), "uid"),
    (
        re.compile(
            r"\b(user|username|login|logname|ruser|for user|account|invalid user|for)[ =:'\"(]*$",
            re.I,
        ),
        "user",
    ),
    (
        re.compile(
            r"\b(from|to|address|addr|ip|rhost|peer|host|server|client|gateway|router|via|nameserver|"
            r"source|dst|src|at|by)[ =:'\"(\[]*$",
            re.I,
        ),
        "addr",
    ),
    (
        re.compile(r"\b(interface|iface|link|dev|device \(|nic|on|wlan|bridge)[ =:'\"(]*$", re.I),
        "iface",
    ),
    (re.compile(r"\b(unit|service|job|scope|target|mount|timer)[ =:'\"]*$", re.I), "unit"),
    (re.compile(r"\b(disk|drive|block device|partition|volume|array)[ =:'\"]*$", re.I), "disk"),
    (
        re.compile(
            r"\b(file|path|directory|dir|config|open|opening|reading|writing|stat|"
            r"unlink|rename|chdir|exec|script|socket|keyfile|certificate|cafile)[ =:'\"(]*$",
            re.I,
        ),
        "path",
    ),
    (re.compile(r"\b(topic)[ =:'\"]*$", re.I), "topic"),
    (re.compile(r"\b(signal|sig)[ =:]*$", re.I), "signal"),
    (re.compile(r"\b(key|fingerprint)[ =:]*$", re.I), "key"),
    (re.compile(r"\b(comm|command|cmd|program|binary|process name)[ =:'\"(]*$", re.I), "comm"),
    (re.compile(r"\b(version|release|v)[ =:]*$", re.I), "version"),
    (
        re.compile(
            r"\b(sec|secs|seconds|timeout|interval|after|in|delay|retry in|uptime|for)[ =:]*$", re.I
        ),
        "duration",
    ),
    (
        re.compile(
            r"\b(name|hostname|domain|fqdn|zone|ntp server|pool|query|lookup|resolve|resolving)"
            r"[ =:'\"]*$",
            re.I,
        ),
        "host",
    ),
]


def ipv4(rng: random.Random) -> str:
    net = rng.choice(
        [
            "10.{}.{}.{}",
            "192.168.{}.{}",
            "172.16.{}.{}",
            "203.0.113.{}",
            "198.51.100.{}",
            "{}.{}.{}.{}",
        ]
    )
    return net.format(*(rng.randint(1, 254) for _ in range(net.count("{}"))))


def ipv6(rng: random.Random) -> str:
    return "fe80::" + ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(4))


def _value(kind: str, conv: str, rng: random.Random, source: str = "") -> str:
    numeric = conv in "diouxX"
    if kind == "port":
        return str(
            rng.choice(
                [22, 1883, 8883, 443, 80, rng.randint(1024, 65535), rng.randint(30000, 61000)]
            )
        )
    if kind == "pid":
        return str(rng.randint(2, 65000))
    if kind == "uid":
        return str(rng.choice([0, 0, 1000, 1001, 33, 105, 65534]))
    if kind == "duration" and numeric:
        return str(rng.choice([1, 2, 5, 10, 30, 60, 90, 120, 300, 600, 3600, rng.randint(1, 9999)]))
    if numeric:
        return str(rng.choice([0, 1, 2, 3, 4, 5, 8, 16, 22, 64, 100, 255, rng.randint(0, 99999)]))
    pools: dict[str, list[str]] = {
        "user": USERS,
        "iface": IFACES,
        "unit": UNITS,
        "disk": DISKS + PARTS,
        "path": PATHS,
        "topic": TOPICS,
        "signal": SIGNALS,
        "key": KEYS,
        "comm": COMMS,
        "reason": DISCONNECT_REASONS,
    }
    if kind in pools:
        return rng.choice(pools[kind])
    if kind == "addr":
        r = rng.random()
        return ipv4(rng) if r < 0.7 else (rng.choice(HOSTS) if r < 0.9 else ipv6(rng))
    if kind == "host":
        return rng.choice(HOSTS)
    if kind == "version":
        return rng.choice(["2.0.11", "9.2p1", "4.3", "1.42.4", "252", "3.8.0", "1.22.1"])
    if kind == "duration":
        return rng.choice(["1.502s", "30s", "2min 3.118s", "120ms", "5.004s", "1h 2min"])
    if source == "linux":
        return rng.choice(KERNEL_WORDS)
    return rng.choice(WORDS + IFACES[:3] + CLIENTS[:4] + UNITS[:4] + PATHS[:3])


# Kernel device prefixes by the part of the tree a message comes from (origin path).
KDEVS_BY_PATH: list[tuple[str, list[str]]] = [
    (
        "drivers/usb/",
        [
            "usb 1-1",
            "usb 1-1.3",
            "usb 2-1.4",
            "xhci_hcd 0000:00:14.0",
            "cdc_acm 1-1.2:1.0",
            "ftdi_sio 1-1.4:1.0",
            "usb-storage 1-1.2:1.0",
        ],
    ),
    ("drivers/mmc/", ["mmc0", "mmc1", "sdhci-pltfm 7e300000.mmc", "mmcblk0"]),
    (
        "drivers/hwmon/",
        [
            "lm75 1-0048",
            "raspberrypi-hwmon raspberrypi-hwmon",
            "nct6775 nct6775.656",
            "ina2xx 1-0040",
            "coretemp coretemp.0",
            "pwm-fan pwm-fan",
        ],
    ),
    ("drivers/iio/", ["bme280 1-0076", "ads1015 1-0048", "sht3x 1-0044", "mcp3008 spi0.0"]),
    ("drivers/w1/", ["w1_slave_driver 28-00000a1b2c3d", "w1_bus_master1"]),
    (
        "drivers/power/",
        [
            "bq27xxx-battery 1-0055",
            "axp20x-battery-power-supply axp20x-battery",
            "rpi-poe-power-supply",
            "max17040 1-0036",
        ],
    ),
    (
        "drivers/regulator/",
        ["regulator regulator.3", "rpi-regulator 1-0045", "fixedregulator vdd-3v3"],
    ),
    (
        "drivers/thermal/",
        [
            "thermal thermal_zone0",
            "bcm2711_thermal fd5d2200.thermal",
            "rockchip-thermal ff260000.tsadc",
        ],
    ),
    ("drivers/ata/", ["ahci 0000:00:17.0", "ata_piix 0000:00:01.1"]),
    ("drivers/nvme/", ["nvme nvme0"]),
    (
        "drivers/net/",
        ["lan78xx 1-1.1.1:1.0", "smsc95xx 1-1.1:1.0", "e1000e 0000:00:1f.6", "r8169 0000:02:00.0"],
    ),
    ("drivers/bluetooth/", ["hci_uart_bcm serial0-0", "btusb 1-1.3:1.0"]),
    ("drivers/i2c/", ["i2c i2c-1", "i2c-bcm2835 fe804000.i2c"]),
    ("drivers/gpio/", ["gpiochip0", "gpio-mockup gpio-mockup"]),
    ("drivers/tty/", ["serial8250 serial8250", "fe201000.serial"]),
]
KERNEL_WORDS = [
    "usb-storage",
    "xhci_hcd",
    "mmc0",
    "sda",
    "eth0",
    "cpufreq",
    "EXT4-fs",
    "md0",
    "sd 0:0:0:0",
    "thermal",
    "lan78xx",
    "brcmfmac",
    "i2c-1",
    "gpiochip0",
    "hci0",
    "wlan0",
]


def _named(name: str, rng: random.Random, origin: str = "") -> str:
    kdevs = next((devs for prefix, devs in KDEVS_BY_PATH if origin.startswith(prefix)), KDEVS)
    table: dict[str, list[str]] = {
        "unit": UNITS,
        "iface": IFACES,
        "sysname": DISKS + PARTS + IFACES[:3],
        "kdev": kdevs,
        "knetdev": KNETDEVS,
        "disk": DISKS,
        "part": PARTS,
        "func": FUNCS,
        "comm": COMMS,
        "pamsvc": PAM_SERVICES,
    }
    if name in table:
        return rng.choice(table[name])
    if name == "scsi":
        return f"{rng.randint(0, 3)}:0:0:0"
    return str(rng.randint(1, 4) if name == "n" else rng.randint(0, 999))


# nginx's own conversions (ngx_vslprintf): %V is a string, %ui/%uz/%O/%T/%M numbers.
_NGX = re.compile(r"%([-0-9*]*)(?:ui|uz|uD|uA|xi|xD|O|T|M|i|z|D)(?![a-z])")


def fill(template: str, rng: random.Random, source: str = "", origin: str = "") -> str:
    """The template with every placeholder replaced by a plausible value.

    ``source`` and ``origin`` (the template's daemon and file) pick values that fit: a
    kernel hwmon driver's device prefix is a sensor chip, nginx's ``%V`` is a string.
    """
    if source == "apache2":  # APR's %pI (address), %pm (error), %pT (thread id), %pp (pointer)
        template = template.replace("%pI", "%s:%d").replace("%pm", "%m").replace("%pT", "%lu")
        template = template.replace("%pp", "%p").replace("%pt", "%lu")
    if source == "nginx":
        template = _NGX.sub(r"%\1d", template.replace("%V", "%s").replace("%N", ""))
    out: list[str] = []
    pos = 0
    for m in CONVERSION.finditer(template):
        out.append(template[pos : m.start()])
        pos = m.end()
        if m.group(0) == "{}":
            before = "".join(out)
            if before.endswith("0x"):  # slf4j has no %x: "0x{}" is a hex number (ZooKeeper zxids)
                out.append(f"{rng.randint(0, 0xFFFFFFFFF):x}")
            else:
                out.append(_value(_kind(before), "s", rng, source))
            continue
        if m.group("name"):
            out.append(_named(m.group("name"), rng, origin))
            continue
        conv = m.group("conv")
        if conv == "%":
            out.append("%")
        elif conv == "n":
            continue
        elif conv == "m":
            out.append(rng.choice(ERRNOS))
        elif conv == "c":
            out.append(rng.choice("abcxyzRW"))
        elif conv in "xX":
            width = int(m.group("width")) if m.group("width") and m.group("width").isdigit() else 0
            text = f"{rng.randint(0, 255 if width == 2 else 0xFFFFFF):0{width}x}"
            out.append(text.upper() if conv == "X" else text)
        elif conv == "p":
            out.append(f"0x{rng.randint(0xFFFF000000000000, 0xFFFFFFFFFFFFFFFF):016x}")
        elif conv in "eEfgG":
            out.append(f"{rng.uniform(0, 200):.{rng.choice([1, 2, 3, 6])}f}")
        else:
            value = _value(_kind("".join(out)), conv, rng, source)
            if value.startswith("SIG") and "".join(out).endswith("SIG"):
                value = value[3:]
            prec = m.group("prec")
            out.append(value[: int(prec)] if prec and prec.isdigit() and conv == "s" else value)
    out.append(template[pos:])
    return "".join(out)


def _kind(before: str) -> str:
    tail = before[-40:]
    for pattern, kind in _CONTEXT:
        if pattern.search(tail):
            return kind
    return "word"
