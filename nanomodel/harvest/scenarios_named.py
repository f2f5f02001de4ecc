"""The BIND capture scenario: a primary name server for a plant's zones and a secondary
that copies them, queried by the plant's hosts for a while, then the trouble a DNS
admin meets.

Both ``named`` run as Debian runs them (``named -u bind``, logging to syslog's ``daemon``
facility), each in a mount namespace of its own where ``/etc/bind`` (configuration, zone
files, key), ``/var/cache/bind`` and ``/run/named`` are scratch directories (nothing of
this machine's is read or changed, and the paths the lines name are the packaged ones):
the primary in the server namespace (10.77.0.1 and fd77::1), the secondary in the client
namespace (10.77.0.2). Nothing leaves the namespaces: the secondary also serves a small root zone
and ``example.``, and the primary's root hints name it, so the primary resolves names
outside the plant as a site resolver does (DNSSEC validation off, as on many internal
resolvers: the root here is not the signed one).

- Healthy: both start (BIND's long start-up banner, the zones loaded, the secondary's
  first transfer), the plant's hosts ask for names with query logging on (``rndc
  querylog``), the zone is edited and reloaded (notifies, the secondary's transfer of the
  new serial), ``rndc reconfig``/``flush``/``status``, a stop and a start.
- Trouble: queries and a zone transfer from a host outside the allowed list, a dynamic
  update refused, a zone file with an error at reload, a secondary zone whose primary is
  unreachable, a start with a broken ``named.conf`` (named refuses to start).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    SERVER,
    SERVER6,
    SRV,
    Proc,
    _stop_pidfile,
    in_mount_ns,
    marker,
    run_in,
    run_many,
)

SECONDARY = "10.77.0.2"
# A host outside allow-query/allow-transfer (the last client address is TCP wrappers'
# refused host elsewhere; this one is a stranger to DNS only)
STRANGER = CLIENT_HOSTS[-2]
ZONE = "plant.lan"
HOSTS = ("gw", "ns1", "ns2", "mqtt", "historian", "scada", "plc-01", "plc-02", "cam-07", "ws-03")


def _zone(serial: int, broken: bool = False) -> str:
    records = "".join(
        f"{name}\tIN\tA\t10.77.0.{10 + i}\n" for i, name in enumerate(HOSTS)
    )
    text = (
        f"$TTL 300\n@\tIN\tSOA\tns1.{ZONE}. hostmaster.{ZONE}. "
        f"({serial} 60 30 604800 300)\n@\tIN\tNS\tns1.{ZONE}.\n@\tIN\tNS\tns2.{ZONE}.\n"
        f"@\tIN\tMX\t10 mqtt.{ZONE}.\n{records}www\tIN\tCNAME\thistorian.{ZONE}.\n"
        f"ns1\tIN\tAAAA\t{SERVER6}\n"
    )
    # an admin's typo: a record with no data, and an unterminated parenthesis
    return text + "plc-03\tIN\tA\n(\n" if broken else text


def _reverse(serial: int) -> str:
    ptr = "".join(f"{10 + i}\tIN\tPTR\t{n}.{ZONE}.\n" for i, n in enumerate(HOSTS))
    return (
        f"$TTL 300\n@\tIN\tSOA\tns1.{ZONE}. hostmaster.{ZONE}. ({serial} 60 30 604800 300)\n"
        f"@\tIN\tNS\tns1.{ZONE}.\n{ptr}"
    )


def _conf(listen: str, zones: str, extra: str = "") -> str:
    """named.conf with Debian's paths: each instance's scratch directories are mounted
    over /etc/bind, /var/cache/bind and /run/named (:func:`_named`)."""
    return f"""include "/etc/bind/rndc.key";
