"""The net-snmp capture scenario: a device's SNMP agent polled by a site's monitoring, as
Debian runs it, then the mistakes an admin and the network make.

snmpd runs in the server namespace in the foreground with Debian's options (``-u
Debian-snmp -g Debian-snmp -I -smux,mteTrigger,mteTriggerConf``), logging to syslog's
``daemon`` facility (``-Lsd``, as the sysvinit script did), in a mount namespace whose
``/etc/snmp`` (the scenario's ``snmpd.conf`` and Debian's ``snmp.conf``, ``mibs :``: Debian
ships no MIB files, so it loads none), ``/etc/hosts.allow`` and ``/etc/hosts.deny`` are
scratch copies: nothing of this machine's is read. Debian's snmpd is built with TCP
wrappers and logs every request's ``Connection from UDP: ...``, which is most of what a
polled agent's log holds. The clients ask by numeric OID (no MIB files either).

- Healthy: start, a monitoring server and the admins' hosts polling (``snmpget``,
  ``snmpwalk``, SNMPv1 and v2c, IPv4 and IPv6), a reload (SIGHUP), a stop.
- Trouble: a host TCP wrappers refuse, wrong communities and a write with the read-only
  one (refused by the agent, silently or by error reply), an unknown token in the
  configuration, a start whose listening address is not on the host (snmpd exits).
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    CLIENT_HOSTS6,
    SERVER,
    SERVER6,
    SRV,
    Proc,
    in_mount_ns,
    marker,
    run_in,
    run_many,
    start_in,
    stop,
)

# the host TCP wrappers refuse (as the classic scenario's tcpd does)
REFUSED = CLIENT_HOSTS[-1]
COMMUNITY = "plantro"
# sysUpTime.0, sysName.0, ifInOctets.2, hrSystemUptime.0, laLoad.1
OIDS = (".1.3.6.1.2.1.1.3.0", ".1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.2.2.1.10.2",
        ".1.3.6.1.2.1.25.1.1.0", ".1.3.6.1.4.1.2021.10.1.3.1")
IF_TABLE, SYS_CONTACT = ".1.3.6.1.2.1.2.2", ".1.3.6.1.2.1.1.4.0"


def snmpd_conf(extra: str = "") -> str:
    return (
        f"agentAddress udp:{SERVER}:161,udp6:[{SERVER6}]:161\n"
        "view systemonly included .1.3.6.1.2.1.1\n"
        "view systemonly included .1.3.6.1.2.1.2\n"
        "view systemonly included .1.3.6.1.2.1.25.1\n"
        "view systemonly included .1.3.6.1.4.1.2021.10\n"
        f"rocommunity {COMMUNITY} 10.77.0.0/24 -V systemonly\n"
        f"rocommunity6 {COMMUNITY} fd77::/64 -V systemonly\n"
        "sysLocation Pump house 2, rack B\nsysContact ops@plant.lan\nsysServices 72\n"
        f"{extra}"
    )


def _poll(host: str, oid: str, community: str = COMMUNITY, version: str = "2c",
          verb: str = "snmpget", target: str = SERVER) -> tuple[str, ...]:
    # -r 0: one try, as a monitoring poll that times out is retried at the next interval
    return (CLI, verb, "-v", version, "-c", community, "-t", "2", "-r", "0",
            "--clientaddr=" + host, target, oid)


def _polls(rounds: int) -> list[tuple[str, ...]]:
    jobs: list[tuple[str, ...]] = []
    for r in range(rounds):
        jobs.extend(_poll(CLIENT_HOSTS[0], oid) for oid in OIDS)  # the monitoring server
        for i, host in enumerate(CLIENT_HOSTS[1:16]):
            if (i + r) % 3 == 0:
                jobs.append(_poll(host, OIDS[(i + r) % len(OIDS)], version=("1", "2c")[i % 2]))
        jobs.append(_poll(CLIENT_HOSTS6[r % len(CLIENT_HOSTS6)], OIDS[1],
                          target=f"udp6:[{SERVER6}]:161"))
    return jobs


def snmpd(work: Path) -> list[Proc]:
    root = work / "snmpd"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "snmp").mkdir()
    conf = root / "snmp" / "snmpd.conf"
    conf.write_text(snmpd_conf())
    (root / "snmp" / "snmp.conf").write_text("mibs :\n")  # as Debian's package ships it
    (root / "hosts.allow").write_text("")
    (root / "hosts.deny").write_text(f"snmpd: {REFUSED}\n")
    binds = {root / n: f"/etc/{n}" for n in ("snmp", "hosts.allow", "hosts.deny")}
    cmd = ("exec snmpd -f -Lsd -u Debian-snmp -g Debian-snmp -I -smux,mteTrigger,mteTriggerConf "
           f"-p {root}/snmpd.pid")
    marker("snmpd in netns: start")
    agent = start_in(SRV, *in_mount_ns(binds, cmd))
    time.sleep(2)
    marker("snmpd in netns: the monitoring server and admins poll")
    run_many(_polls(8), workers=4)
    marker("snmpd in netns: walks of the interface table")
    run_many([_poll(h, IF_TABLE, verb="snmpwalk") for h in CLIENT_HOSTS[:3]], workers=3)
    marker("snmpd in netns: a host TCP wrappers refuse")
    run_many([_poll(REFUSED, OIDS[0]) for _ in range(3)], workers=1)
    marker("snmpd in netns: wrong communities")
    run_many([_poll(h, OIDS[0], community=c) for h, c in
              ((CLIENT_HOSTS[20], "public"), (CLIENT_HOSTS[21], "private"),
               (CLIENT_HOSTS[2], "plantr0"))], workers=1)
    marker("snmpd in netns: a write with the read-only community")
    run_in(CLI, "snmpset", "-v", "2c", "-c", COMMUNITY, "-t", "2", "-r", "0",
           f"--clientaddr={CLIENT_HOSTS[1]}", SERVER, SYS_CONTACT, "s", "x")
    marker("snmpd in netns: the admin adds a setting snmpd does not know and reloads (SIGHUP)")
    conf.write_text(snmpd_conf("rocomunity plantro2 10.77.0.0/24\n"))  # a typo
    agent.send_signal(signal.SIGHUP)
    time.sleep(2)
    run_many(_polls(3), workers=4)
    marker("snmpd in netns: stop (SIGTERM)")
    stop(agent)
    marker("snmpd in netns: a start listening on an address the host does not have")
    conf.write_text(snmpd_conf().replace(f"udp:{SERVER}:161", "udp:10.77.0.250:161"))
    run_in(SRV, *in_mount_ns(binds, cmd), timeout=20)
    return []
