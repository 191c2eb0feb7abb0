"""Alembic's environment, run by :mod:`shared.migrations` on the connection it opened.

The target is the live schema (``shared.tables.metadata``): ``alembic check`` and autogenerate
compare the migrations with it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from shared.tables import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "migrations run through shared.migrations with an open connection "
            "(python -m persister migrate, or make migrate)"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it: later revisions use op.batch_alter_table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported: run them on a connection")
run_migrations_online()
