"""The ZooKeeper capture scenario: a real three-server ensemble and its clients.

Debian's ``zookeeper`` 3.8 runs three times in the server namespace, each server on an
address of its own (10.77.0.5-7, added to the server side of the veth pair for the run)
and in a mount namespace where ``/etc/zookeeper/conf`` and ``/var/lib/zookeeper`` are
its scratch copies, as the ``zookeeper`` user. Each logs through the package's own
``log4j.properties`` (Debian's pattern ``%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n``) to
its console, which ``logger`` hands to the capture's syslog under the tag
``zookeeper[<myid>]`` (capture_io keeps the log4j line, as the server's own log file
holds it). Debian's ``zkServer.sh`` puts no slf4j binding on the class path, so the
server is started as that script would, plus the packaged ``slf4j-log4j12`` and
``log4j1.2`` jars. Clients are the package's ``zkCli.sh`` run in the client namespace;
the raw probes (four-letter words, a malformed packet, a stale client) are a few bytes
from Python's socket module, as ``nc`` would send them.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nanomodel.harvest.netns import CLI, SRV, Proc, marker, private_mounts, py_in, stop

HOSTS = ("10.77.0.5", "10.77.0.6", "10.77.0.7")  # server.1 .. server.3
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
LOG4J = Path("/etc/zookeeper/conf_example/log4j.properties")
CLASSPATH = ":".join(
    (
        "/etc/zookeeper/conf",
        "/usr/share/java/zookeeper.jar",
        "/usr/share/java/slf4j-log4j12.jar",
        "/usr/share/java/log4j-1.2.jar",
    )
)


def _java(args: str) -> str:
    """The shell command that runs a ZooKeeper class as the ``zookeeper`` user, logging
    at INFO to its console in the package's log4j layout."""
    return (
        "exec setpriv --reuid=zookeeper --regid=zookeeper --init-groups /usr/bin/java "
        f"-Dzookeeper.root.logger=INFO,CONSOLE -cp {CLASSPATH} {args}"
    )


SERVER = _java(
    "-Xmx160m -XX:+UseSerialGC -Dzookeeper.log.dir=/var/log/zookeeper "
    "-Dzookeeper.log.file=zookeeper.log org.apache.zookeeper.server.quorum.QuorumPeerMain "
    "/etc/zookeeper/conf/zoo.cfg"
)
PURGE = "org.apache.zookeeper.server.PurgeTxnLog"


def zoo_cfg(hosts: tuple[str, ...], myid: int) -> str:
    """The ``zoo.cfg`` of server ``myid`` (Debian's defaults plus what an ensemble needs).

    ``snapCount`` is low so a short run rolls its snapshots and txn logs as a busy day
    would; the four-letter words a monitor needs are allowed and the rest are not.
    """
    servers = "\n".join(f"server.{i}={h}:2888:3888" for i, h in enumerate(hosts, 1))
    return f"""tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
clientPortAddress={hosts[myid - 1]}
maxClientCnxns=60
snapCount=400
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
4lw.commands.whitelist=srvr,ruok,mntr,conf
{servers}
"""


def mode_of(srvr: str) -> str:
    """The role a ``srvr`` answer reports (``leader``, ``follower``), or "" if none."""
    m = re.search(r"^Mode: (\w+)", srvr, re.M)
    return m.group(1) if m else ""


