"""Alembic environment for the frontdesk store (``frontdesk.store.store``).

At run time nothing reads an ``alembic.ini``: :class:`frontdesk.store.store.Store` builds an Alembic
``Config`` in code, opens a write transaction that holds the migration lock (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock) and hands that connection over in
``config.attributes["connection"]``. The migrations then run inside that one transaction, so two
processes opening the same database at once cannot both apply them, and a failed upgrade leaves
the schema as it was (both backends have transactional DDL).

Without a connection (the ``alembic`` command line, e.g. to write the next revision) the URL comes
from ``sqlalchemy.url`` in the config, or ``-x url=...``::

    alembic -c /path/to/alembic.ini revision -m "add x" --rev-id 0002

with an ``alembic.ini`` whose ``script_location = frontdesk:migrations``. Migrations are written
by hand against ``op`` (no autogenerate: there is no ORM metadata to diff against), one file per
revision, numbered ``0001``, ``0002``...
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=sqlite:///frontdesk.db or set sqlalchemy.url in the config")
    return url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: print the DDL instead of running it."""
    context.configure(url=_url(), target_metadata=None, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the connection the Store handed over, or one made from the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
