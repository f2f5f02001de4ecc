"""The device-only Debian package, in both flavours (litert, onnxruntime).

Built for this machine's architecture by packaging/debian/build.sh (uncompressed, so
quick); its payload runs the agent's run-time paths with the system Python inside
the unit's seccomp sandbox; its files live only under the private prefix (nothing
in the system site-packages: issue 12, names for installation); its size stays in
budget (the figures are printed: ``pytest -s``); dpkg -i / -r / -P run in an overlay
chroot. The arm64 build and run: tests/test_arm64_device.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.device_env import unit_environment

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "packaging" / "debian" / "build.sh"
UNIT = ROOT / "packaging" / "systemd" / "nanofleet-agent.service"
SANDBOX = ROOT / "packaging" / "systemd" / "sandbox_exec.py"
PREFIX = "/usr/lib/nanofleet-agent"
# Installed size budgets (issue 11): MB of the package's own files.
BUDGET_MB = {"litert": 80, "onnxruntime": 150}
OTHER_RUNTIME = {"litert": "onnxruntime", "onnxruntime": "ai_edge_litert"}
# Every path the package may own outside its prefix (system integration only).
ALLOWED_OUTSIDE = {
    "./usr/bin/nanofleet-agent", "./lib/systemd/system/nanofleet-agent.service",
    "./usr/lib/sysusers.d/nanofleet.conf", "./usr/lib/tmpfiles.d/nanofleet.conf",
    "./etc/nanofleet/agent.toml",
}
ALLOWED_DIRS = {"./", "./usr/", "./usr/bin/", "./lib/", "./lib/systemd/",
                "./lib/systemd/system/", "./usr/lib/", "./usr/lib/sysusers.d/",
                "./usr/lib/tmpfiles.d/", "./etc/", "./etc/nanofleet/", "./usr/share/",
                "./usr/share/doc/"}


def build_deb(out: Path, flavour: str, arch: str | None = None,
              compression: str = "none") -> Path:
    assert shutil.which("dpkg-deb") and Path("/usr/bin/python3").exists(), \
        "dpkg-deb or the system python3 missing: run scripts/bootstrap.sh"
    cmd = ["bash", str(BUILD), "--flavour", flavour, "--out", str(out), "--compression",
           compression, *(["--arch", arch] if arch else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["litert", "onnxruntime"])
def built(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(flavour, .deb, extracted payload): one build per flavour (~80 s each with the
    wheelhouse in build/wheelhouse filled; the first build downloads the wheels)."""
    flavour = request.param
    out = tmp_path_factory.mktemp(f"dist-{flavour}")
    deb = build_deb(out, flavour)
    payload = out / "payload"
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(payload)], check=True)
    return flavour, deb, payload


def control(deb: Path) -> dict[str, str]:
    text = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True,
                          check=True).stdout
    return dict(re.findall(r"^(\S+): (.*)$", text, re.M))


def site_of(payload: Path) -> Path:
    (site,) = (payload / PREFIX.lstrip("/")).glob("lib/python3.*/site-packages")
    return site


def test_control_files_and_flavour(built: tuple[str, Path, Path]) -> None:
    flavour, deb, _ = built
    fields = control(deb)
    assert fields["Package"] == "nanofleet-agent"
    assert fields["Version"].endswith(f"+{flavour}")
    assert fields["Architecture"] == subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    depends = fields["Depends"]
    assert "python3.11" in depends and "python3-systemd" in depends
    assert f"nanofleet-agent-{flavour}" in fields["Provides"]
    ctrl = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True,
                          check=True).stdout
    assert b"/etc/nanofleet/agent.toml" in ctrl


def test_files_only_under_the_private_prefix(built: tuple[str, Path, Path]) -> None:
    """Issue 12, names: the generic top-level packages (agent, contract) exist only under
    /usr/lib/nanofleet-agent; nothing lands in a directory the system Python searches."""
    _, deb, _ = built
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                             text=True, check=True).stdout
    paths = [line.split()[5] for line in listing.splitlines()]
    outside = [p for p in paths if not p.startswith(f".{PREFIX}/")
               and not p.startswith("./usr/share/doc/nanofleet-agent/")
               and p not in ALLOWED_OUTSIDE and p not in ALLOWED_DIRS
               and p != f".{PREFIX}/"]
    assert outside == [], outside
    assert not [p for p in paths if "/dist-packages/" in p or p.startswith("./usr/lib/python3")]
    assert re.search(r"\./usr/bin/nanofleet-agent -> /usr/lib/nanofleet-agent/bin/"
                     r"nanofleet-agent$", listing, re.M)