def session_script(rng: random.Random, n: int) -> list[str]:
    """zkCli commands of one client session: what services, workers and dashboards do."""
    kind = rng.choice(("reader", "reader", "service", "worker", "writer", "lock"))
    app = rng.randrange(8)
    if kind == "reader":
        cmds = [f"get /config/app{app}", "ls /services", f"stat /config/app{app}"]
        if rng.random() < 0.3:
            cmds.append(f"get /config/missing{n}")  # NoNode: the reader falls back to defaults
    elif kind == "service":
        cmds = [
            f"create -e /services/svc-{n} 10.77.0.{10 + n % 50}:{8000 + n}",
            "ls -w /services",
            f"get -w /config/app{app}",
        ]
    elif kind == "worker":
        cmds = [f"create -s /queue/job- task{n}", "ls /queue", f"create -e /workers/w{n} busy"]
        if rng.random() < 0.3:
            cmds.append("create /queue job")  # NodeExists: another worker made it first
    elif kind == "writer":
        cmds = [f"set /config/app{app} v{n}", f"stat /config/app{app}"]
        if rng.random() < 0.3:
            cmds.append(f"set -v 0 /config/app{app} stale")  # BadVersion: lost an update race
        if rng.random() < 0.2:
            cmds.append("delete /config")  # NotEmpty
    else:
        cmds = [f"create -e -s /locks/lock- owner{n}", "ls /locks", "sync /locks"]
    return [*cmds, "quit"]


def connect_request(last_zxid: int, timeout_ms: int = 6000) -> bytes:
    """A ZooKeeper ConnectRequest (length-prefixed jute record) for a new session."""
    body = struct.pack(">iqiqi", 0, last_zxid, timeout_ms, 0, 16) + bytes(16) + b"\x00"
    return struct.pack(">i", len(body)) + body


