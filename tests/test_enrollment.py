"""Enrollment end to end: `nanofleet enroll-token` -> `nanofleet-agent enroll` -> a real
fleet server process; certificates used on a real Mosquitto from `nanofleet broker-config`.

Covers: key made on the device and never sent, files and permissions, the stored
TUF root, tokens single-use / expiring / bound / cancelled, clear errors (bad token,
unreachable server, reserved id, CN mismatch), CSR checks on the server, renewal.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import stat
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fleet_server.config import ServerConfig
from fleet_server.db import Database
from fleet_server.identity.service import IdentityService, IssuedIdentity
from fleet_server.identity.tokens import EnrollmentRefused, TokenSpec
from hil import postgres
from hil.broker import free_port
from tests.support.enrolled_fleet import (
    EnrolledFleet,
    renewal_proof,
    start_enrolled_fleet,
    try_connect,
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledFleet]:
    f = start_enrolled_fleet(tmp_path_factory.mktemp("enroll"))
    try:
        yield f
    finally:
        f.stop()


def _csr(cn: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _enroll_api(fleet: EnrolledFleet, token: str, device_id: str, csr: str) -> httpx.Response:
    return httpx.post(f"{fleet.url}/api/v1/enroll", json={
        "token": token, "device_id": device_id, "csr": csr}, timeout=10)


def test_agent_enroll_keeps_the_key_on_the_device(fleet: EnrolledFleet) -> None:
    token = fleet.create_token("--device", "pump-01")
    directory = fleet.workdir / "devices" / "pump-01"
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token", token, "--device-id",
                              "pump-01", "--dir", str(directory))
    assert proc.returncode == 0, proc.stderr
    fleet.identities["pump-01"] = directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "device.key").stat().st_mode) == 0o600
    key = serialization.load_pem_private_key((directory / "device.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate((directory / "device.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pump-01"
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(ca)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 29 <= days <= 31  # enrollment.device_cert_hours default: 30 days
    # The provisioned TUF root is the repository's current one.
    served = httpx.get(f"{fleet.url}/repo/metadata/root.json", timeout=5).content
    assert json.loads((directory / "root.json").read_bytes()) == json.loads(served)
    # The printed snippet is the agent config to add.
    snippet = tomllib.loads(proc.stdout[proc.stdout.index("# add to the agent config"):])
    assert snippet["device_id"] == "pump-01"
    assert snippet["mqtt"]["port"] == fleet.tls_port
    assert snippet["mqtt"]["tls"]["key_file"] == str(directory / "device.key")
    assert snippet["ota"]["root_file"] == str(directory / "root.json")
    # The private key never reached the server: no trace in its database, files or log.
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    pem_lines = (directory / "device.key").read_bytes().splitlines()
    # The PEM body lines carry the key's bytes (the first one after a shared PKCS#8 header).
    needles = [secret, secret.hex().encode(), base64.b64encode(secret), *pem_lines[1:-1]]
    for path in [*fleet.setup.workdir.rglob("*"), fleet.server.log_path]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), path
    # ...and the certificate works on the broker.
    assert try_connect(fleet.tls_port, fleet.device_tls("pump-01")) is None
    # The device is in the inventory (before it ever reported) and its identity is known.
    headers = {"Authorization": f"Bearer {fleet.setup.token}"}
    assert httpx.get(f"{fleet.url}/api/v1/devices/pump-01", headers=headers,
                     timeout=5).status_code == 200
    view = httpx.get(f"{fleet.url}/api/v1/devices/pump-01/identity", headers=headers,
                     timeout=5).json()
    assert view["status"] == "enrolled" and view["certificates"][0]["serial"] == \
        format(cert.serial_number, "x")


def test_token_is_single_use(fleet: EnrolledFleet) -> None:
    token = fleet.create_token()
    fleet.enroll("pump-02", token)
    again = fleet.agent_enroll(*fleet.enroll_args(), "--token", token, "--device-id",
                               "pump-03", "--dir", str(fleet.workdir / "devices" / "pump-03"))
    assert again.returncode == 1
    assert "already used (by device 'pump-02'" in again.stderr and "token-used" in again.stderr


def test_expired_token_is_refused(fleet: EnrolledFleet) -> None:
    token = fleet.create_token("--expires", "1s")
    time.sleep(1.2)
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token", token, "--device-id", "pump-04",
                              "--dir", str(fleet.workdir / "devices" / "pump-04"))
    assert proc.returncode == 1 and "expired at" in proc.stderr, proc.stderr
    code, out, _ = fleet.nanofleet("enroll-token", "list", "--all")
    assert code == 0 and "expired" in out


def test_token_bound_to_another_device(fleet: EnrolledFleet) -> None:
    token = fleet.create_token("--device", "pump-05")
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token", token, "--device-id", "pump-06",
                              "--dir", str(fleet.workdir / "devices" / "pump-06"))
    assert proc.returncode == 1
    assert "is for device 'pump-05'" in proc.stderr and "--device-id pump-05" in proc.stderr
    fleet.enroll("pump-05", token)  # the refusal did not use it up


def test_cancelled_and_unknown_tokens(fleet: EnrolledFleet) -> None:
    token = fleet.create_token()
    token_id = token.split("_")[1]
    code, out, err = fleet.nanofleet("enroll-token", "cancel", token_id)
    assert code == 0 and "cancelled" in out, err
    out_dir = str(fleet.workdir / "devices" / "pump-07")
    for bad, expected in ((token, "was cancelled"), ("nfe_00000000_" + "A" * 43, "not known"),
                          ("hello", "not an enrollment token")):
        proc = fleet.agent_enroll(*fleet.enroll_args(), "--token", bad, "--device-id",
                                  "pump-07", "--dir", out_dir)
        assert proc.returncode == 1 and expected in proc.stderr, proc.stderr


def test_clear_errors_before_or_without_the_server(fleet: EnrolledFleet, tmp_path: Path) -> None:
    unreachable = fleet.agent_enroll("--server", f"http://127.0.0.1:{free_port()}",
                                     "--insecure-lab", "--root-sha256", fleet.root_sha256,
                                     "--token", "x", "--device-id", "pump-08", "--dir",
                                     str(tmp_path / "a"))
    assert unreachable.returncode == 1 and "cannot reach the fleet server" in unreachable.stderr
    reserved = fleet.agent_enroll(*fleet.enroll_args(), "--token", fleet.create_token(),
                                  "--device-id", "fleet-server", "--dir", str(tmp_path / "b"))
    assert reserved.returncode == 1 and "reserved" in reserved.stderr
    config = tmp_path / "agent.toml"
    config.write_text('device_id = "pump-09"\n')
    mismatch = fleet.agent_enroll(*fleet.enroll_args(), "--token", "x", "--device-id",
                                  "pump-10", "--config", str(config))
    assert mismatch.returncode == 2 and "fix one of them" in mismatch.stderr
    no_token = fleet.agent_enroll(*fleet.enroll_args(), "--dir", str(tmp_path / "c"),
                                  "--device-id", "pump-11")
    assert no_token.returncode == 2 and "--token" in no_token.stderr


def test_server_checks_the_csr(fleet: EnrolledFleet) -> None:
    token = fleet.create_token()
    wrong_cn = _enroll_api(fleet, token, "pump-12", _csr("pump-99"))
    assert wrong_cn.status_code == 400
    assert wrong_cn.json()["error"]["code"] == "bad-csr"
    assert "'pump-99' is not the device id 'pump-12'" in wrong_cn.json()["error"]["message"]
    weak = _enroll_api(fleet, token, "pump-12", _csr("pump-12", rsa.generate_private_key(
        public_exponent=65537, key_size=1024)))
    assert weak.status_code == 400 and "RSA 1024" in weak.json()["error"]["message"]
    pem = _csr("pump-12")
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(
        serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    bad_sig = _enroll_api(fleet, token, "pump-12", forged.decode())
    assert bad_sig.status_code == 400 and "signature" in bad_sig.json()["error"]["message"]
    garbage = _enroll_api(fleet, token, "pump-12", "-----BEGIN CERTIFICATE REQUEST-----\nxx")
    assert garbage.status_code == 400
    # None of the refusals used the token up.
    assert _enroll_api(fleet, token, "pump-12", pem).status_code == 200


def test_racing_enrollments_with_one_token(fleet: EnrolledFleet) -> None:
    token = fleet.create_token()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: _enroll_api(fleet, token, f"race-{i}",
                                                      _csr(f"race-{i}")), range(6)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 5


def test_renewal_rotates_the_key(fleet: EnrolledFleet) -> None:
    directory = fleet.identities["pump-01"]
    before = x509.load_pem_x509_certificate((directory / "device.crt").read_bytes())
    old_key = (directory / "device.key").read_bytes()
    not_due = fleet.agent_enroll("--renew", "--dir", str(directory))
    assert not_due.returncode == 0 and "not due" in not_due.stdout
    reloads = fleet.broker.reloads()
    renewed = fleet.agent_enroll("--renew", "--force", "--dir", str(directory))
    assert renewed.returncode == 0, renewed.stderr
    after = x509.load_pem_x509_certificate((directory / "device.crt").read_bytes())
    assert after.serial_number != before.serial_number
    assert after.public_key() != before.public_key()  # a new key...
    assert (directory / "device.key").read_bytes() != old_key
    assert stat.S_IMODE((directory / "device.key").stat().st_mode) == 0o600
    assert not (directory / "device.key.next").exists()
    assert not (directory / "device.crt.next").exists()
    assert try_connect(fleet.tls_port, fleet.device_tls("pump-01")) is None
    # ...and the renewed certificate is revoked, and the broker told at once.
    fleet.broker.wait_reloads(reloads + 1)
    crl = x509.load_pem_x509_crl(httpx.get(f"{fleet.url}/api/v1/device-ca/crl.pem",
                                           timeout=5).content)
    assert crl.get_revoked_certificate_by_serial_number(before.serial_number) is not None


def test_identity_management_needs_the_admin_scope(fleet: EnrolledFleet) -> None:
    admin = {"Authorization": f"Bearer {fleet.setup.token}"}
    made = httpx.post(f"{fleet.url}/api/v1/tokens", json={"name": "ci-deployer",
                      "scopes": ["read", "deploy"]}, headers=admin, timeout=10)
    assert made.status_code in (200, 201), made.text
    deployer = {"Authorization": f"Bearer {made.json()['token']}"}
    for method, path in (("POST", "/api/v1/enroll-tokens"),
                         ("POST", "/api/v1/devices/pump-01/revoke")):
        refused = httpx.request(method, f"{fleet.url}{path}", json={}, headers=deployer,
                                timeout=10)
        assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    assert httpx.get(f"{fleet.url}/api/v1/enroll-tokens", headers=deployer,
                     timeout=10).status_code == 200


def test_openapi_describes_the_enrollment_models(fleet: EnrolledFleet) -> None:
    schema = httpx.get(f"{fleet.url}/openapi.json", timeout=10).json()
    components = schema["components"]["schemas"]
    for name in ("EnrollRequest", "RenewRequest", "EnrollResponse", "EnrollTokenCreate",
                 "EnrollTokenCreated", "EnrollTokenList", "DeviceRevoke", "Revocation",
                 "DeviceIdentityView", "CertificateView"):
        undocumented = [p for p, spec in components[name]["properties"].items()
                        if not spec.get("description")]
        assert not undocumented, (name, undocumented)
    enroll = schema["paths"]["/api/v1/enroll"]["post"]
    assert enroll["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/EnrollRequest")
    assert enroll["responses"]["409"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/ErrorBody")


def test_identity_on_postgresql(tmp_path: Path) -> None:
    """The same identity code on PostgreSQL: racing claims, revocation into the CRL."""
    pg = postgres.Postgres().start()
    db = Database(pg.url)
    try:
        config = ServerConfig(data_dir=tmp_path, database_url=pg.url)
        identity = IdentityService(config, db)
        token, view = identity.create_token(TokenSpec(None, "g", ["t"], 60), "ops")
        assert view["state"] == "usable"
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(lambda i: _try_enroll(identity, token, f"pg-{i}"),
                                     range(4)))
        assert sorted(outcomes) == ["ok", "token-used", "token-used", "token-used"]
        winner = f"pg-{outcomes.index('ok')}"
        revoked = identity.revoke(winner, "test", "ops")
        crl = x509.load_pem_x509_crl(identity.broker_policy()[0])
        assert crl.get_revoked_certificate_by_serial_number(
            int(revoked["revoked_serials"][0], 16)) is not None
        assert f"user {winner}\ntopic deny #" in identity.acl_path.read_text()
    finally:
        db.dispose()
        pg.stop()


def _sqlite_identity(tmp_path: Path) -> IdentityService:
    url = f"sqlite:///{tmp_path}/fleet.db"
    return IdentityService(ServerConfig(data_dir=tmp_path, database_url=url), Database(url))


def _renew(identity: IdentityService, device_id: str, key: ec.EllipticCurvePrivateKey,
           certificate_pem: str) -> tuple[ec.EllipticCurvePrivateKey, IssuedIdentity]:
    """One renewal as agent/enroll.py makes it: a new key, proven with the current one."""
    new = ec.generate_private_key(ec.SECP256R1())
    csr = _csr(device_id, new)
    serial = format(x509.load_pem_x509_certificate(certificate_pem.encode()).serial_number, "x")
    return new, identity.renew(device_id, certificate_pem, csr,
                               renewal_proof(key, device_id, serial, csr))


def _live_serials(identity: IdentityService, device_id: str) -> list[str]:
    return [c["serial"] for c in (identity.device_view(device_id) or {})["certificates"]
            if c["revoked_at"] is None]


def _try_enroll(identity: IdentityService, token: str, device_id: str) -> str:
    try:
        identity.enroll(token, device_id, _csr(device_id))
    except EnrollmentRefused as exc:
        return exc.code
    return "ok"


def test_a_key_renewing_in_a_loop_is_stopped(tmp_path: Path) -> None:
    """Each renewal revokes the renewed certificate for the rest of its life (a CRL entry),
    rebuilds the CRL and reloads the broker (review, December 2026: one cloned key renewing
    25-50 times a second grew the CRL to 40,000 entries, 2 MiB, within the hour). A device
    renews MAX_RENEWALS_PER_WINDOW times a day at most; then 429."""
    from fleet_server.identity.service import MAX_RENEWALS_PER_WINDOW

    identity = _sqlite_identity(tmp_path)
    token, _ = identity.create_token(TokenSpec("loop-1", None, [], 60), "ops")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = identity.enroll(token, "loop-1", _csr("loop-1", key)).certificate_pem
    for _ in range(MAX_RENEWALS_PER_WINDOW):
        key, issued = _renew(identity, "loop-1", key, pem)
        pem = issued.certificate_pem
    with pytest.raises(EnrollmentRefused) as refused:
        _renew(identity, "loop-1", key, pem)
    assert (refused.value.status, refused.value.code) == (429, "renewal-rate-limited")
    assert "renew again tomorrow" in refused.value.message
    crl = x509.load_pem_x509_crl(identity.broker_policy()[0])
    assert len(list(crl)) == MAX_RENEWALS_PER_WINDOW  # and no more


def test_the_public_crl_download_is_built_at_most_every_few_seconds(tmp_path: Path) -> None:
    """GET /device-ca/crl.pem needs no login; each build reads every revocation and signs
    (review, December 2026: 2.5 s of CPU per request at 40,000 entries). Built once per
    CRL_MAX_AGE_S, and at once after a change this server made."""
    identity = _sqlite_identity(tmp_path)
    builds: list[float] = []
    build = identity.policy.build

    def counted() -> tuple[bytes, str]:
        builds.append(time.monotonic())
        return build()

    identity.policy.build = counted  # type: ignore[method-assign]
    first = identity.downloadable_crl()
    assert [identity.downloadable_crl() for _ in range(50)] == [first] * 50
    assert len(builds) == 1
    token, _ = identity.create_token(TokenSpec("crl-1", None, [], 60), "ops")
    identity.enroll(token, "crl-1", _csr("crl-1"))
    revoked = identity.revoke("crl-1", "test", "ops")
    crl = x509.load_pem_x509_crl(identity.downloadable_crl())
    assert crl.get_revoked_certificate_by_serial_number(
        int(revoked["revoked_serials"][0], 16)) is not None
    assert identity.downloadable_crl(max_age_s=0.0) != first


def test_a_token_made_before_its_device_enrolled_cannot_replace_it(tmp_path: Path) -> None:
    """Two tokens for one id before it enrolled (one lost, a second made): once the device
    enrolled with one, the other may not take its identity over and revoke its certificates
    (before: it did, without anyone saying --replace). A token made with --replace may."""
    identity = _sqlite_identity(tmp_path)
    lost, _ = identity.create_token(TokenSpec("swap-1", None, [], 3600), "ops")
    used, _ = identity.create_token(TokenSpec("swap-1", None, [], 3600), "ops")
    real = identity.enroll(used, "swap-1", _csr("swap-1"))
    with pytest.raises(EnrollmentRefused) as refused:
        identity.enroll(lost, "swap-1", _csr("swap-1"))
    assert refused.value.code == "device-enrolled" and "--replace" in refused.value.message
    assert _live_serials(identity, "swap-1") == [real.serial]
    replacing, _ = identity.create_token(TokenSpec("swap-1", None, [], 3600, True), "ops")
    assert identity.enroll(replacing, "swap-1", _csr("swap-1")).serial != real.serial


def test_a_renewal_racing_a_replacement_does_not_outlive_it(tmp_path: Path) -> None:
    """The thief renews the cloned key while the operator re-enrolls the id with --replace.
    Before (review, December 2026): the renewal read the certificate as live, the
    replacement committed, and the renewal's successor stayed live and off the CRL. Now
    the two take the identity's row in turn: whichever ends last sees the other's work."""
    import threading

    identity = _sqlite_identity(tmp_path)
    first_token, _ = identity.create_token(TokenSpec(None, None, [], 3600), "ops")
    key = ec.generate_private_key(ec.SECP256R1())
    first = identity.enroll(first_token, "race-1", _csr("race-1", key))
    replace_token, _ = identity.create_token(TokenSpec("race-1", None, [], 3600, True), "ops")
    renewing, replaced = threading.Event(), threading.Event()
    issue = identity.ca.issue_for_csr

    def paused_issue(*args: Any) -> Any:  # the renewal has read; the replacement goes now
        if threading.current_thread().name == "thief":
            renewing.set()
            replaced.wait(2)
        return issue(*args)

    identity.ca.issue_for_csr = paused_issue  # type: ignore[method-assign]
    stolen: dict[str, Any] = {}

    def thief() -> None:
        stolen["issued"] = _renew(identity, "race-1", key, first.certificate_pem)[1]

    t = threading.Thread(target=thief, name="thief")
    t.start()
    assert renewing.wait(10)
    replacement = identity.enroll(replace_token, "race-1", _csr("race-1"))
    replaced.set()
    t.join(20)
    live = _live_serials(identity, "race-1")
    assert live == [replacement.serial], (live, stolen)
