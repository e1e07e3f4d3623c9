"""Get Updated / Get Deleted with Salesforce's rules, the recycle bin, and undelete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support.emulator import EmulatorProcess


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def sf_stamp(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}+0000"
    )


@pytest.fixture
def sf(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("sales_rep")


def test_updated_ignores_seconds_and_reports_latest_date_covered(
    sf: Salesforce, emulator: EmulatorProcess
) -> None:
    base = minute_floor(datetime.now(UTC)) - timedelta(hours=2)
    inside = sf.Task.create({"Subject": "inside"})["id"]
    before = sf.Task.create({"Subject": "before"})["id"]
    old = sf.Task.create({"Subject": "two days ago"})["id"]
    emulator.admin.backdate(inside, SystemModstamp=base + timedelta(seconds=30))
    emulator.admin.backdate(before, SystemModstamp=base - timedelta(seconds=1))
    emulator.admin.backdate(old, SystemModstamp=base - timedelta(days=2))
    window = sf.Task.updated(base + timedelta(seconds=45), base + timedelta(minutes=5, seconds=59))
    assert window == {"ids": [inside], "latestDateCovered": sf_stamp(base + timedelta(minutes=5))}
    reach = sf.Task.updated(base - timedelta(days=3), base + timedelta(minutes=1))
    assert reach["ids"] == [old, before, inside]


def test_updated_never_covers_the_current_minute(sf: Salesforce) -> None:
    now = datetime.now(UTC)
    fresh = sf.Task.create({"Subject": "fresh"})["id"]
    result = sf.Task.updated(now - timedelta(minutes=10), now + timedelta(days=1))
    assert result["latestDateCovered"] <= sf_stamp(minute_floor(datetime.now(UTC)))
    assert fresh not in result["ids"] or result["latestDateCovered"] > sf_stamp(now)


@pytest.mark.parametrize(
    ("kind", "days_back"),
    [("updated", 31), ("deleted", 16)],
)
def test_windows_beyond_reach_raise_invalid_replication_date(
    sf: Salesforce, kind: str, days_back: int
) -> None:
    now = datetime.now(UTC)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        getattr(sf.Task, kind)(now - timedelta(days=days_back), now)
    assert raised.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    getattr(sf.Task, kind)(now - timedelta(days=days_back - 2), now)


def test_windows_shorter_than_a_minute_are_rejected(sf: Salesforce) -> None:
    start = minute_floor(datetime.now(UTC)) - timedelta(minutes=5)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Task.updated(start + timedelta(seconds=5), start + timedelta(seconds=50))
    assert raised.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    with pytest.raises(SalesforceMalformedRequest):
        sf.Task.deleted(start, start - timedelta(minutes=3))


def test_deleted_lists_the_recycle_bin_within_15_days(
    sf: Salesforce, emulator: EmulatorProcess
) -> None:
    base = minute_floor(datetime.now(UTC)) - timedelta(days=3)
    task_id = sf.Task.create({"Subject": "to delete"})["id"]
    sf.Task.delete(task_id)
    emulator.admin.backdate(task_id, DeletedDate=base + timedelta(seconds=10))
    result = sf.Task.deleted(base - timedelta(hours=1), base + timedelta(hours=1))
    assert result["deletedRecords"] == [
        {"id": task_id, "deletedDate": sf_stamp(base + timedelta(seconds=10))}
    ]
    assert result["latestDateCovered"] == sf_stamp(base + timedelta(hours=1))
    assert result["earliestDateAvailable"] <= sf_stamp(base)


def test_undelete_brings_a_task_back(sf: Salesforce, emulator: EmulatorProcess) -> None:
    task_id = sf.Task.create({"Subject": "oops", "Sales_Connect_Id__c": "sc-9"})["id"]
    sf.Task.delete(task_id)
    before = datetime.now(UTC) - timedelta(minutes=5)
    restored = emulator.admin.undelete(task_id)
    assert restored["IsDeleted"] is False
    task = sf.Task.get(task_id)
    assert task["Subject"] == "oops" and task["LastModifiedById"] == emulator.sales_rep.id
    assert sf.Task.deleted(before, datetime.now(UTC) + timedelta(minutes=2))["deletedRecords"] == []
    with pytest.raises(Exception, match="409"):
        emulator.admin.undelete(task_id)


def test_recycle_bin_keeps_deleted_tasks_15_days(sf: Salesforce, emulator: EmulatorProcess) -> None:
    recent = sf.Task.create({"Subject": "recent"})["id"]
    stale = sf.Task.create({"Subject": "stale"})["id"]
    sf.Task.delete(recent)
    sf.Task.delete(stale)
    purged_at = datetime.now(UTC) - timedelta(days=16)
    emulator.admin.backdate(stale, DeletedDate=purged_at)
    emulator.admin.backdate(recent, DeletedDate=datetime.now(UTC) - timedelta(days=14))
    assert emulator.admin.purge_recycle_bin() == 1
    left = sf.query_all("SELECT Id FROM Task", include_deleted=True)
    assert [r["Id"] for r in left["records"]] == [recent]
    with pytest.raises(Exception, match="404"):
        emulator.admin.undelete(stale)
    now = datetime.now(UTC)
    assert sf.Task.deleted(now - timedelta(days=15), now)["earliestDateAvailable"] == sf_stamp(
        minute_floor(purged_at)
    )
