"""Add ``alert_mutes`` and ``alert_mute_revision``: operators' mutes of alerts' message
shapes (whole, or with ``prefix`` the start of a cut line's), and the one counter that is
every device's mute-list revision (fleet_server/mutes.py).

Revision 0003, after 0002. New tables only: nothing existing changes. The counter's one
row is inserted here (revision 0: nothing muted yet), so every change is an UPDATE of
that row and two replicas never race to create it. A downgrade loses the mutes; the lists
already retained on the broker stay until their mutes expire on the devices.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_mutes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column("shape", sa.String(length=512), nullable=False),
        sa.Column("prefix", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("alert_msg_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_mutes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_mutes_device_id"), ["device_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_alert_mutes_expires_at"), ["expires_at"],
                              unique=False)
    counter = op.create_table(
        "alert_mute_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(counter, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    op.drop_table("alert_mute_revision")
    with op.batch_alter_table("alert_mutes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_mutes_expires_at"))
        batch_op.drop_index(batch_op.f("ix_alert_mutes_device_id"))
    op.drop_table("alert_mutes")
