"""The org's durable state in one SQLite file: records, users, sessions, counters, outbox.

SQLite runs in WAL mode with `synchronous=NORMAL`, so a committed transaction survives the
process being killed (`kill -9`); only a power cut may lose the last few. Every request's
effect and its bookkeeping (API usage, call counts, notifications to send) commit in one
transaction, so a crash never leaves a record written without its notification or the other
way round. One connection serves every thread behind a lock: the emulator's work per request
is a few index lookups, far below the cost of the HTTP exchange around it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from salesforce_emulator.stamps import now_ms

SCHEMA_VERSION: Final = 1
_PASSWORD_ITERATIONS: Final = 20_000

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS "User" (
    Id TEXT PRIMARY KEY,
    Username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    LastName TEXT NOT NULL,
    FirstName TEXT,
    Name TEXT NOT NULL,
    Email TEXT NOT NULL,
    IsActive INTEGER NOT NULL,
    TimeZoneSidKey TEXT NOT NULL,
    CreatedDate INTEGER NOT NULL,
    CreatedById TEXT NOT NULL,
    LastModifiedDate INTEGER NOT NULL,
    LastModifiedById TEXT NOT NULL,
    SystemModstamp INTEGER NOT NULL,
    password_salt BLOB NOT NULL,
    password_hash BLOB NOT NULL,
    role TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS Task (
    Id TEXT PRIMARY KEY,
    WhoId TEXT,
    WhatId TEXT,
    Subject TEXT,
    ActivityDate TEXT,
    Status TEXT NOT NULL,
    Priority TEXT NOT NULL,
    OwnerId TEXT NOT NULL,
    Description TEXT,
    TaskSubtype TEXT,
    IsClosed INTEGER NOT NULL,
    IsDeleted INTEGER NOT NULL DEFAULT 0,
    IsRecurrence INTEGER NOT NULL DEFAULT 0,
    CreatedDate INTEGER NOT NULL,
    CreatedById TEXT NOT NULL,
    LastModifiedDate INTEGER NOT NULL,
    LastModifiedById TEXT NOT NULL,
    SystemModstamp INTEGER NOT NULL,
    Sales_Connect_Id__c TEXT,
    external_id_key TEXT,
    deleted_at INTEGER
);
CREATE INDEX IF NOT EXISTS task_modstamp ON Task (SystemModstamp);
CREATE INDEX IF NOT EXISTS task_external_id ON Task (external_id_key)
    WHERE external_id_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_recycle_bin ON Task (deleted_at) WHERE IsDeleted = 1;
CREATE TABLE IF NOT EXISTS TaskStatus (
    Id TEXT PRIMARY KEY,
    MasterLabel TEXT,
    ApiName TEXT NOT NULL,
    SortOrder INTEGER,
    IsDefault INTEGER NOT NULL,
    IsClosed INTEGER NOT NULL,
    CreatedDate INTEGER NOT NULL,
    CreatedById TEXT NOT NULL,
    LastModifiedDate INTEGER NOT NULL,
    LastModifiedById TEXT NOT NULL,
    SystemModstamp INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deleted_log (Id TEXT PRIMARY KEY, deleted_date INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS deleted_log_date ON deleted_log (deleted_date);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    issued_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_usage (minute INTEGER PRIMARY KEY, calls INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS call_counts (
    client TEXT NOT NULL,
    username TEXT NOT NULL,
    resource TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (client, username, resource, method, status)
);
CREATE TABLE IF NOT EXISTS record_writes (
    client TEXT NOT NULL,
    username TEXT NOT NULL,
    operation TEXT NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (client, username, operation)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    op TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    system_modstamp INTEGER NOT NULL,
    changed_fields TEXT NOT NULL,
    enqueued_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS validation_rules (position INTEGER PRIMARY KEY, rule TEXT NOT NULL);
"""

_LIKE_CACHE: dict[str, re.Pattern[str]] = {}
LIKE_ESCAPED_PERCENT: Final = "\ue000"
LIKE_ESCAPED_UNDERSCORE: Final = "\ue001"


