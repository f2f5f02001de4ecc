"""Attacks on device identity and its provisioning, each performed through the product's
real interfaces: a fleet server process, Mosquitto running the configuration `nanofleet
broker-config` writes (reloaded by the server itself), `nanofleet-agent enroll` in its
own process. One test case per attack.

Issue 8, finding 1 (id takeover, renewal) and what lies around it (CSR contents, the
broker certificate, body sizes); provisioning attacks are in
tests/test_provisioning_attacks.py; see docs/security-identity.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.enrolled_fleet import (
    EnrolledFleet,
    renewal_proof,
    start_enrolled_fleet,
    try_connect,
)
from tests.support.tamper_proxy import TamperProxy, attacker_certificate


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledFleet]:
    f = start_enrolled_fleet(tmp_path_factory.mktemp("attacks"))
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


# --- finding 1: taking over an enrolled id --------------------------------------------------

def attack_unbound_token_takes_enrolled_id(fleet: EnrolledFleet, tmp: Path) -> None:
    fleet.enroll("vic-1", fleet.create_token("--device", "vic-1", "--group", "line-1"))
    leaked = fleet.create_token("--group", "attacker")  # any general-purpose token
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token", leaked, "--device-id", "vic-1",
                              "--dir", str(tmp / "thief"))
    assert proc.returncode == 1 and "device-enrolled" in proc.stderr, proc.stderr
    assert not (tmp / "thief" / "device.crt").exists()
    view = _identity(fleet, "vic-1")
    assert len(view["certificates"]) == 1 and view["certificates"][0]["revoked_at"] is None
    device = httpx.get(f"{fleet.url}/api/v1/devices/vic-1", headers=_headers(fleet),
                       timeout=5).json()
    assert device["group"] == "line-1"  # not the token's
    assert try_connect(fleet.tls_port, fleet.device_tls("vic-1")) is None


def attack_leaked_key_outlives_renewal(fleet: EnrolledFleet, tmp: Path) -> None:
    directory = fleet.enroll("vic-3")
    stolen = _clone(directory, tmp / "stolen")  # key, certificate, CA, enrollment record
    reloads = fleet.broker.reloads()
    renewed = fleet.agent_enroll("--renew", "--force", "--dir", str(directory))
    assert renewed.returncode == 0, renewed.stderr
    fleet.broker.wait_reloads(reloads + 1)
    stolen_tls = {"ca": str(stolen / "ca.crt"), "cert": str(stolen / "device.crt"),
                  "key": str(stolen / "device.key")}
    assert try_connect(fleet.tls_port, stolen_tls) is not None  # the old pair is dead...
    thief = fleet.agent_enroll("--renew", "--force", "--dir", str(stolen))
    assert thief.returncode == 1 and "renewal-refused" in thief.stderr, thief.stderr
    assert try_connect(fleet.tls_port, fleet.device_tls("vic-3")) is None  # ...the device lives


def attack_thief_renews_first(fleet: EnrolledFleet, tmp: Path) -> None:
    """The thief of a key renews before the device: only one lineage survives, and the
    device's refused renewal shows the theft (the operator re-enrolls it)."""
    directory = fleet.enroll("vic-4")
    stolen = _clone(directory, tmp / "stolen")
    thief = fleet.agent_enroll("--renew", "--force", "--dir", str(stolen))
    assert thief.returncode == 0, thief.stderr
    device = fleet.agent_enroll("--renew", "--force", "--dir", str(directory))
    assert device.returncode == 1 and "revoked" in device.stderr, device.stderr
    reloads = fleet.broker.reloads()
    code, _, err = fleet.nanofleet("devices", "revoke", "vic-4", "--reason", "key stolen")
    assert code == 0, err
    fleet.broker.wait_reloads(reloads + 1)  # the broker re-reads the CRL after a signal
    stolen_tls = {"ca": str(stolen / "ca.crt"), "cert": str(stolen / "device.crt"),
                  "key": str(stolen / "device.key")}
    assert try_connect(fleet.tls_port, stolen_tls) is not None


def attack_renewal_answer_from_another_ca(fleet: EnrolledFleet, tmp: Path) -> None:
    """On the path of a renewal (or a server that lost its CA key to someone): the answer
    carries a certificate from the attacker's CA, and that CA. Storing it would make the
    device trust the attacker's broker."""
    directory = fleet.enroll("vic-5")
    ca_before = (directory / "ca.crt").read_bytes()
    proxy = TamperProxy(fleet.url, lambda _p, answer: attacker_certificate(answer)).start()
    try:
        proc = fleet.agent_enroll("--renew", "--force", "--dir", str(directory), "--server",
                                  proxy.url)
    finally:
        proxy.stop()
    assert proc.returncode == 1 and "another CA" in proc.stderr, proc.stderr
    assert (directory / "ca.crt").read_bytes() == ca_before
    # The server did renew (and revoked the old certificate): the device, retrying with
    # the same next key, gets that same successor, from the real server.
    retry = fleet.agent_enroll("--renew", "--force", "--dir", str(directory))
    assert retry.returncode == 0, retry.stderr
    assert try_connect(fleet.tls_port, fleet.device_tls("vic-5")) is None


