"""The xinetd capture scenario: the classic super-server starting small services for the
hosts of a site, with its limits and a configuration an admin edits.

xinetd runs in the server namespace in the foreground with a configuration of its own,
bind-mounted over ``/etc/xinetd.conf`` in a mount namespace of its own (nothing of this
machine's ``/etc/xinetd.conf`` or ``/etc/xinetd.d`` is read), and
logs to syslog as Debian's default does (``SYSLOG daemon info``, with
``log_on_success = HOST PID DURATION EXIT`` and ``log_on_failure = HOST ATTEMPT``, as
classic servers configure it). Its services: the internal ``daytime``/``echo``/``time``,
``rsync --daemon`` for the site's backups and a site script (``sensor-dump``) on a
private port.

- Healthy: the start banner, hosts fetching the time, backups pulled with rsync, the
  site script run per connection, a reload after the admin adds a service.
- Trouble: a host outside ``only_from``, one host opening more connections than
  ``per_source`` allows, a burst past ``cps`` (xinetd pauses the service and brings it
  back), a service whose server program is missing, a service whose port is taken, and a
  service script that fails.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    SERVER,
    SRV,
    Proc,
    in_mount_ns,
    marker,
    py_in,
    run_in,
    start_in,
    stop,
)

# the hosts only_from allows for the site script: the first eight client addresses
SITE_NET = "10.77.0.8/29"
OUTSIDER = CLIENT_HOSTS[30]


def _client(port: int, hosts: tuple[str, ...], send: bytes = b"", hold: float = 0.0,
            parallel: bool = False) -> str:
    """Python run in the client namespace: connect from each host to ``port``, send
    ``send``, read until the server closes (or ``hold`` s with the connection open)."""
    return (
        "import socket,time,threading\n"
        f"def one(h):\n"
        f"  try:\n"
        f"    s=socket.create_connection(('{SERVER}',{port}),5,source_address=(h,0))\n"
        f"    s.sendall({send!r}) if {send!r} else None\n"
        f"    s.settimeout(4)\n"
        f"    t=time.time()\n"
        f"    while time.time()-t<{hold}: time.sleep(0.1)\n"
        f"    try:\n"
        f"      while s.recv(4096): pass\n"
        f"    except OSError: pass\n"
        f"    s.close()\n"
        f"  except OSError: pass\n"
        f"hosts={list(hosts)!r}\n"
        + (
            "ts=[threading.Thread(target=one,args=(h,)) for h in hosts]\n"
            "[t.start() for t in ts];[t.join() for t in ts]\n"
            if parallel
            else "[one(h) for h in hosts]\n"
        )
    )


def _conf(root: Path, extra: str = "") -> str:
    script = root / "sensor-dump.sh"
    return f"""defaults
{{
\tlog_type\t= SYSLOG daemon info
\tlog_on_success\t= HOST PID DURATION EXIT
\tlog_on_failure\t= HOST ATTEMPT
\tinstances\t= 40
\tper_source\t= 6
\tcps\t\t= 50 5
}}

service daytime
{{
\ttype\t\t= INTERNAL
\tid\t\t= daytime-stream
\tsocket_type\t= stream
\tprotocol\t= tcp
\tuser\t\t= root
\twait\t\t= no
}}

service time
{{
\ttype\t\t= INTERNAL
\tid\t\t= time-stream
\tsocket_type\t= stream
\tprotocol\t= tcp
\tuser\t\t= root
\twait\t\t= no
}}

service echo
{{
\ttype\t\t= INTERNAL
\tid\t\t= echo-stream
\tsocket_type\t= stream
\tprotocol\t= tcp
\tuser\t\t= root
\twait\t\t= no
\tcps\t\t= 8 4
}}

service rsync
{{
\tsocket_type\t= stream
\twait\t\t= no
\tuser\t\t= root
\tserver\t\t= /usr/bin/rsync
\tserver_args\t= --daemon --config={root}/rsyncd.conf
\tper_source\t= 2
}}

service sensor-dump
{{
\ttype\t\t= UNLISTED
\tport\t\t= 7001
\tsocket_type\t= stream
\tprotocol\t= tcp
\twait\t\t= no
\tuser\t\t= nobody
\tserver\t\t= {script}
\tonly_from\t= {SITE_NET}
}}

service legacy-report
{{
\ttype\t\t= UNLISTED
\tport\t\t= 7003
\tsocket_type\t= stream
\tprotocol\t= tcp
\twait\t\t= no
\tuser\t\t= root
\tserver\t\t= /usr/local/sbin/in.reportd
}}

