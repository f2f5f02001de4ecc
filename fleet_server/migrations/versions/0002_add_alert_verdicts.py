"""Add ``alert_verdicts``: operators' verdicts on devices' alerts (fleet_server/verdicts.py).

Revision 0002, after 0001. A new table only: nothing existing changes, so an upgrade
needs no data step and a downgrade loses only the verdicts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_verdicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_msg_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("alert_label", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alert_msg_id"),
    )
    with op.batch_alter_table("alert_verdicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_verdicts_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_verdicts_device_id"), ["device_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_verdicts_device_id"))
        batch_op.drop_index(batch_op.f("ix_alert_verdicts_at"))
    op.drop_table("alert_verdicts")