TAKEOVER_ATTACKS: dict[str, Callable[[EnrolledFleet, Path], None]] = {
    "unbound-token-takes-enrolled-id": attack_unbound_token_takes_enrolled_id,
    "leaked-key-outlives-renewal": attack_leaked_key_outlives_renewal,
    "thief-renews-first": attack_thief_renews_first,
    "renewal-answer-from-another-ca": attack_renewal_answer_from_another_ca,
}


@pytest.mark.parametrize("attack", sorted(TAKEOVER_ATTACKS))
def test_identity_takeover_is_refused(fleet: EnrolledFleet, tmp_path: Path,
                                      attack: str) -> None:
    TAKEOVER_ATTACKS[attack](fleet, tmp_path)


def test_replacing_an_enrolled_device_revokes_its_certificates(fleet: EnrolledFleet,
                                                               tmp_path: Path) -> None:
    old = _clone(fleet.enroll("vic-6"), tmp_path / "old-hardware")
    code, _, err = fleet.nanofleet("enroll-token", "create", "--device", "vic-6")
    assert code == 1 and "--replace" in err, err  # the operator has to say so
    token = fleet.create_token("--device", "vic-6", "--replace")
    reloads = fleet.broker.reloads()
    new = fleet.agent_enroll(*fleet.enroll_args(), "--token", token, "--device-id", "vic-6",
                             "--dir", str(tmp_path / "new-hardware"))
    assert new.returncode == 0, new.stderr
    fleet.broker.wait_reloads(reloads + 1)
    old_tls = {"ca": str(old / "ca.crt"), "cert": str(old / "device.crt"),
               "key": str(old / "device.key")}
    assert try_connect(fleet.tls_port, old_tls) is not None
    new_tls = {"ca": str(tmp_path / "new-hardware" / "ca.crt"),
               "cert": str(tmp_path / "new-hardware" / "device.crt"),
               "key": str(tmp_path / "new-hardware" / "device.key")}
    assert try_connect(fleet.tls_port, new_tls) is None
    certs = _identity(fleet, "vic-6")["certificates"]
    assert [c["revoked_at"] is None for c in certs] == [True, False]  # newest first
    crl = x509.load_pem_x509_crl(httpx.get(f"{fleet.url}/api/v1/device-ca/crl.pem",
                                           timeout=5).content)
    assert crl.get_revoked_certificate_by_serial_number(_serial(old)) is not None


def _csr(key: ec.EllipticCurvePrivateKey, cn: str) -> str:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def test_renewal_needs_the_current_key(fleet: EnrolledFleet) -> None:
    """The certificate is public: with it alone nobody renews, whether the proof is made
    with a key of one's own or lifted from one of the device's own requests."""
    directory = fleet.enroll("vic-7")
    cert_pem = (directory / "device.crt").read_text()
    serial = format(_serial(directory), "x")
    device_key = serialization.load_pem_private_key((directory / "device.key").read_bytes(),
                                                    None)
    assert isinstance(device_key, ec.EllipticCurvePrivateKey)
    mine = ec.generate_private_key(ec.SECP256R1())
    csr = _csr(mine, "vic-7")
    device_csr = _csr(ec.generate_private_key(ec.SECP256R1()), "vic-7")
    for proof in (renewal_proof(mine, "vic-7", serial, csr),               # signed by my key
                  renewal_proof(device_key, "vic-7", serial, device_csr),  # from another CSR
                  renewal_proof(device_key, "vic-8", serial, csr),         # for another id
                  "AAAA"):
        answer = httpx.post(f"{fleet.url}/api/v1/enroll/renew", json={
            "device_id": "vic-7", "certificate": cert_pem, "csr": csr, "proof": proof},
            timeout=10)
        assert answer.status_code == 403, answer.text
        assert "proof" in answer.json()["error"]["message"]
    # Renewal rotates the key: even the key's holder cannot keep it.
    same = _csr(device_key, "vic-7")
    answer = httpx.post(f"{fleet.url}/api/v1/enroll/renew", json={
        "device_id": "vic-7", "certificate": cert_pem, "csr": same,
        "proof": renewal_proof(device_key, "vic-7", serial, same)}, timeout=10)
    assert answer.status_code == 403 and "new key" in answer.json()["error"]["message"]
    assert _identity(fleet, "vic-7")["certificates"][0]["revoked_at"] is None
    assert try_connect(fleet.tls_port, fleet.device_tls("vic-7")) is None


def test_a_replayed_renewal_gets_the_same_successor(fleet: EnrolledFleet) -> None:
    """A captured renewal sent again yields the certificate already issued (public, for
    the device's new key): no second certificate, no second lineage."""
    directory = fleet.enroll("vic-8")
    key = serialization.load_pem_private_key((directory / "device.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    serial = format(_serial(directory), "x")
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), "vic-8")
    body = {"device_id": "vic-8", "certificate": (directory / "device.crt").read_text(),
            "csr": csr, "proof": renewal_proof(key, "vic-8", serial, csr)}
    first = httpx.post(f"{fleet.url}/api/v1/enroll/renew", json=body, timeout=10)
    again = httpx.post(f"{fleet.url}/api/v1/enroll/renew", json=body, timeout=10)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["certificate_pem"] == again.json()["certificate_pem"]
    assert len(_identity(fleet, "vic-8")["certificates"]) == 2