service historian-feed
{{
\ttype\t\t= UNLISTED
\tport\t\t= 7002
\tsocket_type\t= stream
\tprotocol\t= tcp
\twait\t\t= no
\tuser\t\t= nobody
\tserver\t\t= /bin/cat
}}
{extra}"""


_EXTRA = """
service discard
{
\ttype\t\t= INTERNAL
\tid\t\t= discard-stream
\tsocket_type\t= stream
\tprotocol\t= tcp
\tuser\t\t= root
\twait\t\t= no
}
"""


def _prepare(work: Path) -> Path:
    root = work / "xinetd"
    shutil.rmtree(root, ignore_errors=True)
    (root / "backup").mkdir(parents=True)
    for i in range(5):
        (root / "backup" / f"plc-{i:02d}.cfg").write_text(f"unit={i}\nmode=auto\n" * 40)
    (root / "rsyncd.conf").write_text(
        f"use chroot = no\nread only = yes\n[plant-config]\n\tpath = {root}/backup\n"
    )
    script = root / "sensor-dump.sh"
    # the site script: prints the readings, or exits 3 on a request it does not know
    script.write_text(
        "#!/bin/sh\nread req\n[ \"$req\" = all ] || exit 3\n"
        "echo 'pump-1 41.5 C'\necho 'pump-2 39.0 C'\n"
    )
    script.chmod(0o755)
    return root


def xinetd(work: Path) -> list[Proc]:
    root = _prepare(work)
    conf = root / "xinetd.conf"
    conf.write_text(_conf(root))
    marker("xinetd in netns: a port one service wants is already taken")
    squatter = start_in(SRV, "python3", "-c",
                        "import socket,time;s=socket.socket();"
                        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                        f"s.bind(('{SERVER}',7002));s.listen();time.sleep(600)")
    time.sleep(0.5)
    marker("xinetd in netns: start (one service's server is missing)")
    # its own mount namespace where the scenario's file is /etc/xinetd.conf (the path its
    # lines name), as the packaged daemon reads it
    daemon = start_in(SRV, *in_mount_ns({conf: "/etc/xinetd.conf"},
                                        f"exec xinetd -dontfork -pidfile {root}/xinetd.pid"))
    time.sleep(1.5)
    marker("xinetd in netns: hosts fetch the time and echo a line")
    py_in(CLI, _client(13, CLIENT_HOSTS[:20]), timeout=60)
    py_in(CLI, _client(37, CLIENT_HOSTS[:12]), timeout=60)
    py_in(CLI, _client(7, CLIENT_HOSTS[:6], send=b"ping\n"), timeout=60)
    marker("xinetd in netns: backups pulled with rsync")
    for host in CLIENT_HOSTS[:6]:
        run_in(CLI, "rsync", "-a", "--address", host, f"rsync://{SERVER}/plant-config/",
               str(root / f"pulled-{host}"), timeout=30)
    marker("xinetd in netns: the site script run for hosts of the site")
    py_in(CLI, _client(7001, CLIENT_HOSTS[:8], send=b"all\n"), timeout=60)
    marker("xinetd in netns: the site script fails on a bad request")
    py_in(CLI, _client(7001, CLIENT_HOSTS[:3], send=b"bogus\n"), timeout=60)
    marker("xinetd in netns: a host outside only_from asks for the site script")
    py_in(CLI, _client(7001, (OUTSIDER, OUTSIDER)), timeout=30)
    marker("xinetd in netns: one host opens more rsync connections than per_source allows")
    py_in(CLI, _client(873, (CLIENT_HOSTS[5],) * 5, hold=1.5, parallel=True), timeout=60)
    marker("xinetd in netns: a burst of echo connections past its cps limit")
    py_in(CLI, _client(7, CLIENT_HOSTS[:14], parallel=True), timeout=60)
    time.sleep(6)
    marker("xinetd in netns: the paused service answers again")
    py_in(CLI, _client(7, CLIENT_HOSTS[:2], send=b"ping\n"), timeout=30)
    marker("xinetd in netns: the admin adds a service and reloads (SIGHUP)")
    stop(squatter)
    conf.write_text(_conf(root, _EXTRA))
    daemon.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    py_in(CLI, _client(9, CLIENT_HOSTS[:4], send=b"x" * 100), timeout=30)
    py_in(CLI, _client(7002, CLIENT_HOSTS[:3], send=b"t=41\n"), timeout=30)
    py_in(CLI, _client(13, CLIENT_HOSTS[20:30]), timeout=30)
    marker("xinetd in netns: stop (SIGTERM)")
    stop(daemon)
    return []
