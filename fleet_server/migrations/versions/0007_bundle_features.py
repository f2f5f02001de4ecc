"""Add ``devices.reads`` and ``model_versions.needs``: which bundle manifest features a
device's agent reads, and which a published bundle needs.

Revision 0007, after 0006. Why: a manifest is a strict schema, so an agent refuses a bundle
with a part it does not know (December 2026: the level offsets a model brings) — after
downloading it, and its rollout counted a failure per device. Agents since then list what
they read in their status; the server reads each published bundle's manifest and a
rollout skips a device whose agent cannot read its bundle (fleet_server/rollouts/policy.py).
Rows from before this revision have none: a device's next status fills ``reads``, the next
sync of the repository fills ``needs``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reads", sa.JSON(), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("needs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("needs")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("reads")
