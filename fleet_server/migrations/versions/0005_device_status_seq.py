"""Add ``devices.last_status_seq``: the ``seq`` of the stored status, and
``devices.online_since``: when the device last came online.

Revision 0005, after 0004. Why: two replicas ordered one device's statuses by the time each
stamped on arrival, and a replica busy for longer than the gap between two statuses stamped
the older one later, so the older one won (seen in CI). Within one agent run the agent's own
``seq`` now orders its statuses (fleet_server/inventory.py ``status_is_newer``). Rows from
before this revision have none: their next status is ordered by arrival, as before.

``online_since``: a rollout times a device that has not answered its notification from when
it came online; that was the arrival of its latest status, so a device re-sending its
status held its rollout stage open (review, December 2026). Rows from before this revision
have none: the latest status's arrival is used until the device next comes online.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_status_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("online_since", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("online_since")
        batch_op.drop_column("last_status_seq")
