"""Alembic's entry point, run by :func:`fleet_server.migrations.upgrade` (never by an
``alembic.ini``): the caller passes the open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from fleet_server.schema import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead,
# so one migration file works on SQLite and PostgreSQL alike.
context.configure(connection=connection, target_metadata=metadata(), render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