controls {{ inet 127.0.0.1 port 953 allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};
options {{
\tdirectory "/var/cache/bind";
\tlisten-on {{ {listen}; }};
{extra}\tallow-query {{ 10.77.0.0/26; 127.0.0.1; }};
\tallow-recursion {{ 10.77.0.0/26; 127.0.0.1; }};
\tdnssec-validation no;
}};
{zones}"""


def _prepare(work: Path) -> tuple[Path, Path]:
    """Two instances' scratch trees, each ``etc`` (/etc/bind), ``cache`` (/var/cache/bind)
    and ``run`` (/run/named)."""
    prim, sec = work / "named-primary", work / "named-secondary"
    for d in (prim, sec):
        shutil.rmtree(d, ignore_errors=True)
        for sub in ("etc", "cache", "run"):
            (d / sub).mkdir(parents=True)
        subprocess.run(
            ["rndc-confgen", "-a", "-c", str(d / "etc" / "rndc.key")], check=True,
            capture_output=True,
        )
    (prim / "etc" / f"db.{ZONE}").write_text(_zone(2026120701))
    (prim / "etc" / "db.10.77.0").write_text(_reverse(2026120701))
    (prim / "etc" / "db.root").write_text(
        f". 3600000 IN NS a.root.test.\na.root.test. 3600000 IN A {SECONDARY}\n")
    soa = "IN SOA a.root.test. hostmaster.root.test. (1 3600 600 86400 300)"
    (sec / "etc" / "db.root-local").write_text(
        f"$TTL 3600\n. {soa}\n. IN NS a.root.test.\na.root.test. IN A {SECONDARY}\n"
        f"example. IN NS ns.example.\nns.example. IN A {SECONDARY}\n"
    )
    vendor = "".join(f"updates{i}.vendor IN A 192.0.2.{20 + i}\n" for i in range(6))
    (sec / "etc" / "db.example").write_text(
        f"$TTL 3600\n@ IN SOA ns.example. hostmaster.example. (1 3600 600 86400 300)\n"
        f"@ IN NS ns.example.\nns IN A {SECONDARY}\n{vendor}"
    )
    prim_zones = (
        f'zone "{ZONE}" {{ type primary; file "/etc/bind/db.{ZONE}"; '
        f"allow-transfer {{ {SECONDARY}; }}; also-notify {{ {SECONDARY}; }}; "
        f"allow-update {{ none; }}; }};\n"
        f'zone "0.77.10.in-addr.arpa" {{ type primary; file "/etc/bind/db.10.77.0"; '
        f"allow-transfer {{ {SECONDARY}; }}; }};\n"
        'zone "." { type hint; file "/etc/bind/db.root"; };\n'
    )
    sec_zones = (
        'zone "." { type primary; file "/etc/bind/db.root-local"; };\n'
        'zone "example" { type primary; file "/etc/bind/db.example"; };\n'
        f'zone "{ZONE}" {{ type secondary; primaries {{ {SERVER}; }}; '
        f'file "/var/cache/bind/db.{ZONE}"; }};\n'
        # a zone of a site whose primary is gone: the secondary keeps trying
        'zone "lab.lan" { type secondary; primaries { 10.77.0.200; }; '
        'file "/var/cache/bind/db.lab.lan"; };\n'
    )
    (prim / "etc" / "named.conf").write_text(
        _conf(f"{SERVER}; 127.0.0.1", prim_zones,
              f"\tlisten-on-v6 {{ {SERVER6}; }};\n\tnotify yes;\n"))
    (sec / "etc" / "named.conf").write_text(
        _conf(f"{SECONDARY}; 127.0.0.1", sec_zones, "\tlisten-on-v6 { none; };\n"))
    for d in (prim, sec):
        for sub in ("etc", "cache", "run"):
            shutil.chown(d / sub, "root" if sub == "etc" else "bind", "bind")
            (d / sub).chmod(0o2775 if sub == "etc" else 0o775)
        for f in (d / "etc").iterdir():
            shutil.chown(f, "root", "bind")
            f.chmod(0o640)
    return prim, sec


def _named(ns: str, d: Path) -> None:
    """named as Debian's unit starts it (``named -u bind``: it forks, logs to syslog),
    in a mount namespace of its own where ``d``'s trees are its packaged directories."""
    binds = {d / "etc": "/etc/bind", d / "cache": "/var/cache/bind", d / "run": "/run/named"}
    run_in(ns, *in_mount_ns(binds, "exec named -u bind"), timeout=30)


def _rndc(ns: str, d: Path, *cmd: str) -> None:
    run_in(ns, "rndc", "-k", str(d / "etc" / "rndc.key"), "-s", "127.0.0.1", *cmd, timeout=30)


def _dig(host: str, server: str, *query: str) -> tuple[str, ...]:
    return (CLI, "dig", "-b", host, f"@{server}", "+tries=1", "+time=3", *query)


def _queries(rounds: int) -> list[tuple[str, ...]]:
    jobs: list[tuple[str, ...]] = []
    for r in range(rounds):
        for i, host in enumerate(CLIENT_HOSTS[:24]):
            name = HOSTS[(i + r) % len(HOSTS)]
            kind = ("A", "AAAA", "MX", "A")[(i + r) % 4]
            jobs.append(_dig(host, SERVER, f"{name}.{ZONE}", kind))
            if (i + r) % 5 == 0:
                jobs.append(_dig(host, SERVER, "-x", f"10.77.0.{10 + (i % len(HOSTS))}"))
            if (i + r) % 7 == 0:  # a name that does not exist, a name outside the plant
                jobs.append(_dig(host, SERVER, f"plc-{20 + i}.{ZONE}", "A"))
                jobs.append(_dig(host, SERVER, f"updates{r}.vendor.example", "A"))
    return jobs


def named(work: Path) -> list[Proc]:
    prim, sec = _prepare(work)
    marker("named in netns: primary for plant.lan starts")
    _named(SRV, prim)
    time.sleep(3)
    marker("named in netns: secondary starts and transfers plant.lan")
    _named(CLI, sec)
    time.sleep(6)
    marker("named in netns: query logging on; the plant's hosts look up names")
    _rndc(SRV, prim, "querylog", "on")
    run_many(_queries(3), workers=6)
    marker("named in netns: rndc status and a cache flush")
    _rndc(SRV, prim, "status")
    _rndc(SRV, prim, "flush")
    marker("named in netns: the zone is edited (new serial) and reloaded; notify and transfer")
    (prim / "etc" / f"db.{ZONE}").write_text(_zone(2026120702))
    _rndc(SRV, prim, "reload", ZONE)
    time.sleep(4)
    marker("named in netns: rndc reconfig")
    _rndc(SRV, prim, "reconfig")
    time.sleep(1)
    marker("named in netns: more lookups")
    run_many(_queries(2), workers=6)
    marker("named in netns: query logging off")
    _rndc(SRV, prim, "querylog", "off")
    marker("named in netns: a host outside the allowed networks asks and tries a transfer")
    run_many([_dig(STRANGER, SERVER, f"scada.{ZONE}", "A"),
              _dig(STRANGER, SERVER, f"{ZONE}", "AXFR"),
              _dig(CLIENT_HOSTS[3], SERVER, f"{ZONE}", "AXFR")], workers=3)
    marker("named in netns: a dynamic update the zone does not allow")
    run_in(CLI, "sh", "-c", f"printf 'server {SERVER}\\nzone {ZONE}\\n"
           f"update add rogue.{ZONE} 300 A 10.77.0.66\\nsend\\n' | nsupdate -t 5")
    marker("named in netns: a zone file with an error is reloaded")
    (prim / "etc" / f"db.{ZONE}").write_text(_zone(2026120703, broken=True))
    _rndc(SRV, prim, "reload", ZONE)
    time.sleep(2)
    marker("named in netns: the error is fixed and the zone reloaded")
    (prim / "etc" / f"db.{ZONE}").write_text(_zone(2026120704))
    _rndc(SRV, prim, "reload", ZONE)
    time.sleep(4)
    marker("named in netns: the secondary's lab.lan primary stays unreachable")
    _rndc(CLI, sec, "refresh", "lab.lan")
    time.sleep(20)
    marker("named in netns: primary stops and starts again")
    _rndc(SRV, prim, "stop")
    time.sleep(2)
    _named(SRV, prim)
    time.sleep(3)
    marker("named in netns: a start with a broken named.conf (refused)")
    # the running primary read its named.conf at start: an edit waits for a reload, and a
    # second named started with the edited file refuses it
    conf = prim / "etc" / "named.conf"
    good = conf.read_text()
    conf.write_text(good.replace(
        "\tdnssec-validation no;\n", "\tdnssec-validation no;\n\tlisten-on-port 53;\n"))
    _named(CLI, prim)
    conf.write_text(good)
    marker("named in netns: stop both")
    _rndc(SRV, prim, "stop")
    _rndc(CLI, sec, "stop")
    time.sleep(2)
    for d in (prim, sec):
        _stop_pidfile(d / "run" / "named.pid")
    return []