# ------------------------------------------------------------------ the ensemble
class Ensemble:
    """Three servers started and killed one at a time; their consoles go to syslog."""

    def __init__(self, work: Path) -> None:
        self.root = work / "zookeeper"
        self.procs: dict[int, tuple[Proc, Proc]] = {}

    def prepare(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for myid in (1, 2, 3):
            conf, data = self.root / f"zk{myid}" / "conf", self.root / f"zk{myid}" / "data"
            conf.mkdir(parents=True)
            data.mkdir()
            (conf / "zoo.cfg").write_text(zoo_cfg(HOSTS, myid))
            shutil.copy(LOG4J, conf / "log4j.properties")
            (data / "myid").write_text(f"{myid}\n")
            shutil.chown(data, "zookeeper", "zookeeper")
            shutil.chown(data / "myid", "zookeeper", "zookeeper")

    def argv(self, myid: int, java: str = SERVER, disk_mb: int = 0) -> tuple[str, ...]:
        """``java`` in the server namespace, seeing server ``myid``'s config and data."""
        here = self.root / f"zk{myid}"
        mounts = f"mount --bind {here / 'conf'} /etc/zookeeper/conf"
        data = here / "data"
        if disk_mb:  # a small disk of its own, holding a copy of the server's data
            disk = here / "disk"
            disk.mkdir(exist_ok=True)
            mounts += (
                f" && mount -t tmpfs -o size={disk_mb}m,mode=0755 zkdisk {disk}"
                f" && cp -a {data}/. {disk}/ && chown zookeeper:zookeeper {disk}"
            )
            data = disk
        mounts += f" && mount --bind {data} /var/lib/zookeeper && cd /var/lib/zookeeper"
        return ("ip", "netns", "exec", SRV, *private_mounts(mounts, java))

    def start(self, myid: int, java: str = SERVER, disk_mb: int = 0) -> tuple[Proc, Proc]:
        """Start ``java`` for server ``myid``, its console going to syslog."""
        server = subprocess.Popen(
            self.argv(myid, java, disk_mb), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert server.stdout is not None
        tagger = subprocess.Popen(
            ["logger", "-t", f"zookeeper[{myid}]", "--size", "16384"], stdin=server.stdout
        )
        server.stdout.close()
        if java == SERVER:
            self.procs[myid] = (server, tagger)
        return server, tagger

    def stop(self, myid: int, sig: int = signal.SIGTERM) -> None:
        server, tagger = self.procs.pop(myid)
        stop(server, sig, timeout=15)  # a JVM writing its last snapshot takes a while
        tagger.wait(timeout=10)

    def modes(self) -> dict[int, str]:
        return {myid: mode_of(four(HOSTS[myid - 1], "srvr")) for myid in self.procs}

    def wait_for_leader(self, limit: float = 60) -> int:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            modes = self.modes()
            followers = sum(m == "follower" for m in modes.values())
            leaders = [i for i, m in modes.items() if m == "leader"]
            if leaders and followers == len(modes) - 1:
                return leaders[0]
            time.sleep(1)
        return 0


# ------------------------------------------------------------------ clients
def four(host: str, word: str) -> str:
    """A four-letter word from the client namespace (``echo srvr | nc host 2181``)."""
    code = (
        "import socket,sys\n"
        "try:\n"
        f" s=socket.create_connection(({host!r},2181),3);s.sendall({word.encode()!r})\n"
        " out=b''\n"
        " while (b:=s.recv(4096)): out+=b\n"
        " sys.stdout.write(out.decode(errors='replace'))\n"
        "except OSError: pass\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", CLI, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout


def _zkcli(*args: str) -> Proc:
    """zkCli.sh in the client namespace, reading its commands from a pipe; in a session
    of its own, as its JVM is a child of the script and must end with it."""
    return subprocess.Popen(
        ["ip", "netns", "exec", CLI, ZKCLI, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def zkcli(commands: list[str], hosts: tuple[str, ...] = HOSTS, timeout: float = 40) -> None:
    """One zkCli.sh session running ``commands``."""
    cli = _zkcli("-server", ",".join(f"{h}:2181" for h in hosts))
    try:
        cli.communicate(("\n".join(commands) + "\n").encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()


def sessions(count: int, seed: int, workers: int = 4) -> None:
    """``count`` client sessions, a few at a time, spread over the three servers."""
    rng = random.Random(seed)
    jobs = [(session_script(rng, seed * 1000 + n), HOSTS[n % 3]) for n in range(count)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: zkcli(job[0], (job[1],)), jobs))


def dropped_clients(count: int) -> None:
    """zkCli sessions killed with -9 mid-session: the socket closes, the session expires."""
    clients = [_zkcli("-timeout", "5000", "-server", f"{HOSTS[n % 3]}:2181") for n in range(count)]
    for n, cli in enumerate(clients):
        assert cli.stdin is not None
        cli.stdin.write(f"create -e /workers/dropped{n} x\nget -w /config/app1\n".encode())
        cli.stdin.flush()
    time.sleep(4)
    for cli in clients:
        os.killpg(cli.pid, signal.SIGKILL)  # the JVM dies with its socket open: no close
        cli.wait()


def bad_clients() -> None:
    host = HOSTS[0]
    for payload in (
        b"\xff\xff\xff\xf0garbage",  # a negative length
        b"GET / HTTP/1.1\r\nHost: zk\r\n\r\n",  # a browser on the client port
        connect_request(0x7FFFFFFF00000000),  # a client that saw a newer zxid elsewhere
    ):
        py_in(
            CLI,
            f"import socket,time;s=socket.create_connection(({host!r},2181),5);"
            f"s.sendall({payload!r});time.sleep(1);s.close()",
        )


def writes(count: int, prefix: str, size: int = 0) -> None:
    """One session writing ``count`` znodes (a batch job, or a burst of big values)."""
    data = "x" * size if size else "reading"
    cmds = ["create /batch"] + [f"create /batch/{prefix}{i} {data}" for i in range(count)]
    zkcli([*cmds, "quit"], timeout=180)


def purge(ens: Ensemble, myid: int) -> None:
    """``zkCleanup.sh -n 3`` (PurgeTxnLog) on a server's data, logged as the server logs."""
    tool, tagger = ens.start(myid, _java(f"{PURGE} /var/lib/zookeeper /var/lib/zookeeper -n 3"))
    tool.wait(timeout=60)
    tagger.wait(timeout=10)


# ------------------------------------------------------------------ the scenario
def _addresses(op: str) -> None:
    for host in HOSTS:
        subprocess.run(
            ["ip", "-n", SRV, "addr", op, f"{host}/24", "dev", "nfcap0"],
            capture_output=True,
            check=False,
        )


def zookeeper(work: Path) -> list[Proc]:
    ens = Ensemble(work)
    ens.prepare()
    _addresses("add")
    try:
        _life(ens, work / "syslog.log")
    finally:
        for myid in sorted(ens.procs):
            ens.stop(myid, signal.SIGKILL)
        _addresses("del")
    return []


def _wait_for(log: Path, text: str, limit: float) -> bool:
    """Whether ``text`` shows up in the capture's syslog file within ``limit`` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if log.exists() and text in log.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def _life(ens: Ensemble, log: Path) -> None:
    marker("zookeeper in netns: server 1 starts alone (its peers are not up yet)")
    ens.start(1)
    time.sleep(8)
    marker("zookeeper in netns: servers 2 and 3 start; leader election")
    ens.start(2)
    ens.start(3)
    leader = ens.wait_for_leader()
    marker("zookeeper in netns: an application creates its tree")
    tree = ["/config", "/services", "/workers", "/locks", "/queue"]
    zkcli([*(f"create {p}" for p in tree), *(f"create /config/app{i} v0" for i in range(8))])
    marker("zookeeper in netns: 60 client sessions read, watch, register and write")
    sessions(60, 1)
    marker("zookeeper in netns: monitoring probes (four-letter words, allowed and not)")
    for host in HOSTS:
        for word in ("ruok", "srvr", "mntr", "conf", "stat", "dump"):
            four(host, word)
    marker("zookeeper in netns: clients killed mid-session (sockets dropped, sessions expire)")
    dropped_clients(6)
    time.sleep(12)
    marker("zookeeper in netns: a malformed packet, HTTP on the client port, a stale client")
    bad_clients()
    follower = next(i for i in (1, 2, 3) if i != leader)
    marker(f"zookeeper in netns: follower {follower} killed (kill -9) while clients write")
    ens.stop(follower, signal.SIGKILL)
    writes(700, "r")
    sessions(12, 2)
    marker(f"zookeeper in netns: follower {follower} restarts and resyncs from the leader")
    ens.start(follower)
    ens.wait_for_leader()
    sessions(12, 3)
    marker(f"zookeeper in netns: leader {leader} killed (kill -9); the others elect a leader")
    ens.stop(leader, signal.SIGKILL)
    time.sleep(2)
    sessions(12, 4)
    marker(f"zookeeper in netns: old leader {leader} restarts and rejoins")
    ens.start(leader)
    leader = ens.wait_for_leader()
    sessions(12, 5)
    last = next(i for i in (1, 2, 3) if i != leader)
    down = [i for i in (1, 2, 3) if i != last]
    marker(f"zookeeper in netns: servers {down[0]} and {down[1]} down; {last} has no quorum")
    for myid in down:
        ens.stop(myid, signal.SIGKILL)
    zkcli(["ls /", "quit"], (HOSTS[last - 1],), timeout=8)
    time.sleep(25)
    marker("zookeeper in netns: quorum restored")
    for myid in down:
        ens.start(myid)
    leader = ens.wait_for_leader()
    sessions(24, 6)
    marker("zookeeper in netns: snapshot and txn log purge (zkCleanup -n 3)")
    for myid in (1, 2, 3):
        purge(ens, myid)
    small = next(i for i in (1, 2, 3) if i != leader)
    marker(f"zookeeper in netns: server {small} restarts on a small disk that fills up")
    ens.stop(small)
    ens.start(small, disk_mb=1)
    ens.wait_for_leader()
    writer = threading.Thread(target=writes, args=(400, "blob", 4000))
    writer.start()
    # it fails, rejoins and fails again many times a second: the operator stops it soon
    _wait_for(log, "Severe unrecoverable error", 90)
    marker(f"zookeeper in netns: the operator stops server {small} (its disk is full)")
    ens.stop(small)
    writer.join()
    marker("zookeeper in netns: all servers stop (SIGTERM)")
    for myid in sorted(ens.procs):
        ens.stop(myid)
