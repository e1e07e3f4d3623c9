"""Databases for tests: a SQLite file per test, and a fresh PostgreSQL database per session.

The PostgreSQL server is found through TASKSYNC_TEST_POSTGRES (libpq connection string of a
user allowed to create databases; default `host=127.0.0.1 user=postgres dbname=test`). Each
database is named `tasksync_<area>_<random>` and dropped afterwards, so concurrent runs never
share tables.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
import pytest
from psycopg import sql

POSTGRES_ADMIN: Final = os.environ.get(
    "TASKSYNC_TEST_POSTGRES", "host=127.0.0.1 user=postgres dbname=test"
)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _admin_params() -> dict[str, str]:
    return dict(part.split("=", 1) for part in POSTGRES_ADMIN.split())


@contextlib.contextmanager
def fresh_postgres_database(area: str) -> Iterator[str]:
    """Create `tasksync_<area>_<random>`, yield its SQLAlchemy URL, drop it afterwards."""
    name = f"tasksync_{area}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = _admin_params()
    url = (
        f"postgresql+psycopg://{params.get('user', 'postgres')}@"
        f"{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{name}"
    )
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (URL for SQLAlchemy)."""
    with fresh_postgres_database("test") as url:
        yield url


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    """A SQLite file of this test's own (URL for SQLAlchemy)."""
    return sqlite_url(tmp_path / "test.sqlite3")
