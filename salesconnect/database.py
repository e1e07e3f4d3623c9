"""Connections to the service's database: SQLite (a file) or PostgreSQL (psycopg 3).

Writes go through `Database.write()`, one transaction each; `change_listeners` run only after
a commit that appended to the change feed (a wake-up must never announce a rolled-back change).
On SQLite a write transaction starts with `BEGIN IMMEDIATE`, so writers from several
processes queue on the database lock up front (waiting up to the busy timeout) instead of one
failing with "database is locked" when it upgrades a read lock halfway through; within one
process they queue on a plain lock first. Reads use a deferred `BEGIN` and, thanks to WAL,
never wait for a writer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


class DatabaseUrlError(ValueError):
    """A database URL this service cannot use, with what to write instead."""


@dataclass
class WriteTransaction:
    """An open write transaction and what to do once it has committed."""

    connection: Connection
    after_commit_callbacks: list[Callable[[], None]] = field(default_factory=list)
    changes_appended: int = 0

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.after_commit_callbacks.append(callback)


def normalise_url(url: str) -> sa.URL:
    """Check the URL and pick psycopg 3 for PostgreSQL, whichever spelling was used."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseUrlError(f"not a database URL: {url!r} ({exc})") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise DatabaseUrlError(
                "SQLite needs a file (sqlite:///path/to/file.sqlite3); an in-memory database "
                "would be private to one connection"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise DatabaseUrlError(
        f"unsupported database {backend!r}: use sqlite:///FILE or postgresql://USER@HOST/DB"
    )


def _sqlite_engine(url: sa.URL, begin: str) -> Engine:
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_size=8, max_overflow=32
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun explicitly below; pysqlite's own implicit BEGIN would be deferred.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """The service's engines: one for writes and one for reads (the same one on PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            assert self.url.database is not None
            Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = _sqlite_engine(self.url, "BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(self.url, "BEGIN")
        else:
            self.write_engine = sa.create_engine(
                self.url, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
        self.change_listeners: list[Callable[[], None]] = []
        # SQLite takes one writer at a time anyway; queueing this process's writers on a lock
        # spares them SQLite's busy handler, which sleeps in steps of up to 100 ms.
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if self.dialect == "sqlite" else nullcontext()
        )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        """The URL without its password, for logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[WriteTransaction]:
        with self._write_lock, self.write_engine.begin() as connection:
            transaction = WriteTransaction(connection)
            yield transaction
        for callback in transaction.after_commit_callbacks:
            callback()
        if transaction.changes_appended:
            for listener in self.change_listeners:
                listener()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.read_engine.begin() as connection:
            yield connection

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
