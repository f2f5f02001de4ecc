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

from nanomodel.realvalues import (
    CLIENTS,
    COMMS,
    DISCONNECT_REASONS,
    DISKS,
    ERRNOS,
    FUNCS,
    HOSTS,
    IFACES,
    INETD_SERVICES,
    KDEVS,
    KDEVS_BY_PATH,
    KERNEL_WORDS,
    KEYS,
    KNETDEVS,
    PAM_SERVICES,
    PARTS,
    PATHS,
    SIGNALS,
    TOPICS,
    UNITS,
    USERS,
    WEB_PATHS,
    WORDS,
)

CONVERSION = re.compile(
    r"%\{(?P<name>\w+)\}"
    r"|%(?P<flags>[-+ #0']*)(?P<width>\d+|\*)?(?:\.(?P<prec>\d+|\*))?(?P<len>hh|h|ll|l|j|z|t|L|q)?"
    r"(?P<conv>[diouxXeEfgGcspmn%])"
    r"|\{\}"
)

# The values a kind of slot draws from (built once: _value runs for every slot of every
# rendered line, every epoch).
_POOLS: dict[str, list[str]] = {
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
_WEB_SERVER_PATHS = WEB_PATHS + PATHS[:4]

_CONTEXT: list[tuple[re.Pattern[str], str]] = [
    # before the general words below: "maps to" and "getaddrinfo for" name hosts (sshd's
    # reverse-DNS checks), the bracket after a host its address, "does not exist:" a path
    (re.compile(r"\b(maps to|getaddrinfo for)[ =:'\"]*$", re.I), "host"),
    (re.compile(r"\b(for|to) \S+ \[$", re.I), "addr"),
    (re.compile(r"\bdoes not exist: $", re.I), "path"),
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
    if kind == "path" and source in ("apache2", "nginx", "lighttpd"):
        return rng.choice(_WEB_SERVER_PATHS)
    if kind in _POOLS:
        return rng.choice(_POOLS[kind])
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
        "inetsvc": INETD_SERVICES,
    }
    if name in table:
        return rng.choice(table[name])
    if name == "qid":  # sendmail's queue id: date/time letters, a sequence, the pid
        head = "".join(rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx")
                       for _ in range(8))
        return f"{head}{rng.randint(0, 999999):06d}"
    if name == "peer":  # named's client address: <address>#<port>
        return f"{ipv4(rng) if rng.random() < 0.8 else ipv6(rng)}#{rng.randint(1024, 65535)}"
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
    # APR's %pI (address), %pm (error), %pT (thread id), %pp (pointer): Apache and mod_jk2
    if source in ("apache2", "mod_jk2"):
        template = template.replace("%pI", "%s:%d").replace("%pm", "%m").replace("%pT", "%lu")
        template = template.replace("%pp", "%p").replace("%pt", "%lu")
    if source == "slurm":  # Slurm's log.c: %pJ job, %pS/%ps step, %pA address (log.h)
        template = template.replace("%pJ", "JobId=%u").replace("%pS", "JobId=%u StepId=%u")
        template = template.replace("%ps", "StepId=%u.%u").replace("%pA", "%s:%d")
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
