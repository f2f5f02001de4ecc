"""The SSH device driver: a device the rig reaches only over SSH, with the device
package installed from its .deb (see :mod:`hil.ssh_target` for the target itself).

- install: ``scp`` the .deb, ``dpkg -i`` (the maintainer scripts create the user,
  directories and unit links), ``nanofleet-agent check-config`` on the rig's config;
- power on: a small supervisor shell on the device starts ``nanofleet-agent run`` as
  the ``nanofleet`` user (``setpriv``, no systemd as PID 1 here), records its PID and,
  when it ends, its exit code; for a power cut at an OTA state it runs the agent through
  the rig's ``hil/ota_crash.py`` (copied over) with the package's interpreter instead;
- power cut: ``kill -9`` of the agent; shutdown: SIGTERM, then the exit code;
- traffic: one long-lived ``ssh ... 'cat >> device.log'`` whose stdin the rig writes;
- queries: the packaged interpreter asks the control socket (``agent.control.ask``);
- network cut: the data link's host end goes down (the management link stays up);
- collect: the agent's output, config, traffic, OTA record and ``dpkg -s`` back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import threading
import uuid
from pathlib import Path
from typing import IO, Any

from hil.devices import DeviceDriver, FleetEndpoints, agent_config_toml
from hil.links import NamespaceLink
from hil.rootfs import cache_root
from hil.scenario import AgentSpec
from hil.ssh_target import SshTarget, TargetError

REPO_ROOT = Path(__file__).resolve().parents[1]
HIL_DIR = "/var/lib/nanofleet-hil"  # the supervisor's files on the device
LOG_DIR = "/var/log/nanofleet-hil"
STATE_DIR = "/var/lib/nanofleet"
CONFIG = "/etc/nanofleet/agent.toml"
ROOT_FILE = "/etc/nanofleet/root.json"
BOOT_ID_FILE = f"{HIL_DIR}/boot_id"  # the simulated kernel boot id ([ota] boot_id_file)
PYTHON = "/usr/lib/nanofleet-agent/bin/python"
OTA_CRASH = Path(__file__).with_name("ota_crash.py")  # a power cut at an OTA state

# Starts the agent detached; $HIL/exit appears when it ends, holding the power-on's number
# and the exit code (argv: crash state or "", the number).
SUPERVISOR = f"""#!/bin/sh
# nanofleet HIL supervisor: start the agent as user nanofleet, keep its pid and exit code.
set -u
H={HIL_DIR}
G="${{2:-0}}"
rm -f "$H/exit" "$H/pid"
(
  if [ -n "${{1:-}}" ]; then set -- {PYTHON} "$H/ota_crash.py" "$1"
  else set -- /usr/bin/nanofleet-agent; fi
  echo "--- hil: power on at $(date +%T) ${{3:+(crash at $3)}} ---" >> {LOG_DIR}/agent.log
  setpriv --reuid=nanofleet --regid=nanofleet --init-groups \\
    "$@" run --config {CONFIG} >> {LOG_DIR}/agent.log 2>&1 &
  echo $! > "$H/pid.tmp" && mv "$H/pid.tmp" "$H/pid"
  wait $!
  code=$?
  echo "$G $code" > "$H/exit.tmp" && mv "$H/exit.tmp" "$H/exit"
) < /dev/null > /dev/null 2>&1 &
while [ ! -f "$H/pid" ]; do sleep 0.05; done
"""

ASK = ("import json, sys; from agent.control import ask; "
       "print(json.dumps(ask(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), timeout=10)))")


def tree_digest(*folders: str) -> str:
    """A digest of the files the device package is built from (cache key, pure I/O)."""
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(REPO_ROOT)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def device_deb(flavour: str = "litert", arch: str | None = None) -> Path:
    """The device .deb built from this tree (``$NANOFLEET_DEVICE_DEB`` if set), cached
    under the cache root by the digest of agent/, contract/ and packaging/."""
    if os.environ.get("NANOFLEET_DEVICE_DEB"):
        return Path(os.environ["NANOFLEET_DEVICE_DEB"])
    arch = arch or subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    digest = tree_digest("agent", "contract", "packaging")
    out = cache_root() / "debs" / f"{flavour}-{arch}-{digest}"
    found = sorted(out.glob("*.deb"))
    if found:
        return found[0]
    proc = subprocess.run(["bash", str(REPO_ROOT / "packaging/debian/build.sh"), "--flavour",
                           flavour, "--arch", arch, "--out", str(out), "--compression", "none"],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise TargetError(f"building the device package failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def query_command(cmd: str, args: dict[str, Any]) -> str:
    """The shell line that asks a packaged agent's control socket (pure)."""
    return (f"{PYTHON} -c {shlex.quote(ASK)} {STATE_DIR}/agent.sock {shlex.quote(cmd)} "
            f"{shlex.quote(json.dumps(args))}")


