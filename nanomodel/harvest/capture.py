"""Run real daemons in network namespaces made here and keep what they log.

Usage (root; the daemons must be installed: openssh-server, openssh-sftp-server,
mosquitto(+clients), dnsmasq-base, isc-dhcp-client, chrony, busybox, openvpn, apache2,
nginx-light, cron, rsyslog, postfix, zookeeper, inetutils-inetd, inetutils-ftpd, sudo,
logrotate, bind9 and bind9-dnsutils, xinetd and rsync, snmpd and snmp, isc-dhcp-server;
not installed by bootstrap: this is a manual tool, CI never runs it)::

    python -m nanomodel.harvest.capture /work/scratch/capture
    python -m nanomodel.harvest.capture /work/scratch/one --only 9-classic --no-write
    python -m nanomodel.harvest.capture /work/scratch/capture --relabel --with /work/scratch/one
    python -m nanomodel.harvest.capture /work/scratch/new --only a-named --sources named \
        --folder nanomodel/data/real/captured_next

Two namespaces joined by a veth pair (server 10.77.0.1, client 10.77.0.2 and the
"internet" addresses 10.77.0.10-59 and fd77::2a0-2b3 that scanners and users come from) carry all
traffic; nothing leaves them. A real ``rsyslogd`` (BusyBox ``syslogd`` when rsyslog is
not installed) owns ``/dev/log`` for the run (it is removed afterwards), so every
daemon logs exactly as under a real syslog, repeated-message reduction included. Each
scenario first logs a marker line (``nfcapture: BEGIN <how>``), so every captured line
records how it came about. Lines are then labelled through the
harvested templates (:mod:`nanomodel.harvest.match`) and written to
``nanomodel/data/real/captured/<source>.jsonl`` with the syslog timestamp and host cut
off (the text starts at the program tag, ``sshd[812]: ...``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nanomodel.harvest import scenarios
from nanomodel.harvest.capture_io import DATA, SCENARIO_HOST, write_captured
from nanomodel.harvest.netns import CLIENT_HOSTS, CLIENT_HOSTS6, SERVER6, marker

SRV, CLI = "nfcap-srv", "nfcap-cli"


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, timeout=timeout)


def netns_up() -> None:
    for ns in (SRV, CLI):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh(
        "ip",
        "link",
        "add",
        "nfcap0",
        "netns",
        SRV,
        "type",
        "veth",
        "peer",
        "name",
        "nfcap1",
        "netns",
        CLI,
    )
    # a second pair with no DHCP server behind it, for the "no offers" case
    sh(
        "ip",
        "link",
        "add",
        "nfcap2",
        "netns",
        SRV,
        "type",
        "veth",
        "peer",
        "name",
        "nfcap3",
        "netns",
        CLI,
    )
    sh("ip", "-n", SRV, "addr", "add", "10.77.0.1/24", "dev", "nfcap0")
    sh("ip", "-n", CLI, "addr", "add", "10.77.0.2/24", "dev", "nfcap1")
    for host in CLIENT_HOSTS:
        sh("ip", "-n", CLI, "addr", "add", f"{host}/24", "dev", "nfcap1")
    sh("ip", "-n", SRV, "-6", "addr", "add", f"{SERVER6}/64", "dev", "nfcap0", "nodad")
    for host in CLIENT_HOSTS6:
        sh("ip", "-n", CLI, "-6", "addr", "add", f"{host}/64", "dev", "nfcap1", "nodad")
    for ns, dev in ((SRV, "nfcap0"), (CLI, "nfcap1"), (SRV, "nfcap2"), (CLI, "nfcap3")):
        sh("ip", "-n", ns, "link", "set", dev, "up")


def netns_down() -> None:
    for ns in (SRV, CLI):
        sh("ip", "netns", "del", ns, check=False)


# The same line layout as BusyBox syslogd -O (``Dec  3 07:40:27 host fac.prio tag: msg``),
# so one parser reads both; rate limiting is off so no line of a burst is dropped.
_RSYSLOG_LINE = (
    "%timegenerated% %hostname% %syslogfacility-text%.%syslogseverity-text% "
    "%syslogtag%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\\n"
)
_RSYSLOG_CONF = (
    'global(workDirectory="{work}/rsyslog")\n'
    'module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")\n'
    # a second /dev/log that scenarios bind over /dev/log in their mount namespace: its
    # lines carry the host name SCENARIO_HOST, so this machine's own su/sudo are told apart
    'input(type="imuxsock" Socket="{work}/scenario-log.sock" HostName="' + SCENARIO_HOST + '" '
    'RateLimit.Interval="0")\n'
    "$RepeatedMsgReduction on\n"
    f'template(name="nfcap" type="string" string="{_RSYSLOG_LINE}")\n'
    '*.* action(type="omfile" file="{log}" template="nfcap")\n'
)


def start_syslog(work: Path, log: Path) -> subprocess.Popen[bytes]:
    """rsyslogd in the foreground writing ``log`` (BusyBox syslogd without rsyslog)."""
    if shutil.which("rsyslogd") is None:
        return subprocess.Popen(["busybox", "syslogd", "-n", "-O", str(log)])
    (work / "rsyslog").mkdir(exist_ok=True)
    conf = work / "rsyslog.conf"
    conf.write_text(_RSYSLOG_CONF.format(work=work, log=log))
    return subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path, help="scratch directory outside the repository")
    ap.add_argument(
        "--only", nargs="*", help="run only these scenarios", choices=sorted(scenarios.ALL)
    )
    ap.add_argument(
        "--no-write", action="store_true", help="capture only; do not update the repo files"
    )
    ap.add_argument(
        "--relabel",
        action="store_true",
        help="run nothing: label WORKDIR/syslog.log of an earlier capture again "
        "(after the templates or the matcher changed)",
    )
    ap.add_argument(
        "--with",
        dest="more",
        type=Path,
        nargs="*",
        default=[],
        metavar="DIR",
        help="with --relabel: also the syslog.log of these earlier captures, after "
        "WORKDIR's; a source's file holds the lines of every capture named (a capture "
        "of some scenarios alone would otherwise replace the files of the sources it "
        "shares with the others, e.g. pam or rsyslog)",
    )
    ap.add_argument(
        "--sources",
        nargs="*",
        metavar="SOURCE",
        help="write only these sources' files (a capture of new scenarios alone, when the "
        "earlier captures' logs are gone: the files of pam, rsyslog, ... stay as they are)",
    )
    ap.add_argument(
        "--folder",
        type=Path,
        default=DATA,
        help="write the files into this folder instead of captured/ (captured_next/: lines "
        "the next retrain takes, an evaluation of the shipped model until then)",
    )
    ap.add_argument(
        "--add",
        action="store_true",
        help="add this capture's lines to the sources' files instead of replacing them "
        "(a new program of a source already captured, e.g. dhcpd beside dhclient, when the "
        "earlier capture's log is gone); a line already in the file is not added twice",
    )
    args = ap.parse_args(argv)
    if args.relabel:
        _write([args.workdir / "syslog.log", *(d / "syslog.log" for d in args.more)],
               args.folder, sources=args.sources, add=args.add)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces, sshd, /dev/log)", file=sys.stderr)
        return 2
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    log = work / "syslog.log"
    log.unlink(missing_ok=True)
    had_devlog = Path("/dev/log").exists()
    if had_devlog:
        print("/dev/log exists (a syslog daemon runs): refusing to take it over", file=sys.stderr)
        return 2
    netns_down()
    netns_up()
    syslogd = start_syslog(work, log)
    started: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(0.5)
        for name in sorted(scenarios.ALL):
            if args.only and name not in args.only:
                continue
            print(f"scenario {name}", file=sys.stderr)
            started.extend(scenarios.ALL[name](work))
        if shutil.which("rsyslogd") is not None:
            marker("rsyslogd: reload (SIGHUP), as logrotate does")
            syslogd.send_signal(signal.SIGHUP)
        time.sleep(1.0)
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        scenarios.stop_pidfiles(work)
        time.sleep(0.5)
        syslogd.terminate()
        syslogd.wait(timeout=5)
        Path("/dev/log").unlink(missing_ok=True)
        netns_down()
    if not args.no_write:
        _write([log], args.folder, sources=args.sources, add=args.add)
    return 0


def _write(logs: list[Path], folder: Path = DATA, sources: list[str] | None = None,
           add: bool = False) -> None:
    # One text, so the per-shape repeat cap and the labels see every capture at once.
    text = "".join(_ended(log.read_text(errors="replace")) for log in logs)
    counts = write_captured(text, folder, sources, add=add)
    for source, n in sorted(counts.items()):
        print(f"{source}: {n} captured lines")


def _ended(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
