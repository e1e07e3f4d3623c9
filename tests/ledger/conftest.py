"""Fixtures for the ledger tests: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.ledger import Ledger
from bridge.ledger.schema import metadata
from tests.support.databases import postgres_url, sqlite_database_url  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_database_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A ledger with empty tables; on PostgreSQL the session's database is emptied after."""
    ledger = Ledger.open(ledger_url)
    try:
        yield ledger
    finally:
        metadata.drop_all(ledger.engine)
        ledger.close()