def exit_of_power_on(text: str, power_on: int) -> int | None:
    """The exit code in the supervisor's exit file if it is that of ``power_on`` (pure).
    An earlier run's file (read by a thread between a power on and the supervisor's
    removal of it: a power cut's watcher) is not this run's exit (December 2026: the rig
    saw a restarted agent "exit" with the crash's 137)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] != str(power_on):
        return None
    return int(parts[1])


def with_runtime(config: str, runtime: str) -> str:
    """The rig's agent config with ``[model] runtime`` set to the package's flavour (pure)."""
    return config.replace("[model]\n", f'[model]\nruntime = "{runtime}"\n', 1)


def package_config(device_id: str, link: NamespaceLink, agent: AgentSpec,
                   fleet: FleetEndpoints, runtime: str) -> str:
    """The rig's agent config for a device running the package at its own paths: OTA
    over MQTT (the broker is the device's only way out), the root file, the followed log
    and the simulated boot id where the device keeps them, the package's runtime (pure)."""
    text = agent_config_toml(device_id, state_dir=Path(STATE_DIR),
                             log_file=Path(f"{LOG_DIR}/device.log"), link=link, agent=agent,
                             fleet=fleet, ota_transport="mqtt", boot_id_file=Path(BOOT_ID_FILE))
    text = text.replace(f'root_file = "{fleet.root_file}"', f'root_file = "{ROOT_FILE}"')
    return with_runtime(text, runtime)


class SshDevice(DeviceDriver):
    """A device reached over SSH. Its link must be a :class:`NamespaceLink` (the data
    network the target lives behind)."""

    def __init__(self, device_id: str, link: NamespaceLink, workdir: Path, *,
                 agent: AgentSpec, fleet: FleetEndpoints, deb: Path | None = None) -> None:
        super().__init__(device_id, link)
        self.dir = workdir
        self.target = SshTarget(workdir, link.ns)
        try:
            self.target.start()
            version = self.install(deb or device_deb())
            self.runtime = "litert" if version.endswith("+litert") else "onnxruntime"
            self.configure(agent, fleet)
        except BaseException:
            self.target.close()  # no sshd or root file system left behind
            raise
        self._traffic: subprocess.Popen[bytes] | None = None
        self._traffic_in: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._exit: int | None = None
        self._started = False

    # --- provisioning --------------------------------------------------------------------
    def install(self, deb: Path) -> str:
        """Copy the .deb over and install it; the installed version."""
        self.target.put(deb, "/tmp/nanofleet-agent.deb")
        self.target.ssh("DEBIAN_FRONTEND=noninteractive dpkg --force-unsafe-io -i "
                        "/tmp/nanofleet-agent.deb", timeout=300)
        return self.target.ssh("dpkg-query -W -f '${Version}' nanofleet-agent").stdout.decode()

    def configure(self, agent: AgentSpec, fleet: FleetEndpoints) -> None:
        """The rig's config (OTA over MQTT: the broker is the device's only way out)."""
        self.target.write(ROOT_FILE, fleet.root_file.read_bytes())
        self.new_boot()
        assert isinstance(self.link, NamespaceLink)
        text = package_config(self.device_id, self.link, agent, fleet, self.runtime)
        self.target.write(CONFIG, text.encode(), mode="0640")
        self.target.write(f"{HIL_DIR}/supervise", SUPERVISOR.encode(), mode="0755")
        self.target.write(f"{HIL_DIR}/ota_crash.py", OTA_CRASH.read_bytes(), mode="0644")
        self.target.ssh(f"chgrp nanofleet {CONFIG} && mkdir -p {LOG_DIR} && "
                        f"touch {LOG_DIR}/device.log {LOG_DIR}/agent.log && "
                        f"chown nanofleet {LOG_DIR}/agent.log && "
                        f"setpriv --reuid=nanofleet --regid=nanofleet --init-groups "
                        f"nanofleet-agent check-config {CONFIG}")

    # --- power ---------------------------------------------------------------------------
    def power_on(self, crash_at_ota_state: str | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.device_id}: the agent is already running")
        self.power_ons += 1
        self._exit = None
        self.target.ssh(f"{HIL_DIR}/supervise {shlex.quote(crash_at_ota_state or '')} "
                        f"{self.power_ons}")
        self._started = True

    def wait_ready(self, timeout: float) -> None:
        self._wait_answering(timeout, (TargetError, ValueError, subprocess.TimeoutExpired))

    def _signal(self, sig: str) -> None:
        self.target.ssh(f"test -f {HIL_DIR}/exit || kill -{sig} $(cat {HIL_DIR}/pid)",
                        check=False)

    def power_cut(self) -> None:
        if self._started and self.exit_code() is None:
            self._signal("KILL")
            self._wait_exit(10)

    def new_boot(self) -> None:
        # The rig cuts the agent, not the target's kernel: its boot id is simulated.
        self.target.write(BOOT_ID_FILE, f"{uuid.uuid4()}\n".encode(), mode="0644")

    def shutdown(self, timeout: float = 15.0) -> int | None:
        if not self._started:
            return None
        if self.exit_code() is None:
            self._signal("TERM")
            if self._wait_exit(timeout) is None:
                self._signal("KILL")
                self._wait_exit(10)
        return self._exit

    def exit_code(self) -> int | None:
        if not self._started:
            return None
        if self._exit is None:
            run = self.power_ons  # a power on while the file is read must not get its code
            proc = self.target.ssh(f"cat {HIL_DIR}/exit 2>/dev/null", check=False, timeout=10)
            code = exit_of_power_on(proc.stdout.decode() if proc.returncode == 0 else "", run)
            if run != self.power_ons:
                return None
            self._exit = code
        return self._exit

    @property
    def running(self) -> bool:
        return self._started and self.exit_code() is None

    # --- traffic, queries, logs ----------------------------------------------------------
    def append_lines(self, lines: list[str]) -> None:
        with self._lock:
            if self._traffic is None or self._traffic.poll() is not None:
                self._traffic = subprocess.Popen(
                    self.target.ssh_command(f"cat >> {LOG_DIR}/device.log"),
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self._traffic_in = self._traffic.stdin
            assert self._traffic_in is not None
            self._traffic_in.write("".join(line + "\n" for line in lines).encode())
            self._traffic_in.flush()

    def query(self, cmd: str, **args: Any) -> dict[str, Any]:
        proc = self.target.ssh(query_command(cmd, args), check=False, timeout=20)
        if proc.returncode != 0:
            raise TargetError(f"query {cmd} failed: {proc.stderr.decode(errors='replace')[-500:]}")
        answer: dict[str, Any] = json.loads(proc.stdout)
        return answer

    def output_tail(self, lines: int = 40) -> str:
        proc = self.target.ssh(f"tail -n {lines} {LOG_DIR}/agent.log", check=False)
        return proc.stdout.decode(errors="replace")

    def collect(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for remote, name in ((f"{LOG_DIR}/agent.log", "agent.log"), (CONFIG, "agent.toml"),
                             (f"{LOG_DIR}/device.log", "device.log"),
                             (f"{STATE_DIR}/ota/logs.json", "ota-record.json"),
                             ("/var/lib/dpkg/status", "dpkg-status")):
            if self.target.get(remote, dest / name):
                out.append(dest / name)
        return out

    def describe(self) -> str:
        return f"SshDevice ({self.target.describe()}) over {self.link.describe()}"

    def close(self) -> None:
        with self._lock:
            if self._traffic is not None:
                if self._traffic_in is not None:
                    self._traffic_in.close()
                try:
                    self._traffic.wait(5)
                except subprocess.TimeoutExpired:
                    self._traffic.kill()
        with contextlib.suppress(TargetError, subprocess.TimeoutExpired):
            self.shutdown()
        self.target.close()
