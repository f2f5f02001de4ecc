"""Add ``enrollment_tokens.replace``: whether the operator said ``--replace`` when making the
token (fleet_server/identity/tokens.py).

Revision 0004, after 0003. Why: ``--replace`` was only checked when a token was made, so a
token bound to an id that was not enrolled then could later re-enroll it, after the real
device had enrolled, and revoke its certificates without anyone saying ``--replace``
(review, December 2026). Now using a bound token on an enrolled id needs the token to carry
it. Tokens made before this revision carry false: an unused one made with ``--replace`` for
an enrolled device must be made again (tokens live hours, ``token_max_hours``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replace", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.drop_column("replace")
