"""The two files the broker reads from the CA directory, and telling the broker about them.

``crl.pem`` refuses revoked certificates at the TLS handshake, ``acl`` denies revoked
and quarantined device ids every topic on sessions that are already open. Both are built
from the database (the same on every replica sharing it) and rewritten after every
change; ``enrollment.broker_reload_command`` (e.g. ``systemctl reload mosquitto``) then
makes the broker re-read them, so a revocation, a re-enrollment, a renewal or a
quarantine takes effect at once rather than at the next manual reload.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import threading
import time
from pathlib import Path

from sqlalchemy import select

from fleet_server.broker_config import ACL_FILE, render_acl
from fleet_server.db import Database
from fleet_server.identity.device_ca import DeviceCA, RevokedSerial, write_public
from fleet_server.identity.settings import EnrollmentSettings
from fleet_server.identity.tables import (
    DeviceIdentity,
    IssuedCertificate,
    quarantined_device_ids,
)

log = logging.getLogger("nanofleet.server.identity")


class BrokerPolicy:
    def __init__(self, ca: DeviceCA, db: Database, settings: EnrollmentSettings) -> None:
        self.ca, self.db, self.settings = ca, db, settings
        self._lock = threading.Lock()

    @property
    def acl_path(self) -> Path:
        return self.ca.dir / ACL_FILE

    def build(self) -> tuple[bytes, str]:
        """(CRL PEM, device ACL) from the database."""
        now = time.time()
        with self.db.session() as session:
            rows = list(session.scalars(select(IssuedCertificate).where(
                IssuedCertificate.revoked_at.is_not(None))))
            revoked_ids = list(session.scalars(select(DeviceIdentity.device_id).where(
                DeviceIdentity.status == "revoked")))
            quarantined = quarantined_device_ids(session, now)
        # An expired certificate fails on its dates alone: the CRL keeps only live ones.
        revoked = [RevokedSerial(int(r.serial, 16), dt.datetime.fromtimestamp(
            r.revoked_at or now, dt.UTC)) for r in rows if r.not_after > now - 86400]
        return self.ca.build_crl(revoked), render_acl(revoked_ids, quarantined)

    def publish(self, reload: bool = False) -> bool:
        """Rewrite crl.pem and acl; with ``reload``, run the reload command. True if the
        broker was told."""
        with self._lock:
            crl, acl = self.build()
            write_public(self.ca.crl_path, crl)
            write_public(self.acl_path, acl.encode())
            return self._reload() if reload else False

    def _reload(self) -> bool:
        command = self.settings.broker_reload_command
        if not command:
            log.warning("the CRL/ACL changed: reload the broker so it applies them (or set "
                        "enrollment.broker_reload_command)")
            return False
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=self.settings.broker_reload_timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("broker reload command %s failed: %s", command, exc)
            return False
        if done.returncode != 0:
            log.error("broker reload command %s exited %d: %s", command, done.returncode,
                      (done.stderr or done.stdout).strip()[-500:])
            return False
        log.info("broker reloaded (%s)", " ".join(command))
        return True