def soql_collation(left: str, right: str) -> int:
    """SOQL compares text case-insensitively (Unicode, not only ASCII like SQLite's NOCASE)."""
    a, b = left.casefold(), right.casefold()
    return (a > b) - (a < b)


def soql_like(value: str | None, pattern: str) -> int | None:
    """SOQL LIKE: `%` and `_` wildcards, `\\%` and `\\_` literal, case-insensitive."""
    if value is None:
        return None
    compiled = _LIKE_CACHE.get(pattern)
    if compiled is None:
        parts = []
        for char in pattern:
            if char == "%":
                parts.append(".*")
            elif char == "_":
                parts.append(".")
            elif char == LIKE_ESCAPED_PERCENT:
                parts.append("%")
            elif char == LIKE_ESCAPED_UNDERSCORE:
                parts.append("_")
            else:
                parts.append(re.escape(char))
        compiled = re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
        if len(_LIKE_CACHE) > 256:
            _LIKE_CACHE.clear()
        _LIKE_CACHE[pattern] = compiled
    return 1 if compiled.fullmatch(value) else 0


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PASSWORD_ITERATIONS)


def new_password_hash(password: str) -> tuple[bytes, bytes]:
    salt = secrets.token_bytes(16)
    return salt, hash_password(password, salt)


def password_matches(password: str, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_password(password, salt), expected)


class OrgStore:
    """The SQLite database of one emulated org, safe to use from many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._depth = 0
        self._savepoints = 0
        self._last_stamp = 0
        self.connection = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self.connection.row_factory = sqlite3.Row
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute("PRAGMA busy_timeout=30000")
        self.connection.create_collation("SOQL", soql_collation)
        self.connection.create_function("soql_like", 2, soql_like, deterministic=True)
        self._create_schema()
        self._last_stamp = int(self.meta("last_stamp") or 0)

    def _create_schema(self) -> None:
        with self.lock:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.connection.execute(statement)
            if self.meta("schema_version") is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))

    def close(self) -> None:
        with self.lock:
            self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit; nested use becomes a savepoint that rolls back on its own."""
        with self.lock:
            if self._depth == 0:
                self.connection.execute("BEGIN IMMEDIATE")
                self._depth += 1
                try:
                    yield self.connection
                except BaseException:
                    self.connection.execute("ROLLBACK")
                    raise
                else:
                    self.connection.execute("COMMIT")
                finally:
                    self._depth -= 1
                return
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            self.connection.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self.connection
            except BaseException:
                self.connection.execute(f"ROLLBACK TO {name}")
                self.connection.execute(f"RELEASE {name}")
                raise
            else:
                self.connection.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1

    def meta(self, key: str) -> str | None:
        with self.lock:
            row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.connection.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def next_serial(self, prefix: str, start: int) -> int:
        """The next record number for ids with `prefix`; call inside a transaction."""
        key = f"serial:{prefix}"
        current = self.meta(key)
        serial = start if current is None else int(current) + 1
        self.set_meta(key, str(serial))
        return serial

    def next_stamp(self) -> int:
        """A SystemModstamp in milliseconds, strictly later than every one before it.

        Kept in `meta` in the same transaction, so the order holds across restarts even when
        the wall clock steps back.
        """
        stamp = max(now_ms(), self._last_stamp + 1)
        self._last_stamp = stamp
        self.set_meta("last_stamp", str(stamp))
        return stamp

    def rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(row) for row in self.connection.execute(sql, params).fetchall()]

    def row(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> dict[str, Any] | None:
        with self.lock:
            found = self.connection.execute(sql, params).fetchone()
        return None if found is None else dict(found)

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        with self.lock:
            return self.connection.execute(sql, params).rowcount

    def insert(self, table: str, values: dict[str, Any]) -> None:
        columns = ", ".join(f'"{name}"' for name in values)
        marks = ", ".join("?" for _ in values)
        self.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', list(values.values()))

    def update(self, table: str, record_id: str, values: dict[str, Any]) -> None:
        if not values:
            return
        assignments = ", ".join(f'"{name}" = ?' for name in values)
        self.execute(
            f'UPDATE "{table}" SET {assignments} WHERE Id = ?', [*values.values(), record_id]
        )
