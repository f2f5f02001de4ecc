"""Baseline: the schema as ``create_all`` made it before migrations existed.

Revision 0001, the first. The tables are a frozen copy written out here (never
imported from the models, which move on): a migration must build the same schema
whatever the models say later.

A database made by nanofleet before migrations has these tables already (some
perhaps missing, if it was made before they were added): each is created only if it
is absent, so that database is adopted as it is; the next revisions then apply to it
like to any other. Later revisions are ordinary ``op.*`` steps, not like this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_baseline = sa.MetaData()

sa.Table(
    "api_tokens", _baseline,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True, unique=True),
    sa.Column("scopes", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("revoked_at", sa.Float(), nullable=True),
    sa.Column("revoked_by", sa.String(64), nullable=True),
)

sa.Table(
    "audit_log", _baseline,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float(), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("detail", sa.JSON(), nullable=False),
)

sa.Table(
    "certificate_renewals", _baseline,
    sa.Column("previous_serial", sa.String(48), primary_key=True),
    sa.Column("serial", sa.String(48), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False, index=True),
    sa.Column("key_sha256", sa.String(64), nullable=False),
    sa.Column("certificate_pem", sa.Text(), nullable=False),
    sa.Column("renewed_at", sa.Float(), nullable=False),
)

sa.Table(
    "console_sessions", _baseline,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("last_used", sa.Float(), nullable=False, index=True),
)

sa.Table(
    "delta_artifacts", _baseline,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("base_version", sa.Integer(), nullable=False),
    sa.Column("target_path", sa.String(255), nullable=False, unique=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("length", sa.Integer(), nullable=False),
    sa.Column("delta_format", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("listed", sa.Boolean(), nullable=False),
)

sa.Table(
    "desired_states", _baseline,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("revision", sa.Integer(), nullable=False),
    sa.Column("document", sa.JSON(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Column("published_revision", sa.Integer(), nullable=False),
    sa.Column("rollout_id", sa.String(64), nullable=True, index=True),
)

sa.Table(
    "device_alerts", _baseline,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False, unique=True),
    sa.Column("device_id", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.Float(), nullable=False, index=True),
    sa.Column("device_ts", sa.Float(), nullable=False),
    sa.Column("slot", sa.String(32), nullable=False),
    sa.Column("model_version", sa.Integer(), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("reason", sa.String(255), nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("repeats", sa.Integer(), nullable=False),
)

sa.Table(
    "device_identities", _baseline,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("enrolled_at", sa.Float(), nullable=False),
    sa.Column("enrolled_with", sa.String(16), nullable=True),
    sa.Column("renewed_at", sa.Float(), nullable=True),
    sa.Column("revoked_at", sa.Float(), nullable=True),
    sa.Column("revoked_by", sa.String(64), nullable=True),
    sa.Column("revoke_reason", sa.Text(), nullable=True),
)

sa.Table(
    "device_metric_samples", _baseline,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("resolution", sa.Integer(), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False, index=True),
    sa.Column("uptime_s", sa.Float(), nullable=False),
    sa.Column("lines_in", sa.Integer(), nullable=False),
    sa.Column("dropped", sa.Integer(), nullable=False),
    sa.Column("errors", sa.Integer(), nullable=False),
    sa.Column("p99_ms", sa.Float(), nullable=True),
    sa.Column("rss_mb", sa.Float(), nullable=True),
    sa.Column("spool_depth", sa.Float(), nullable=True),
    sa.Index("ix_metric_device_res_ts", "device_id", "resolution", "ts"),
)

sa.Table(
    "devices", _baseline,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("first_seen", sa.Float(), nullable=False),
    sa.Column("last_seen", sa.Float(), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("agent_version", sa.String(64), nullable=False),
    sa.Column("started_at", sa.Float(), nullable=True),
    sa.Column("health", sa.String(16), nullable=False),
    sa.Column("models", sa.JSON(), nullable=False),
    sa.Column("last_status_at", sa.Float(), nullable=True),
    sa.Column("metrics", sa.JSON(), nullable=False),
    sa.Column("last_metrics_ts", sa.Float(), nullable=True),
    sa.Column("last_ota_slot", sa.String(32), nullable=True),
    sa.Column("last_ota_state", sa.String(32), nullable=True),
    sa.Column("last_ota_to_version", sa.Integer(), nullable=True),
    sa.Column("last_ota_reason", sa.String(64), nullable=True),
    sa.Column("last_ota_detail", sa.Text(), nullable=True),
    sa.Column("last_ota_ts", sa.Float(), nullable=True),
    sa.Column("last_ota_rollout_id", sa.String(64), nullable=True),
    sa.Column("group_name", sa.String(64), nullable=True, index=True),
    sa.Column("tags", sa.JSON(), nullable=False),
)

sa.Table(
    "enrollment_tokens", _baseline,
    sa.Column("token_id", sa.String(16), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("group_name", sa.String(64), nullable=True),
    sa.Column("tags", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("used_at", sa.Float(), nullable=True),
    sa.Column("used_by", sa.String(64), nullable=True),
    sa.Column("cancelled_at", sa.Float(), nullable=True),
)

sa.Table(
    "issued_certificates", _baseline,
    sa.Column("serial", sa.String(48), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=True, index=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("key_type", sa.String(32), nullable=False),
    sa.Column("not_before", sa.Float(), nullable=False),
    sa.Column("not_after", sa.Float(), nullable=False),
    sa.Column("issued_at", sa.Float(), nullable=False),
    sa.Column("revoked_at", sa.Float(), nullable=True, index=True),
    sa.Column("revoke_reason", sa.Text(), nullable=True),
)

sa.Table(
    "model_versions", _baseline,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("slot", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("length", sa.Integer(), nullable=False),
    sa.Column("target_path", sa.String(255), nullable=False, unique=True),
    sa.Column("targets_version", sa.Integer(), nullable=False),
    sa.Column("published_at", sa.Float(), nullable=False),
    sa.Column("published_by", sa.String(64), nullable=True),
    sa.Column("listed", sa.Boolean(), nullable=False),
    sa.UniqueConstraint("model", "version", name="uq_model_version"),
)

sa.Table(
    "ota_events", _baseline,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False, unique=True),
    sa.Column("device_id", sa.String(64), nullable=False, index=True),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("received_at", sa.Float(), nullable=False),
    sa.Column("slot", sa.String(32), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("from_version", sa.Integer(), nullable=True),
    sa.Column("to_version", sa.Integer(), nullable=True),
    sa.Column("rollout_id", sa.String(64), nullable=True, index=True),
    sa.Column("artifact", sa.String(16), nullable=True),
    sa.Column("bytes_downloaded", sa.Integer(), nullable=True),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("is_historical", sa.Boolean(), nullable=False),
)

sa.Table(
    "rollout_devices", _baseline,
    sa.Column("rollout_id", sa.String(64), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True, index=True),
    sa.Column("stage", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("notified_at", sa.Float(), nullable=True),
    sa.Column("changed_at", sa.Float(), nullable=True),
    sa.Column("retry_at", sa.Float(), nullable=True),
    sa.Column("last_event_ts", sa.Float(), nullable=True),
    sa.Column("last_event_seq", sa.Integer(), nullable=True),
    sa.Column("from_version", sa.Integer(), nullable=True),
    sa.Column("rollback_sent", sa.Boolean(), nullable=False),
)

sa.Table(
    "rollouts", _baseline,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("slot", sa.String(32), nullable=False),
    sa.Column("selector", sa.JSON(), nullable=False),
    sa.Column("strategy", sa.JSON(), nullable=False),
    sa.Column("stage_names", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("stage", sa.Integer(), nullable=False),
    sa.Column("stage_started_at", sa.Float(), nullable=True),
    sa.Column("stage_settled_at", sa.Float(), nullable=True),
    sa.Column("halt_reason", sa.String(32), nullable=True),
    sa.Column("halt_detail", sa.Text(), nullable=True),
    sa.Column("failure_baseline", sa.Integer(), nullable=False),
    sa.Column("outcome_baseline", sa.Integer(), nullable=False),
    sa.Column("accepted_stage", sa.Integer(), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Column("finished_at", sa.Float(), nullable=True),
    sa.Column("log", sa.JSON(), nullable=False),
    sa.Column("row_version", sa.Integer(), nullable=False),
)

sa.Table(
    "server_leases", _baseline,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("until", sa.Float(), nullable=False),
)

sa.Table(
    "server_replicas", _baseline,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("instance", sa.String(32), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("api", sa.String(255), nullable=False),
    sa.Column("started_at", sa.Float(), nullable=False),
    sa.Column("heartbeat_at", sa.Float(), nullable=False),
    sa.Column("counters", sa.JSON(), nullable=False),
    sa.Column("sharing", sa.String(64), nullable=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    for table in _baseline.sorted_tables:
        table.create(bind, checkfirst=True)  # with its indexes; an existing table is kept
    _check_adopted_columns(bind)


def _check_adopted_columns(bind: sa.Connection) -> None:
    """An adopted table must have the baseline's columns (create_all never added
    columns, so a database older than a column would fail later, less clearly)."""
    inspector = sa.inspect(bind)
    missing = []
    for table in _baseline.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present]
    if missing:
        raise RuntimeError("this database was made by a nanofleet older than the schema "
                           f"baseline (no column {', '.join(missing)}) and cannot be adopted "
                           "as it is: see docs/fleet-server.md, Schema migrations")


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_baseline.sorted_tables):
        table.drop(bind, checkfirst=True)
