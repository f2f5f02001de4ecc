"""Attacks on a device's provisioning, each performed through the product's real
interfaces: a fleet server process (and a tampering proxy in front of it, standing for
a compromised server or a man in the middle), `nanofleet-agent enroll` in its own
process, and a real unprivileged user (``nobody``) planting links in the directory it
owns. One test case per attack.

Issue 8, findings 2 (update trust anchor from the online server), 6 (root escalation
through enroll) and 8 (secrets in group-readable files and on command lines); see
docs/security-identity.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.enrolled_fleet import EnrolledFleet, start_enrolled_fleet
from tests.support.tamper_proxy import TamperProxy, attacker_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plants links as another user")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledFleet]:
    f = start_enrolled_fleet(tmp_path_factory.mktemp("provisioning"))
    try:
        yield f
    finally:
        f.stop()


def _headers(fleet: EnrolledFleet) -> dict[str, str]:
    return {"Authorization": f"Bearer {fleet.setup.token}"}


def _identity(fleet: EnrolledFleet, device_id: str) -> dict[str, Any]:
    view: dict[str, Any] = httpx.get(f"{fleet.url}/api/v1/devices/{device_id}/identity",
                                     headers=_headers(fleet), timeout=5).json()
    return view


def _serial(directory: Path) -> int:
    return x509.load_pem_x509_certificate((directory / "device.crt").read_bytes()).serial_number


def _clone(src: Path, dst: Path) -> Path:
    """What a thief copies off a device (or out of a backup): the whole identity."""
    shutil.copytree(src, dst)
    return dst


# --- finding 2: the update trust anchor ------------------------------------------------------

def _swap_root(_path: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "tuf_root": attacker_root()}


@pytest.fixture
def evil_server(fleet: EnrolledFleet) -> Iterator[TamperProxy]:
    """The fleet server as a compromised one (or a man in the middle of plain http) would
    answer: everything real, except a TUF root the attacker holds the keys of."""
    proxy = TamperProxy(fleet.url, _swap_root).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _token_still_usable(fleet: EnrolledFleet, token: str, device_id: str, tmp: Path) -> None:
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token", token, "--device-id",
                              device_id, "--dir", str(tmp / "later"))
    assert proc.returncode == 0, proc.stderr


def anchor_attack_root_without_anchor(fleet: EnrolledFleet, evil: TamperProxy,
                                      tmp: Path) -> None:
    token = fleet.create_token("--device", "anc-1")
    proc = fleet.agent_enroll("--server", evil.url, "--insecure-lab", "--token", token,
                              "--device-id", "anc-1", "--dir", str(tmp / "id"))
    assert proc.returncode == 2 and "no trust anchor" in proc.stderr, proc.stderr
    assert not (tmp / "id" / "root.json").exists()
    assert evil.seen == []  # refused before the token went anywhere
    _token_still_usable(fleet, token, "anc-1", tmp)


def anchor_attack_root_not_the_pinned_one(fleet: EnrolledFleet, evil: TamperProxy,
                                          tmp: Path) -> None:
    token = fleet.create_token("--device", "anc-2")
    proc = fleet.agent_enroll("--server", evil.url, "--insecure-lab", "--root-sha256",
                              fleet.root_sha256, "--token", token, "--device-id", "anc-2",
                              "--dir", str(tmp / "id"))
    assert proc.returncode == 1 and "not the pinned" in proc.stderr, proc.stderr
    assert not (tmp / "id" / "root.json").exists()
    assert not (tmp / "id" / "device.crt").exists()


def anchor_attack_provisioned_root_replaced(fleet: EnrolledFleet, evil: TamperProxy,
                                            tmp: Path) -> None:
    """A device whose image carries the root: the server's root changes nothing."""
    provisioned = tmp / "image" / "root.json"
    provisioned.parent.mkdir()
    shutil.copy(fleet.setup.root_file, provisioned)
    token = fleet.create_token("--device", "anc-3")
    proc = fleet.agent_enroll("--server", evil.url, "--insecure-lab", "--root",
                              str(provisioned), "--token", token, "--device-id", "anc-3",
                              "--dir", str(tmp / "id"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp / "id" / "root.json").exists()
    snippet = proc.stdout[proc.stdout.index("# add to the agent config"):]
    assert f'root_file = "{provisioned}"' in snippet
    assert provisioned.read_bytes() == fleet.setup.root_file.read_bytes()


def anchor_attack_plain_http(fleet: EnrolledFleet, evil: TamperProxy, tmp: Path) -> None:
    token = fleet.create_token("--device", "anc-4")
    proc = fleet.agent_enroll("--server", fleet.url, "--root-sha256", fleet.root_sha256,
                              "--token", token, "--device-id", "anc-4", "--dir",
                              str(tmp / "id"))
    assert proc.returncode == 2 and "refusing plain http" in proc.stderr, proc.stderr
    _token_still_usable(fleet, token, "anc-4", tmp)
    lab = fleet.agent_enroll(*fleet.enroll_args(), "--token", fleet.create_token(),
                             "--device-id", "anc-5", "--dir", str(tmp / "lab"))
    assert lab.returncode == 0 and "WARNING: --insecure-lab" in lab.stderr


ANCHOR_ATTACKS: dict[str, Callable[[EnrolledFleet, TamperProxy, Path], None]] = {
    "root-without-anchor": anchor_attack_root_without_anchor,
    "root-not-the-pinned-one": anchor_attack_root_not_the_pinned_one,
    "provisioned-root-replaced": anchor_attack_provisioned_root_replaced,
    "plain-http": anchor_attack_plain_http,
}


@pytest.mark.parametrize("attack", sorted(ANCHOR_ATTACKS))
def test_update_trust_anchor_is_not_taken_from_the_server(
        fleet: EnrolledFleet, evil_server: TamperProxy, tmp_path: Path, attack: str) -> None:
    ANCHOR_ATTACKS[attack](fleet, evil_server, tmp_path)


def test_config_root_file_is_the_provisioned_anchor(fleet: EnrolledFleet,
                                                    evil_server: TamperProxy,
                                                    tmp_path: Path) -> None:
    from tests.support.agent_proc import write_config

    state = tmp_path / "state"
    provisioned = tmp_path / "root.json"
    shutil.copy(fleet.setup.root_file, provisioned)
    config = write_config(tmp_path / "agent.toml", "anc-6", state, 1,
                          f'[[sources]]\nkind = "file"\npath = "{tmp_path / "x.log"}"\n'
                          f'[ota]\nmetadata_url = "{fleet.url}/repo/metadata/"\n'
                          f'target_base_url = "{fleet.url}/repo/targets/"\n'
                          f'root_file = "{provisioned}"\n')
    proc = fleet.agent_enroll("--server", evil_server.url, "--insecure-lab", "--token",
                              fleet.create_token("--device", "anc-6"), "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    import tomllib

    assert tomllib.loads(config.read_text())["ota"]["root_file"] == str(provisioned)
    assert not (state / "identity" / "root.json").exists()


# --- finding 6: root escalation through `nanofleet-agent enroll` ----------------------------

NOBODY = pwd.getpwnam("nobody")


def _as_nobody(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "nobody", "--", *argv], check=True, timeout=10)


@pytest.fixture
def device_fs() -> Iterator[Path]:
    """Outside pytest's 0700 temp dirs, so that ``nobody`` can reach its state dir:
    ``state/`` (nobody's, like /var/lib/nanofleet) and ``victim/`` (root's)."""
    base = Path(tempfile.mkdtemp(prefix="nf-priv-", dir="/var/tmp"))
    try:
        os.chmod(base, 0o755)
        state = base / "state"
        state.mkdir(mode=0o700)
        os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
        victim = base / "victim"
        victim.mkdir(mode=0o755)
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        (victim / "secret.key").write_bytes(key)
        (victim / "secret.key").chmod(0o600)
        (victim / "shadow").write_text("root:$y$j9T$…:20000:0:99999:7:::\n")
        (victim / "shadow").chmod(0o600)
        yield base
    finally:
        shutil.rmtree(base)


def _snapshot(victim: Path) -> dict[str, tuple[bytes, int, int, int]]:
    out = {".": (b"", os.stat(victim).st_uid, os.stat(victim).st_gid,
                 stat.S_IMODE(os.stat(victim).st_mode))}
    for p in sorted(victim.iterdir()):
        st = os.lstat(p)
        out[p.name] = (p.read_bytes(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return out


def plant_temp_file_links(identity: Path, victim: Path) -> None:
    """enroll wrote ``.<name>.tmp`` with O_CREAT|O_TRUNC, following a link."""
    _as_nobody("mkdir", "-m", "700", str(identity))
    for name in ("device.key", "device.crt", "ca.crt", "root.json", "enrollment.json"):
        _as_nobody("ln", "-s", str(victim / "shadow"), str(identity / f".{name}.tmp"))


def plant_link_to_be_chowned(identity: Path, victim: Path) -> None:
    """--owner chowned every entry of the directory, following links."""
    _as_nobody("mkdir", "-m", "700", str(identity))
    _as_nobody("ln", "-s", str(victim / "shadow"), str(identity / "notes"))


def plant_identity_dir_link(identity: Path, victim: Path) -> None:
    """The identity directory itself a link: chmod 0700, files written, chown, there."""
    _as_nobody("ln", "-s", str(victim), str(identity))


def plant_key_link(identity: Path, victim: Path) -> None:
    """device.key a link to root's key: read as the device key, then chowned to nobody."""
    _as_nobody("mkdir", "-m", "700", str(identity))
    _as_nobody("ln", "-s", str(victim / "secret.key"), str(identity / "device.key"))


PLANTS: dict[str, Callable[[Path, Path], None]] = {
    "temp-file-links": plant_temp_file_links,
    "link-to-be-chowned": plant_link_to_be_chowned,
    "identity-dir-link": plant_identity_dir_link,
    "key-link": plant_key_link,
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_root_run_enroll_follows_no_link_of_the_agent_user(
        fleet: EnrolledFleet, device_fs: Path, plant: str) -> None:
    victim, identity = device_fs / "victim", device_fs / "state" / "identity"
    before = _snapshot(victim)
    PLANTS[plant](identity, victim)
    device_id = f"priv-{plant}"[:40]
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token",
                              fleet.create_token("--device", device_id), "--device-id",
                              device_id, "--dir", str(identity), "--owner", "nobody")
    assert _snapshot(victim) == before, proc.stderr
    if proc.returncode == 0:  # done beside the links, never through them
        for name in ("device.key", "device.crt", "ca.crt", "enrollment.json"):
            st = os.lstat(identity / name)
            assert stat.S_ISREG(st.st_mode) and st.st_uid == NOBODY.pw_uid, name
        assert stat.S_IMODE(os.lstat(identity / "device.key").st_mode) == 0o600
    else:
        assert proc.returncode == 2 and "symlink" in proc.stderr, proc.stderr


# --- finding 8 (part): secrets out of group-readable files and out of ps -------------------

def test_server_init_writes_a_private_config(tmp_path: Path) -> None:
    from tests.support.fleet_cli import nf

    old = os.umask(0o022)
    try:
        code, out, err = nf("server", "init", "--config", str(tmp_path / "server.toml"),
                            "--data-dir", str(tmp_path / "data"))
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "server.toml").stat().st_mode) == 0o600
    assert "--token-file" in out


def test_tokens_from_files_and_the_environment(fleet: EnrolledFleet, tmp_path: Path) -> None:
    """Neither the operator's nor the device's token needs to be on a command line."""
    from tests.support.fleet_cli import nf

    operator = tmp_path / "operator-token"
    operator.write_text(fleet.setup.token + "\n")
    operator.chmod(0o600)
    code, out, err = nf("enroll-token", "create", "--device", "file-1", "--server", fleet.url,
                        "--token-file", str(operator), "--json")
    assert code == 0, err
    enroll_token = json.loads(out)["token"]
    token_file = tmp_path / "enroll-token"
    token_file.write_text(enroll_token + "\n")
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token-file", str(token_file),
                              "--device-id", "file-1", "--dir", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    assert enroll_token not in " ".join(proc.args)
    env = {**os.environ, "NANOFLEET_ENROLL_TOKEN": fleet.create_token("--device", "file-2")}
    by_env = subprocess.run([*proc.args[:4], *fleet.enroll_args(), "--device-id", "file-2",
                             "--dir", str(tmp_path / "b")], env=env, capture_output=True,
                            text=True, timeout=60)
    assert by_env.returncode == 0, by_env.stderr
    env = {**os.environ, "NANOFLEET_TOKEN_FILE": str(operator)}
    listed = subprocess.run([proc.args[0], "-m", "fleet_server.cli", "enroll-token", "list",
                             "--all", "--server", fleet.url], env=env, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0 and "file-2" in listed.stdout, listed.stderr


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_agent_refuses_a_readable_password_file(tmp_path: Path, mode: int) -> None:
    from tests.support.agent_proc import write_config

    secret = tmp_path / "mqtt-password"
    secret.write_text("hunter2\n")
    secret.chmod(mode)
    config = write_config(tmp_path / "agent.toml", "pw-1", tmp_path / "state", 1,
                          f'[[sources]]\nkind = "file"\npath = "{tmp_path / "x.log"}"\n')
    text = config.read_text().replace("[mqtt]\n", f'[mqtt]\nusername = "pw-1"\n'
                                      f'password_file = "{secret}"\n', 1)
    config.write_text(text)
    check = subprocess.run([*_agent_cli(), "check-config", str(config)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 2
    assert "mqtt.password_file" in check.stderr and "chmod 600" in check.stderr
    secret.chmod(0o600)
    ok = subprocess.run([*_agent_cli(), "check-config", str(config)], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    from agent.config import load_config

    cfg = load_config(config)
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "hunter2"


def _agent_cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "agent.cli"]


def test_token_digest_is_the_pin(fleet: EnrolledFleet) -> None:
    """The pin operators take from the key ceremony is what the server serves."""
    served = httpx.get(f"{fleet.url}/repo/metadata/root.json", timeout=5).content
    assert hashlib.sha256(served).hexdigest() == fleet.root_sha256


def test_agent_run_as_root_refuses_a_state_dir_of_another_user(device_fs: Path) -> None:
    """The same class of bug in the daemon: run by hand as root, it would write its spool,
    checkpoints and models by path into the directory the agent's user owns."""
    from tests.support.agent_proc import write_config

    state, victim = device_fs / "state", device_fs / "victim"
    before = _snapshot(victim)
    for name in ("spool.db", "spool.db-wal", "checkpoints.json"):
        _as_nobody("ln", "-s", str(victim / "shadow"), str(state / name))
    config = write_config(device_fs / "agent.toml", "root-run", state, 1,
                          f'[[sources]]\nkind = "file"\npath = "{device_fs / "x.log"}"\n')
    proc = subprocess.run([*_agent_cli(), "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "refusing to run as root" in proc.stderr, proc.stderr
    assert _snapshot(victim) == before




def test_a_technician_queries_without_reading_the_password(device_fs: Path) -> None:
    """The secret is out of the technician's reach, the control socket is not: `query`
    needs only the socket path from the config."""
    from tests.support.agent_proc import write_config

    secret = device_fs / "mqtt-password"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)  # the agent's user only (root here)
    config = write_config(device_fs / "agent.toml", "tech-1", device_fs / "state", 1,
                          f'[[sources]]\nkind = "file"\npath = "{device_fs / "x.log"}"\n')
    config.write_text(config.read_text().replace(
        "[mqtt]\n", f'[mqtt]\nusername = "tech-1"\npassword_file = "{secret}"\n', 1))
    config.chmod(0o644)
    import agent.cli
    import agent.control

    # The venv is not readable by nobody here: fork, drop to nobody, run the CLI.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setresgid(NOBODY.pw_gid, NOBODY.pw_gid, NOBODY.pw_gid)
            os.setresuid(NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_uid)
            code = agent.cli.main(["query", "status", "--config", str(config)])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    # No daemon runs (3): the config was read and the socket path found, the secret not.
    assert os.waitstatus_to_exitcode(status) == 3


def test_enrollment_over_https_needs_no_lab_flag(fleet: EnrolledFleet, tmp_path: Path) -> None:
    """The production path: the fleet server behind a reverse proxy that ends TLS with a
    certificate from the operators' private CA, which the device gets as --ca-file."""
    from tests.support.tamper_proxy import https_identity, passthrough

    ca, cert, key = https_identity(tmp_path / "tls")
    proxy = TamperProxy(fleet.url, passthrough, tls=(cert, key)).start()
    try:
        token = fleet.create_token("--device", "tls-1")
        untrusted = fleet.agent_enroll("--server", proxy.url, "--root-sha256",
                                       fleet.root_sha256, "--token", token, "--device-id",
                                       "tls-1", "--dir", str(tmp_path / "a"))
        assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        proc = fleet.agent_enroll("--server", proxy.url, "--ca-file", str(ca),
                                  "--root-sha256", fleet.root_sha256, "--token", token,
                                  "--device-id", "tls-1", "--dir", str(tmp_path / "a"))
        assert proc.returncode == 0, proc.stderr
        assert "WARNING" not in proc.stderr
        renewed = fleet.agent_enroll("--renew", "--force", "--ca-file", str(ca), "--dir",
                                     str(tmp_path / "a"))
        assert renewed.returncode == 0 and "WARNING" not in renewed.stderr, renewed.stderr
    finally:
        proxy.stop()


def test_a_wrong_pin_does_not_spend_the_token(fleet: EnrolledFleet, tmp_path: Path) -> None:
    """The pin goes along with the request: an honest server with another root (a typo in
    the pin, a root rotated since) refuses before it uses the token up."""
    token = fleet.create_token("--device", "pin-1")
    proc = fleet.agent_enroll("--server", fleet.url, "--insecure-lab", "--root-sha256",
                              "0" * 64, "--token", token, "--device-id", "pin-1", "--dir",
                              str(tmp_path / "a"))
    assert proc.returncode == 1 and "root-mismatch" in proc.stderr, proc.stderr
    assert not (tmp_path / "a" / "device.crt").exists()
    _token_still_usable(fleet, token, "pin-1", tmp_path)


def test_root_run_owner_gives_no_file_through_a_hard_link(tmp_path: Path) -> None:
    """give_to (``enroll --owner`` run as root) chowned a regular file with another name:
    the agent's user, where ``fs.protected_hardlinks`` is 0, could link root's file into
    its identity directory as ``root.json`` and be given it (review, December 2026). Root
    makes the link here, standing in for that user."""
    from agent.enroll import EnrollError, give_to, prepare_dir

    victim = tmp_path / "victim"
    victim.write_text("root's secret\n")
    victim.chmod(0o600)
    identity = tmp_path / "identity"
    identity.mkdir(mode=0o700)
    os.chown(identity, NOBODY.pw_uid, NOBODY.pw_gid)
    os.link(victim, identity / "root.json")
    owner = (NOBODY.pw_uid, NOBODY.pw_gid)
    files = prepare_dir(identity, owner)
    try:
        with pytest.raises(EnrollError, match=r"root\.json has 2 names"):
            give_to(files, owner)
    finally:
        files.close()
    st = victim.stat()
    assert (st.st_uid, st.st_gid) == (0, 0)