def test_device_only_contents(built: tuple[str, Path, Path]) -> None:
    """The agent and what it loads: no server, rig or training code, not the other
    runtime, no tests, stubs or headers."""
    flavour, _, payload = built
    site = site_of(payload)
    top = {p.name for p in site.iterdir()}
    assert {"agent", "contract", "numpy", "pydantic", "paho", "tuf", "zstandard",
            "cryptography"} <= top
    assert not top & {"fleet_server", "hil", "nanomodel", "onnx", "fastapi", "sqlalchemy"}
    assert OTHER_RUNTIME[flavour] not in top
    assert (site / ("ai_edge_litert" if flavour == "litert" else "onnxruntime")).is_dir()
    assert (site / "agent" / "data" / "default.nfb").is_file()
    leftovers = [p for p in site.rglob("*") if p.name in ("tests", "include")
                 or p.suffix in (".pyi", ".h", ".pxd")]
    assert leftovers == []
    entry = payload / PREFIX.lstrip("/") / "bin" / "nanofleet-agent"
    assert entry.read_text().startswith(f"#!{PREFIX}/bin/python -s\n")  # no user site
    assert (payload / "lib/systemd/system/nanofleet-agent.service").read_bytes() == \
        UNIT.read_bytes()
    config = (payload / "etc/nanofleet/agent.toml").read_text()
    assert ('runtime = "litert"' in config) == (flavour == "litert")


def test_installed_size_within_budget(built: tuple[str, Path, Path]) -> None:
    flavour, deb, payload = built
    installed_mb = int(control(deb)["Installed-Size"]) / 1024
    site = site_of(payload)
    parts = sorted(((sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                     if p.is_dir() else p.stat().st_size) / 1e6, p.name)
                   for p in site.iterdir())
    print(f"\n{flavour}: installed {installed_mb:.1f} MB (budget {BUDGET_MB[flavour]} MB); "
          "largest: " + ", ".join(f"{n} {mb:.1f}" for mb, n in reversed(parts[-6:])))
    assert installed_mb <= BUDGET_MB[flavour]


# What the agent does at run time, with the packaged interpreter and code only (cwd
# elsewhere, no PYTHONPATH): config, the flavour's runtime on the shipped bundle, the
# OTA client's signature checks through cryptography (not the pure-Python fallback),
# zstd, enroll's key and CSR, the journal handler from Debian's python3-systemd.
PAYLOAD_PROBE = """
import sys
import paho.mqtt.client, systemd.journal, zstandard
from agent import default_bundle_path
from agent.model import LoadedModel
from agent.enroll import make_csr
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import _key
from tuf.api.metadata import Metadata, Root
from securesystemslib.signer import SSlibKey
import agent.daemon, agent.ota.tuf_client, contract.delta
import numpy as np
assert float(np.percentile(np.unique([3.0, 1.0, 2.0]), 99)) > 2.9  # numpy.ma, lazily
assert _key.CRYPTO_IMPORT_ERROR is None, _key.CRYPTO_IMPORT_ERROR
assert agent.__file__.startswith(sys.prefix), agent.__file__
m = LoadedModel.load(default_bundle_path(), sys.argv[1])
m.smoke_test()
probs, _ = m.classify(['kernel: EXT4-fs error (device mmcblk0p2): I/O error'])
key = ec.generate_private_key(ec.SECP256R1())  # what enroll makes, then its CSR
assert 'BEGIN CERTIFICATE REQUEST' in make_csr(key, 'pump-07')
assert zstandard.ZstdDecompressor().decompress(zstandard.ZstdCompressor().compress(b'x' * 99)) \\
    == b'x' * 99
print(m.runtime_name, m.labels[int(probs[0].argmax())])
"""


