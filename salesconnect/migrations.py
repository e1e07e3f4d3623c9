"""Creating and upgrading the schema on start: numbered steps recorded in `schema_migrations`.

Each step runs once, in its own transaction, under a lock that keeps two processes starting
against the same database from applying it twice (PostgreSQL: a transaction-level advisory
lock; SQLite: the `BEGIN IMMEDIATE` write lock). Steps are append-only: a released step is
never edited; a later change is a new step that alters what the earlier ones made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesconnect import tables
from salesconnect.database import Database
from salesconnect.stamps import now_ms

# An arbitrary constant naming "the Sales Connect schema" among advisory locks.
_MIGRATION_LOCK_KEY: Final = 0x5A1E5C0
_SEQUENCE_ROW_ID: Final = 1


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer build; this one must not write to it."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial_schema(connection: Connection) -> None:
    version_one = [
        tables.users,
        tables.user_settings,
        tables.tasks,
        tables.change_sequence,
        tables.change_outbox,
        tables.idempotency_keys,
    ]
    tables.metadata.create_all(connection, tables=version_one)
    connection.execute(sa.insert(tables.change_sequence).values(id=_SEQUENCE_ROW_ID, last_seq=0))


def _credentials(connection: Connection) -> None:
    tables.metadata.create_all(
        connection, tables=[tables.api_tokens, tables.user_passwords, tables.sessions]
    )


MIGRATIONS: Final = (
    Migration(1, "users, settings, tasks, change outbox", _initial_schema),
    Migration(2, "API tokens, passwords, page sessions", _credentials),
)
LATEST_VERSION: Final = MIGRATIONS[-1].version


def applied_version(connection: Connection) -> int:
    if not sa.inspect(connection).has_table(tables.schema_migrations.name):
        return 0
    latest = connection.execute(sa.select(sa.func.max(tables.schema_migrations.c.version)))
    return int(latest.scalar_one() or 0)


def migrate(database: Database) -> int:
    """Apply every pending step; return the schema version now in place."""
    with database.write() as transaction:
        connection = transaction.connection
        if not database.is_sqlite:
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        tables.schema_migrations.create(connection, checkfirst=True)
    for migration in MIGRATIONS:
        with database.write() as transaction:
            connection = transaction.connection
            if not database.is_sqlite:
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            if applied_version(connection) >= migration.version:
                continue
            migration.apply(connection)
            connection.execute(
                sa.insert(tables.schema_migrations).values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=now_ms(),
                )
            )
    with database.read() as connection:
        version = applied_version(connection)
    if version > LATEST_VERSION:
        raise SchemaTooNewError(
            f"the database's schema is at version {version}, newer than this build knows "
            f"({LATEST_VERSION}): run the newer build, or point --db at another database"
        )
    return version
