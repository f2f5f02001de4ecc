"""Add ``device_quarantines``: devices denied every topic at the broker for a while.

Revision 0008, after 0007. Why: a device certificate that publishes reports faster than
the server reads them overflows the broker's bounded queue for the server's session, and
the broker drops other devices' reports there (Mosquitto 2.0 has no per-client publish
limit). The server now quarantines such a device (its id denied every topic in the device
ACL, the broker reloaded) for a while, and operators can quarantine and release devices
(fleet_server/identity/quarantine.py). New table only: nothing existing changes. A
downgrade forgets the quarantines; the ACL file keeps denying them until it is rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_quarantines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("released_at", sa.Float(), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_quarantines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_quarantines_device_id"), ["device_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_device_quarantines_until"), ["until"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_quarantines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_quarantines_until"))
        batch_op.drop_index(batch_op.f("ix_device_quarantines_device_id"))
    op.drop_table("device_quarantines")
