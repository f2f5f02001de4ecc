"""Add ``devices.last_status_connection``: the agent's broker connection number of the
stored status (or Last Will).

Revision 0006, after 0005. Why: an agent that reconnected before the broker noticed its old
connection was gone made the broker send the old connection's Will and, a moment later, the
new connection's online status. With two replicas the Will could be stamped later and win,
so the device showed offline until its next status (docs/scaling.md). Agents since December
2026 number their connections and put the number in the Will too, so a Will is ordered
after its own connection's statuses and before the next one's, whatever replica gets which
(fleet_server/inventory.py ``status_is_newer``). Rows from before this revision have none:
their next status is ordered as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_status_connection", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("last_status_connection")
