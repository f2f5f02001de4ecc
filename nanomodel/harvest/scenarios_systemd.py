"""What the systemd capture runs (:mod:`hil.journal_capture`): the units of a small
device's own software, sshd's logins and scanners, and the shell scripts that drive them.

Healthy units are the kind a gateway runs (a sensor poller, a Modbus bridge, an uploader
on a timer, a log shipper that reloads); the faulty ones fail the ways real services do:
exit codes and a restart loop up to the start limit, a missing binary, a user that does not
exist, a crash by signal, a watchdog that is not fed, a start and a stop that time out, a
unit whose dependency failed, a mount whose device is missing, and syntax errors in a unit
file. The scripts run as root inside the container; each ends when the manager has logged
what it does (a few seconds at most).
"""

from __future__ import annotations

_LOOP = "/bin/sh -c 'while :; do sleep 5; done'"


def _service(description: str, exec_start: str, extra: str = "", unit_extra: str = "",
             install: bool = True) -> str:
    return (f"[Unit]\nDescription={description}\n{unit_extra}\n"
            f"[Service]\nExecStart={exec_start}\n{extra}\n"
            + ("[Install]\nWantedBy=multi-user.target\n" if install else ""))


UNITS: dict[str, str] = {
    # healthy: long-running services
    "sensor-poller.service": _service("Sensor poller", _LOOP, "Restart=always\n"),
    "modbus-bridge.service": _service("Modbus TCP bridge", _LOOP,
                                      "Restart=on-failure\nRestartSec=2\n",
                                      "After=network.target\n"),
    "log-shipper.service": _service("Log shipper",
                                    "/bin/sh -c 'trap : HUP; while :; do sleep 5; done'",
                                    "ExecReload=/bin/kill -HUP $MAINPID\n"),
    "camera-stream.service": _service("Camera stream", _LOOP,
                                      "KillMode=mixed\nTimeoutStopSec=5\n"),
    "can-gateway.service": _service("CAN bus gateway", _LOOP, "Type=exec\n"),
    # healthy: a oneshot job on a timer, and a oneshot at start
    "data-uploader.service": _service("Upload buffered readings", "/bin/sleep 0.3",
                                      "Type=oneshot\n", install=False),
    "data-uploader.timer": ("[Unit]\nDescription=Upload buffered readings every few seconds\n"
                            "[Timer]\nOnActiveSec=1\nOnUnitActiveSec=2\nAccuracySec=100ms\n"
                            "[Install]\nWantedBy=timers.target\n"),
    "fw-inventory.service": _service("Firmware inventory", "/bin/true",
                                     "Type=oneshot\nRemainAfterExit=yes\n"),
    # faulty
    "meter-reader.service": _service("Energy meter reader", "/bin/sh -c 'sleep 0.2; exit 3'",
                                     "Restart=on-failure\nRestartSec=300ms\n",
                                     "StartLimitIntervalSec=30\nStartLimitBurst=4\n"),
    "ota-helper.service": _service("OTA helper", "/usr/local/bin/ota-helper --serve"),
    "report-daemon.service": _service("Report daemon", _LOOP, "User=reporter\n"),
    "vision-infer.service": _service("Vision inference",
                                     "/bin/sh -c 'sleep 0.5; kill -11 $$$$'",
                                     "LimitCORE=0\nRestart=on-failure\nRestartSec=1\n",
                                     "StartLimitIntervalSec=60\nStartLimitBurst=2\n"),
    "plc-link.service": _service("PLC link",
                                 "/bin/sh -c 'systemd-notify --ready; while :; do sleep 5; "
                                 "done'", "Type=notify\nNotifyAccess=all\nWatchdogSec=2\n"),
    "modem-manager-lite.service": _service("Cellular modem manager",
                                           "/bin/sh -c 'while :; do sleep 5; done'",
                                           "Type=notify\nNotifyAccess=all\n"
                                           "TimeoutStartSec=2\n"),
    "stubborn-logger.service": _service("Stubborn logger",
                                        "/bin/sh -c \"trap '' TERM; while :; do sleep 1; "
                                        "done\"", "TimeoutStopSec=2\n"),
    "dashboard.service": _service("Local dashboard", _LOOP, "",
                                  "Requires=meter-reader.service\n"
                                  "After=meter-reader.service\n"),
    "mnt-data.mount": ("[Unit]\nDescription=Data partition\n"
                       "[Mount]\nWhat=/dev/disk/by-label/DATA\nWhere=/mnt/data\n"
                       "Type=ext4\nTimeoutSec=3\n"),
    "data-sync.service": _service("Sync data partition", "/bin/true",
                                  "Type=oneshot\n",
                                  "RequiresMountsFor=/mnt/data\n"),
    "broken-unit.service": ("[Unit]\nDescription=Unit with typos\nAfterr=network.target\n"
                            "[Service]\nExecStart=/bin/true\nRestart=sometimes\n"
                            "TimeoutSec=fast\nMemoryMax=lots\n"),
}