def test_payload_runs_the_agent_in_the_sandbox(built: tuple[str, Path, Path],
                                               tmp_path: Path) -> None:
    flavour, _, payload = built
    python = payload / PREFIX.lstrip("/") / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    check = subprocess.run([str(python), "-m", "agent.cli", "check-config",
                            str(payload / "etc/nanofleet/agent.toml")],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([sys.executable, str(SANDBOX), "--strict", str(UNIT), "--",
                          str(python), "-c", PAYLOAD_PROBE, flavour, str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-2:] == [flavour, "storage"]



# What the service loads from the dependencies: byte-code only, made at the unit's
# level (PYTHONOPTIMIZE=2: no docstrings), printed as name=origin.
BYTE_CODE_PROBE = """
import sys
import agent.daemon, agent.model, agent.ota.engine, agent.ota.tuf_client, contract.delta
import paho.mqtt.client, pydantic
__import__("ai_edge_litert.interpreter" if sys.argv[1] == "litert" else "onnxruntime")
print(sys.flags.optimize, paho.mqtt.client.Client.connect.__doc__ is None,
      pydantic.BaseModel.model_validate.__doc__ is None)
for name, mod in sorted(sys.modules.items()):
    origin = getattr(getattr(mod, "__spec__", None), "origin", None) or ""
    if "site-packages" in origin:
        print(name + "=" + origin)
"""


def test_dependencies_ship_byte_code_for_the_units_level(built: tuple[str, Path, Path],
                                                         tmp_path: Path) -> None:
    """The unit runs the agent with PYTHONOPTIMIZE=2 (docstrings dropped: less RSS). The
    dependencies ship byte-code only, so it must be made at that level: a legacy .pyc
    is loaded whatever the interpreter's level (our code and the standard library get
    theirs in a cache postinst compiles: test_deb_install_remove_purge)."""
    flavour, _, payload = built
    unit_env = unit_environment(UNIT)
    assert unit_env.get("PYTHONOPTIMIZE") == "2"
    python = payload / PREFIX.lstrip("/") / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(unit_env, PYTHONDONTWRITEBYTECODE="1")  # /usr is read-only on a device
    out = subprocess.run([str(python), "-c", BYTE_CODE_PROBE, flavour], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, env=env, check=True).stdout
    first, *modules = out.splitlines()
    assert first == "2 True True"
    deps = [m for m in modules if not m.startswith(("agent", "contract"))]
    assert len(deps) > 100, modules
    assert [m for m in deps if m.endswith(".py")] == []  # byte-code or extension modules
    # Without the service's environment (a technician's CLI) nothing changes for our code.
    plain = {k: v for k, v in env.items() if k != "PYTHONOPTIMIZE"}
    doc = subprocess.run([str(python), "-c", "import agent.model; print(agent.model.__doc__)"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, env=plain,
                         check=True).stdout
    assert doc.startswith("A loaded model")


# dpkg -i / -r / -P inside a private mount namespace, chrooted into an overlay of
# the host's root: the real maintainer scripts run, the host is untouched.
_LIFECYCLE = r"""
set -eu
B="$1"; DEB="$2"
mkdir -p "$B/upper" "$B/work" "$B/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$B/upper,workdir=$B/work" "$B/root"
mount --bind /proc "$B/root/proc"; mount --bind /dev "$B/root/dev"
mount -t tmpfs tmpfs "$B/root/run"   # no /run/systemd/system: systemd is not running
cp "$DEB" "$B/root/tmp/agent.deb"
chroot "$B/root" /bin/sh -eu -c '
! getent passwd nanofleet >/dev/null || { echo "user exists on host already"; exit 3; }
install -d /var/cache/nanofleet && touch /var/cache/nanofleet/planted  # an older version
dpkg --force-unsafe-io -i /tmp/agent.deb
echo "USER $(getent passwd nanofleet)"
echo "MODES $(stat -c "%a %U %G" /etc/nanofleet /etc/nanofleet/agent.toml /var/lib/nanofleet \
    | tr "\n" " ")"
echo "WANTS $(readlink /etc/systemd/system/multi-user.target.wants/nanofleet-agent.service)"
su -s /bin/sh nanofleet -c "nanofleet-agent check-config /etc/nanofleet/agent.toml"
su -s /bin/sh nanofleet -c "PYTHONOPTIMIZE=2 \
    nanofleet-agent check-config /etc/nanofleet/agent.toml >/dev/null"
C=/var/cache/nanofleet-agent/pycache
echo "CACHED $(find $C -name "*.opt-2.pyc" -path "*/site-packages/agent/*" | wc -l) \
    $(find $C/usr/lib -maxdepth 2 -name "typing.*.opt-2.pyc" | wc -l)"
echo "CACHE_OWNER $(stat -c "%U%a" /var/cache/nanofleet-agent $C | tr "\n" " ") \
    $(find /var/cache/nanofleet-agent ! -user root | wc -l)"
echo "CHECKED_HASH $(/usr/bin/python3 -c "import sys; print(int.from_bytes(open(sys.argv[1], \
    \"rb\").read(8)[4:8], \"little\"))" "$(find $C -path "*/agent/cli.*.opt-2.pyc")")"
echo "AGENT_WRITES $(su -s /bin/sh nanofleet -c "find /usr/lib/nanofleet-agent \
    /var/cache/nanofleet-agent /usr/lib/python3* -writable 2>/dev/null | wc -l") \
    $(ls -d /var/cache/nanofleet 2>/dev/null | wc -l)"
echo "SYSTEM_PYTHON $(cd / && /usr/bin/python3 -c "import agent" 2>&1 | tail -n 1)"
# A .pth the agent user planted in its per-user site-packages (its HOME is the state
# directory) must not run when the agent starts.
USITE=/var/lib/nanofleet/.local/lib/$(ls /usr/lib/nanofleet-agent/lib | head -n 1)/site-packages
install -d -o nanofleet -g nanofleet /var/lib/nanofleet/.local /var/lib/nanofleet/.local/lib \
    $(dirname $USITE) $USITE
echo "import os; os.mknod(\"/tmp/user-site-ran\")" > $USITE/planted.pth
su -s /bin/sh nanofleet -c "HOME=/var/lib/nanofleet \
    nanofleet-agent check-config /etc/nanofleet/agent.toml >/dev/null"
echo "USER_SITE $(ls /tmp/user-site-ran 2>/dev/null | wc -l)"
# An image built on this machine (dpkg --root, scripts run chrootless) and purged from it
# leaves the agent and device key of this machine alone. (No apostrophes in this script:
# it is one single-quoted argument of chroot.)
install -d -m 0700 -o nanofleet -g nanofleet /var/lib/nanofleet/identity
echo key > /var/lib/nanofleet/identity/device.key
T=/tmp/img; mkdir -p $T/var/lib/dpkg/info $T/var/lib/dpkg/updates $T/etc $T/tmp
touch $T/var/lib/dpkg/status
cp /etc/passwd /etc/group /etc/shadow /etc/gshadow $T/etc/
sed -i "/^nanofleet:/d" $T/etc/passwd $T/etc/group $T/etc/shadow $T/etc/gshadow
dpkg --root=$T --force-script-chrootless --force-depends --force-unsafe-io \
    -i /tmp/agent.deb >/dev/null 2>&1
dpkg --root=$T --force-script-chrootless --force-depends -P nanofleet-agent >/dev/null 2>&1
echo "IMAGE_PURGED $(ls -d /var/lib/nanofleet/identity/device.key \
    /usr/lib/nanofleet-agent/bin/nanofleet-agent /var/cache/nanofleet-agent | wc -l) \
    $(ls -d $T/var/lib/nanofleet $T/usr/lib/nanofleet-agent 2>/dev/null | wc -l)"
dpkg -r nanofleet-agent >/dev/null
echo "REMOVED_CACHE $(ls -d /var/cache/nanofleet-agent 2>/dev/null | wc -l)"
echo "MASKED $(readlink /etc/systemd/system/nanofleet-agent.service)"
echo "KEPT $(test -f /etc/nanofleet/agent.toml && echo conffile)"
echo secret > /etc/nanofleet/mqtt-password  # the shipped config says to put it here
dpkg -P nanofleet-agent >/dev/null 2>&1
echo "PURGED $(ls -d /etc/nanofleet /var/lib/nanofleet /var/cache/nanofleet-agent \
    /usr/lib/nanofleet-agent /etc/systemd/system/nanofleet-agent.service 2>/dev/null | wc -l)"
'
"""


def test_deb_install_remove_purge(built: tuple[str, Path, Path], tmp_path: Path) -> None:
    flavour, deb, _ = built
    if flavour != "litert":
        pytest.skip("the maintainer scripts are the same for both flavours")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for an overlay chroot")
    base = tmp_path / "ovl"
    try:
        proc = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", _LIFECYCLE, "lifecycle",
             str(base), str(deb)], capture_output=True, text=True, timeout=240,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
        if proc.returncode != 0 and "overlay" in proc.stderr and "mount" in proc.stderr:
            pytest.skip(f"no overlayfs here: {proc.stderr.strip()}")
        if proc.returncode == 3:
            pytest.skip("this host already has a nanofleet user (package installed?)")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines()
                 if line.split(" ", 1)[0] in ("USER", "MODES", "WANTS", "MASKED", "KEPT",
                                              "PURGED", "SYSTEM_PYTHON", "CACHED",
                                              "CACHE_OWNER", "CHECKED_HASH", "AGENT_WRITES",
                                              "IMAGE_PURGED", "REMOVED_CACHE", "USER_SITE"))
    assert lines["USER"].startswith("nanofleet:x:")
    assert lines["USER"].endswith(":/var/lib/nanofleet:/usr/sbin/nologin")
    assert lines["MODES"].split() == ["750", "root", "nanofleet", "640", "root", "nanofleet",
                                      "700", "nanofleet", "nanofleet"]
    assert lines["WANTS"] == "/lib/systemd/system/nanofleet-agent.service"
    # The byte-code the service loads (PYTHONOPTIMIZE=2) that the package does not ship,
    # ours and the standard library's, was compiled by postinst: root's, checked-hash.
    ours, stdlib = (int(n) for n in lines["CACHED"].split())
    assert ours > 10 and stdlib == 1, lines["CACHED"]
    assert lines["CACHE_OWNER"].split() == ["root755", "root755", "0"], lines["CACHE_OWNER"]
    assert lines["CHECKED_HASH"] == "3", lines["CHECKED_HASH"]  # flags: hash-based, checked
    # Run as the service runs it, the agent's user can write nothing it imports from, and
    # the old service-written cache (something planted in it) is gone.
    assert lines["AGENT_WRITES"].split() == ["0", "0"], lines["AGENT_WRITES"]
    # Purging an image built with dpkg --root kept this machine's key, agent and cache.
    assert lines["IMAGE_PURGED"].split() == ["3", "0"], lines["IMAGE_PURGED"]
    assert lines["REMOVED_CACHE"] == "0"
    assert "/etc/nanofleet/agent.toml: OK" in proc.stdout  # readable by the service user
    # Installed, yet the system's python3 has no module named agent: no collisions.
    assert "No module named 'agent'" in lines["SYSTEM_PYTHON"]
    assert lines["USER_SITE"] == "0"  # the planted user-site .pth did not run
    assert lines["MASKED"] == "/dev/null"  # removed, not purged: debhelper's behaviour
    assert lines["KEPT"] == "conffile"
    assert lines["PURGED"] == "0"


def _normalized(name: str) -> str:
    """A distribution name as the lock writes it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked(flavour: str) -> set[tuple[str, str]]:
    """(normalized name, version) of every package the lock pins for ``flavour``."""
    lock = ROOT / "packaging" / "debian" / "requirements" / "lock"
    text = (lock / "common.txt").read_text() + (lock / f"{flavour}.txt").read_text()
    return {(_normalized(n), v) for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_the_package_holds_exactly_the_locked_wheels(built: tuple[str, Path, Path]) -> None:
    """The dependencies installed are the lock's versions, no more, no fewer (the bytes are
    checked by pip's hash-checking mode during the build: the next test)."""
    flavour, _, payload = built
    installed = set()
    for info in site_of(payload).glob("*.dist-info"):
        name, version = info.name[:-len(".dist-info")].rsplit("-", 1)
        if name != "nanofleet_agent":
            installed.add((_normalized(name), version))
    assert installed == _locked(flavour)


def test_a_wheel_that_is_not_the_locked_one_fails_the_build(
        built: tuple[str, Path, Path], tmp_path: Path) -> None:
    """A wheel in the wheelhouse whose bytes changed after the lock (a replaced upload, a
    wrong mirror, a corrupt download) stops the build with what to do; nothing is built."""
    flavour, _, _ = built
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    house = tmp_path / "wheelhouse"
    shutil.copytree(ROOT / "build" / "wheelhouse" / arch, house / arch)
    name, stem = {"litert": ("ai-edge-litert", "ai_edge_litert"),
                  "onnxruntime": ("onnxruntime", "onnxruntime")}[flavour]
    version = dict(_locked(flavour))[name]
    (wheel,) = (house / arch).glob(f"{stem}-{version}-*.whl")
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    out = tmp_path / "dist"
    proc = subprocess.run(["bash", str(BUILD), "--flavour", flavour, "--offline", "--wheelhouse",
                           str(house), "--out", str(out), "--compression", "none"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "DO NOT MATCH THE HASHES" in proc.stderr and wheel.name in proc.stderr
    assert "is not the one locked in packaging/debian/requirements/lock/" in proc.stderr
    assert not out.exists() or not list(out.glob("*.deb"))
