"""The producers' batched ledger reads and writes, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.ledger import Ledger, TaskLink
from bridge.producers.known_values import DELETED_FIELD, IN_LIST_CHUNK, KnownValues, Observed
from schemas.task_change import Origin
from tests.support.databases import postgres_url, sqlite_database_url

__all__ = ["postgres_url", "sqlite_database_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    fixture = "sqlite_database_url" if request.param == "sqlite" else "postgres_url"
    with Ledger.open(str(request.getfixturevalue(fixture))) as opened:
        yield opened


def test_records_a_page_in_one_go_as_the_ledger_itself_would(ledger: Ledger) -> None:
    known = KnownValues(ledger)
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [f"00T5E0000000{n:03d}AAA" for n in range(IN_LIST_CHUNK + 20)]
    known.record(
        [
            Observed(Origin.SALESFORCE, task_id, {"Subject": f"Task {n}", "ActivityDate": None})
            for n, task_id in enumerate(ids)
        ]
        + [Observed(Origin.SALESFORCE, ids[0], {DELETED_FIELD: False}, now)]
    )
    assert ledger.unchanged_fields(
        Origin.SALESFORCE, ids[0], {"Subject": "Task 0", "ActivityDate": None, DELETED_FIELD: False}
    ) == {"Subject", "ActivityDate", DELETED_FIELD}
    hashes = known.fingerprints(Origin.SALESFORCE, ids)
    assert len(hashes) == len(ids)
    assert set(hashes[ids[-1]]) == {"Subject", "ActivityDate"}
    assert known.fingerprints(Origin.SALESCONNECT, ids) == {}

    # Versions only move forward; values are replaced.
    known.record([Observed(Origin.SALESFORCE, ids[0], {"Subject": "New"}, now - timedelta(1))])
    assert ledger.known_version(Origin.SALESFORCE, ids[0]) == now
    assert ledger.unchanged_fields(Origin.SALESFORCE, ids[0], {"Subject": "New"}) == {"Subject"}
    known.record([Observed(Origin.SALESFORCE, ids[0], {}, now + timedelta(seconds=1))])
    assert ledger.known_version(Origin.SALESFORCE, ids[0]) == now + timedelta(seconds=1)


def test_reads_links_by_either_id(ledger: Ledger) -> None:
    ledger.link(TaskLink("tsk_a", "00T5E0000000001AAA", "usr_a", "0055E0000000001AAA"))
    ledger.link(TaskLink("tsk_b", "00T5E0000000002AAA"))
    known = KnownValues(ledger)
    by_salesforce = known.links_for_salesforce(["00T5E0000000001AAA", "00T5E0000000009AAA"])
    assert list(by_salesforce) == ["00T5E0000000001AAA"]
    assert by_salesforce["00T5E0000000001AAA"].salesconnect_user_id == "usr_a"
    assert set(known.links_for_salesconnect(["tsk_a", "tsk_b", "tsk_c"])) == {"tsk_a", "tsk_b"}
