"""Every table of the fleet server, named in one place.

The schema is this list, not whichever modules happen to have been imported when
the tables were created: :data:`TABLES` imports each mapped class by name, and the
migrations (:mod:`fleet_server.migrations`) compare the database against it.
``tests/test_migrations.py`` fails when a mapped class is missing here, or when the
models and the newest migration disagree.

A new table: define its class (on :class:`fleet_server.db.Base`) in the module it
belongs to, add it to :data:`TABLES`, and write the migration that creates it
(docs/fleet-server.md, "Schema migrations").
"""

from __future__ import annotations

from sqlalchemy import MetaData, Table

from fleet_server.auth import ApiTokenRow
from fleet_server.console.sessions import ConsoleSessionRow
from fleet_server.db import (
    AuditEntry,
    Base,
    DeltaArtifact,
    DesiredStateRow,
    Device,
    ModelVersion,
    OtaEventRow,
)
from fleet_server.identity.tables import (
    CertificateRenewal,
    DeviceIdentity,
    DeviceQuarantine,
    EnrollmentToken,
    IssuedCertificate,
)
from fleet_server.metrics_store import DeviceAlertRow, MetricSampleRow
from fleet_server.mutes import AlertMuteRevision, AlertMuteRow
from fleet_server.replicas import ReplicaRow
from fleet_server.rollouts.store import RolloutDeviceRow, RolloutRow, ServerLease
from fleet_server.verdicts import AlertVerdictRow

TABLES: tuple[type[Base], ...] = (
    # releases and devices (db.py)
    ModelVersion, DeltaArtifact, Device, DesiredStateRow, OtaEventRow, AuditEntry,
    # operators' API tokens (auth.py)
    ApiTokenRow,
    # enrollment and device identity (identity/)
    EnrollmentToken, DeviceIdentity, IssuedCertificate, CertificateRenewal,
    # quarantines of flooding (or operator-chosen) devices at the broker (identity/)
    DeviceQuarantine,
    # staged rollouts and the driver's lease (rollouts/)
    RolloutRow, RolloutDeviceRow, ServerLease,
    # replicas sharing one database (replicas.py)
    ReplicaRow,
    # the operators' console: metrics and alert history, sign-in sessions
    MetricSampleRow, DeviceAlertRow, ConsoleSessionRow,
    # operators' verdicts on alerts: labelled lines from the field (verdicts.py)
    AlertVerdictRow,
    # operators' mutes of alerts' message shapes, and their one revision counter (mutes.py)
    AlertMuteRow, AlertMuteRevision,
)


def tables() -> list[Table]:
    """The :class:`~sqlalchemy.Table` of every class in :data:`TABLES`."""
    return [Base.metadata.tables[cls.__tablename__] for cls in TABLES]


def metadata() -> MetaData:
    """The metadata the migrations are written against (the one ``Base`` of db.py)."""
    return Base.metadata