# sshd on the container's loopback (it shares the host's network: a port nobody uses),
# with the PAM modules that fail only in a container (no logind, no right to set the
# login uid or raise limits) left out, as the syslog capture does; key logins only. The
# container masks systemd-user-sessions, so /run/nologin would refuse every user but root,
# and the minimal root file system lacks /etc/default/locale, which pam_env reads.
_SSH = "ssh -p 22922 -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5"
_SSHD_SETUP = (
    "rm -f /etc/systemd/system/ssh.service; systemctl daemon-reload; "
    "sed -i '/pam_loginuid.so/d; /pam_limits.so/d' /etc/pam.d/sshd; "
    "sed -i '/pam_systemd.so/d' /etc/pam.d/common-session; "
    "printf 'Port 22922\\nListenAddress 127.0.0.1\\nPasswordAuthentication no\\n' "
    "> /etc/ssh/sshd_config.d/nf.conf; ssh-keygen -A >/dev/null; "
    "rm -f /run/nologin; touch /etc/default/locale; "
    "useradd -m -s /bin/sh deploy; useradd -m -s /bin/sh ops; "
    "for h in /root /home/deploy /home/ops; do mkdir -p $h/.ssh; done; "
    "ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519; "
    "ssh-keygen -q -t ed25519 -N '' -f /root/stranger; "
    "for h in /root /home/deploy /home/ops; do cp /root/.ssh/id_ed25519.pub "
    "$h/.ssh/authorized_keys; done; chown -R deploy: /home/deploy/.ssh; "
    "chown -R ops: /home/ops/.ssh; systemctl start ssh; sleep 1")

# (how, script, timeout in seconds)
SCENARIOS: list[tuple[str, str, float]] = [
    ("sshd starts; admins log in with keys and run commands",
     f"{_SSHD_SETUP}; for i in 1 2 3 4 5 6; do {_SSH} root@127.0.0.1 uptime >/dev/null; "
     f"{_SSH} deploy@127.0.0.1 'ls /tmp' >/dev/null; {_SSH} ops@127.0.0.1 true; done", 120),
    ("scanners try user names and a key that is not authorised",
     f"for u in admin oracle test ubuntu pi postgres git user; do {_SSH} $u@127.0.0.1 true; "
     f"done; for i in 1 2 3; do {_SSH} -i /root/stranger root@127.0.0.1 true; done; "
     "for i in 1 2 3; do (echo 'GET / HTTP/1.1'; sleep 0.2) | "
     "timeout 2 bash -c 'cat > /dev/tcp/127.0.0.1/22922' ; done; true", 120),
    ("sshd reloads and stops",
     "systemctl reload ssh; sleep 1; " + f"{_SSH} root@127.0.0.1 true; "
     "systemctl stop ssh; sleep 1", 60),
    ("healthy services start, restart, reload and stop",
     "systemctl start sensor-poller modbus-bridge log-shipper camera-stream can-gateway "
     "fw-inventory; sleep 1; systemctl restart modbus-bridge; systemctl reload log-shipper; "
     "sleep 1; systemctl stop camera-stream; systemctl start camera-stream; "
     "systemctl daemon-reload; sleep 1; systemctl restart sensor-poller can-gateway; "
     "systemctl reload log-shipper; journalctl --flush", 60),
    ("a timer runs its job every two seconds",
     "systemctl start data-uploader.timer; sleep 25; systemctl stop data-uploader.timer; "
     "systemd-run --on-active=1 --unit=nf-once /bin/true; sleep 3; journalctl --flush", 60),
    ("a service exits 3 and is restarted until the start limit",
     "systemctl start meter-reader; sleep 5; systemctl reset-failed meter-reader; "
     "journalctl --flush", 60),
    ("a service whose dependency fails",
     "systemctl start dashboard; sleep 3; systemctl reset-failed; journalctl --flush", 60),
    ("a service's binary is missing", "systemctl start ota-helper; sleep 1", 30),
    ("a service's user does not exist", "systemctl start report-daemon; sleep 1", 30),
    ("a service crashes with SIGSEGV and is restarted",
     "systemctl start vision-infer; sleep 6; systemctl stop vision-infer; "
     "systemctl reset-failed", 30),
    ("a watchdog is not fed", "systemctl start plc-link; sleep 5; systemctl stop plc-link", 30),
    ("a notify service never says it is ready", "systemctl start modem-manager-lite; sleep 1",
     30),
    ("a service ignores SIGTERM at stop",
     "systemctl start stubborn-logger; sleep 1; systemctl stop stubborn-logger; "
     "systemctl reset-failed", 30),
    ("a mount waits for a device that never appears",
     "systemctl start data-sync; sleep 1; systemctl reset-failed", 30),
    ("a unit file with errors is loaded",
     "systemctl daemon-reload; systemctl start broken-unit; sleep 1", 30),
    ("the journal is rotated, journald restarted",
     "journalctl --rotate; "
     "systemctl restart systemd-journald; sleep 1; journalctl --flush", 30),
    ("healthy services stop before power off",
     "systemctl stop sensor-poller modbus-bridge log-shipper can-gateway camera-stream; "
     "sleep 1; journalctl --flush", 30),
]