@pytest.mark.parametrize("path", ["/api/v1/enroll", "/api/v1/enroll/renew"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_public_enrollment_routes_cap_the_body(fleet: EnrolledFleet, path: str,
                                               chunked: bool) -> None:
    """No token is needed to reach these routes: a body is refused while it is read, not
    read whole (into the server's memory) and validated afterwards."""
    filler = b'{"token": "' + b"A" * (4 * 1024 * 1024) + b'"}'

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(filler), 65536):
            yield filler[i:i + 65536]

    answer = httpx.post(f"{fleet.url}{path}", content=chunks() if chunked else filler,
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413, answer.text[:200]
    assert answer.json()["error"]["code"] == "too-large"
    assert fleet.server.health()  # still answering


def test_a_csr_asks_for_nothing_but_its_key(fleet: EnrolledFleet) -> None:
    """Whatever else a CSR asks for (a CA, serverAuth, another device's name in a SAN,
    more subject fields) is not in the certificate: CN = the enrolled id, clientAuth."""
    key = ec.generate_private_key(ec.SECP256R1())
    greedy = (x509.CertificateSigningRequestBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr-1"),
                                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ops")]))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("vic-1"),
                                                          x509.DNSName("127.0.0.1")]),
                             critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    answer = httpx.post(f"{fleet.url}/api/v1/enroll", json={
        "token": fleet.create_token("--device", "csr-1"), "device_id": "csr-1", "csr": greedy},
        timeout=10)
    assert answer.status_code == 200, answer.text
    cert = x509.load_pem_x509_certificate(answer.json()["certificate_pem"].encode())
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr-1")])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_the_broker_certificate_is_no_client_identity(fleet: EnrolledFleet) -> None:
    """The broker's certificate comes from the device CA too, but is serverAuth only: the
    broker does not take it as a device (its CN would become a username)."""
    broker = {"ca": str(fleet.broker_dir / "ca.crt"), "cert": str(fleet.broker_dir /
                                                                  "broker.crt"),
              "key": str(fleet.broker_dir / "broker.key")}
    assert try_connect(fleet.tls_port, broker) is not None


def test_which_tokens_may_enroll_an_existing_id() -> None:
    """The decision itself (pure): an unbound token only ever makes a new identity, and a
    bound one takes an enrolled id over only when it was made with --replace (review,
    December 2026: a bound token made before its device enrolled replaced it later)."""
    from fleet_server.identity.tables import DeviceIdentity, EnrollmentToken
    from fleet_server.identity.tokens import identity_refusal

    unbound = EnrollmentToken(token_id="00000001", device_id=None)
    bound = EnrollmentToken(token_id="00000002", device_id="d-1", replace=False)
    replacing = EnrollmentToken(token_id="00000003", device_id="d-1", replace=True)
    enrolled = DeviceIdentity(device_id="d-1", status="enrolled", enrolled_at=0.0)
    revoked = DeviceIdentity(device_id="d-1", status="revoked", enrolled_at=0.0)
    cases = {
        (None, False, unbound): None,
        (None, True, unbound): "device-known",
        (enrolled, False, unbound): "device-enrolled",
        (revoked, False, unbound): "device-revoked",
        (enrolled, True, replacing): None,
        (enrolled, True, bound): "device-enrolled",
        (revoked, False, bound): None,
        (None, True, bound): None,
    }
    for (identity, in_inventory, token), expected in cases.items():
        refusal = identity_refusal("d-1", identity, in_inventory, token)
        assert (refusal.code if refusal else None) == expected, (identity, in_inventory, token)


def test_an_interrupted_renewal_is_finished_by_the_next_run(fleet: EnrolledFleet,
                                                            tmp_path: Path) -> None:
    """Power lost after the answer was stored beside the old pair but before the renames:
    the next run puts the new key and certificate in place together."""
    directory = fleet.enroll("crash-1")
    old = {n: (directory / n).read_bytes() for n in ("device.key", "device.crt")}
    renewed = fleet.agent_enroll("--renew", "--force", "--dir", str(directory))
    assert renewed.returncode == 0, renewed.stderr
    new = {n: (directory / n).read_bytes() for n in ("device.key", "device.crt")}
    for name in ("device.key", "device.crt"):  # the moment before the renames
        (directory / f"{name}.next").write_bytes(new[name])
        (directory / name).write_bytes(old[name])
    again = fleet.agent_enroll("--renew", "--dir", str(directory))  # not due: just finishes
    assert again.returncode == 0 and "not due" in again.stdout, again.stderr
    assert {n: (directory / n).read_bytes() for n in new} == new
    assert not (directory / "device.key.next").exists()
    assert not (directory / "device.crt.next").exists()
    assert try_connect(fleet.tls_port, fleet.device_tls("crash-1")) is None
