"""The to-salesconnect applier against the Sales Connect service, the emulator and a ledger."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from bridge.errors import ErrorKind, classify
from bridge.messaging import APPLIED, SKIPPED, OutcomeKind
from bridge.sync.conventions import salesconnect_known_values
from bridge.sync.to_salesconnect import SalesConnectTaskApplier
from schemas.task_change import Op, Origin, TaskChange, TaskPriority, TaskStatus
from tests.sync.conftest import SyncWorld, delivery
from tests.sync.messages import from_salesforce, now


@pytest.fixture
def applier(world: SyncWorld) -> SalesConnectTaskApplier:
    return SalesConnectTaskApplier(world.salesconnect, world.ledger, world.directory)


def sf_task(world: SyncWorld, **fields: object) -> str:
    body = {"Subject": "Call Ann", "OwnerId": world.salesforce_user_id, **fields}
    return str(world.rep.Task.create(body)["id"])


def change_of(world: SyncWorld, task_id: str, **kwargs: object) -> TaskChange:
    return from_salesforce(world.salesforce_user_id, task_id, **kwargs)


def imported(
    world: SyncWorld, applier: SalesConnectTaskApplier, **changed: object
) -> tuple[str, str]:
    task_id = sf_task(world)
    fields = {"name": "Call Ann", "due_date": date(2026, 11, 23), "details": "", **changed}
    assert applier([delivery(change_of(world, task_id, **fields))]) == [APPLIED]
    link = world.ledger.link_for_salesforce(task_id)
    assert link is not None
    return task_id, link.salesconnect_task_id


def test_an_import_creates_one_linked_task(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    task_id = sf_task(world)
    message = change_of(
        world,
        task_id,
        name="Call Ann",
        due_date=date(2026, 11, 23),
        priority=TaskPriority.HIGH,
        details="",
    )
    assert applier([delivery(message)]) == [APPLIED]
    assert applier([delivery(message)]) == [APPLIED]
    tasks = world.users.list_tasks(world.salesconnect_user_id)
    assert len(tasks) == 1
    task = tasks[0]
    assert (task["name"], task["due_date"], task["priority"], task["status"]) == (
        "Call Ann",
        "2026-11-23",
        "high",
        "open",
    )
    assert task["salesforce_task_id"] == task_id
    feed = world.users.all_changes()
    assert {c["origin"] for c in feed if c["task_id"] == task["id"]} == {"salesforce"}


def test_an_edit_writes_only_the_changed_fields(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    task_id, sc_id = imported(world, applier, priority=TaskPriority.HIGH)
    assert applier([delivery(change_of(world, task_id, status=TaskStatus.COMPLETED))]) == [APPLIED]
    task = world.users.get_task(sc_id)
    assert (task["status"], task["priority"], task["name"]) == ("completed", "high", "Call Ann")


def test_an_edit_equal_to_what_sales_connect_holds_writes_nothing(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    task_id, sc_id = imported(world, applier)
    version = world.users.get_task(sc_id)["version"]
    assert applier([delivery(change_of(world, task_id, due_date=date(2026, 11, 23)))]) == [APPLIED]
    assert world.users.get_task(sc_id)["version"] == version


def test_an_older_change_loses(world: SyncWorld, applier: SalesConnectTaskApplier) -> None:
    task_id, sc_id = imported(world, applier)
    newer = change_of(world, task_id, status=TaskStatus.COMPLETED, at=now(+5))
    older = change_of(world, task_id, status=TaskStatus.OPEN, at=now(+2))
    assert applier([delivery(newer)]) == [APPLIED]
    assert applier([delivery(older)]) == [SKIPPED]
    assert world.users.get_task(sc_id)["status"] == "completed"


def test_a_user_change_not_synced_yet_makes_the_message_wait(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    task_id, sc_id = imported(world, applier)
    world.users.update_task(sc_id, due_date="2026-12-24")
    outcome = applier([delivery(change_of(world, task_id, due_date=date(2026, 12, 1)))])[0]
    assert outcome.kind is OutcomeKind.FAILED and outcome.error is not None
    assert classify(outcome.error).kind is ErrorKind.TRANSIENT
    assert world.users.get_task(sc_id)["due_date"] == "2026-12-24"
    # Once the producer published the user's change (known values), the stamps decide.
    world.ledger.remember_writes(Origin.SALESCONNECT, sc_id, {"due_date": "2026-12-24"})
    assert applier([delivery(change_of(world, task_id, due_date=date(2026, 12, 1)))]) == [APPLIED]
    assert world.users.get_task(sc_id)["due_date"] == "2026-12-01"


def test_a_delete_wins_and_an_undelete_restores(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    task_id, sc_id = imported(world, applier)
    assert applier([delivery(change_of(world, task_id, op=Op.DELETE))]) == [APPLIED]
    assert world.users.get_task(sc_id, include_deleted=True)["deleted_at"] is not None
    assert applier([delivery(change_of(world, task_id, status=TaskStatus.COMPLETED))]) == [SKIPPED]
    restored = change_of(
        world, task_id, op=Op.UNDELETE, name="Call Ann", details="back", due_date=None
    )
    assert applier([delivery(restored)]) == [APPLIED]
    task = world.users.get_task(sc_id)
    assert (task["deleted_at"], task["details"], task["due_date"]) == (None, "back", None)


def test_a_lost_ledger_finds_the_task_by_its_link(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    task_id, sc_id = imported(world, applier)
    world.ledger.unlink(sc_id)
    assert applier([delivery(change_of(world, task_id, details="after"))]) == [APPLIED]
    assert world.users.get_task(sc_id)["details"] == "after"
    assert len(world.users.list_tasks(world.salesconnect_user_id)) == 1


def test_nothing_syncs_for_a_user_whose_sync_is_off(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    world.users.update_settings(world.salesconnect_user_id, task_sync="off")
    assert applier([delivery(change_of(world, sf_task(world), name="x"))]) == [SKIPPED]
    assert world.users.list_tasks(world.salesconnect_user_id) == []


def test_written_values_are_known(world: SyncWorld, applier: SalesConnectTaskApplier) -> None:
    _, sc_id = imported(world, applier)
    task = world.salesconnect.task(sc_id)
    assert task is not None
    values = salesconnect_known_values(task.values())
    assert world.ledger.unchanged_fields(Origin.SALESCONNECT, sc_id, values) == set(values)


def test_an_earlier_delete_that_arrives_after_a_later_undelete_is_skipped(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    """A retry can bring a delete after the undelete that followed it: the later one wins."""
    task_id, sc_id = imported(world, applier)
    deleted = change_of(world, task_id, op=Op.DELETE, at=now(1))
    undeleted = change_of(world, task_id, op=Op.UNDELETE, at=now(2), details="back")
    assert applier([delivery(undeleted)]) == [APPLIED]
    assert applier([delivery(deleted)]) == [SKIPPED]
    task = world.users.get_task(sc_id)
    assert (task["deleted_at"], task["details"]) == (None, "back")


def test_an_import_retried_after_the_delete_that_followed_it_makes_no_task(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    """The import waited in a retry tier; the delete came first and found nothing in Sales
    Connect. The import must lose to it, and an undelete after both brings the task."""
    task_id = sf_task(world)
    imported_change = change_of(world, task_id, at=now(1), name="Call Ann", details="")
    deleted = change_of(world, task_id, op=Op.DELETE, at=now(2))
    assert applier([delivery(deleted)]) == [SKIPPED]
    assert applier([delivery(imported_change)]) == [SKIPPED]
    assert world.users.list_tasks(world.salesconnect_user_id) == []
    undeleted = change_of(world, task_id, op=Op.UNDELETE, at=now(3), name="Call Ann")
    assert applier([delivery(undeleted)]) == [APPLIED]
    tasks = world.users.list_tasks(world.salesconnect_user_id)
    assert [(task["name"], task["salesforce_task_id"]) for task in tasks] == [("Call Ann", task_id)]


def test_an_undelete_brings_the_task_back_as_salesforce_holds_it(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    """A rename that lost to the delete stays lost: the name follows the Subject again."""
    task_id, sc_id = imported(world, applier)
    world.users.update_task(sc_id, name="Renamed before the delete")
    # Published by the Sales Connect producer, which records the value as known.
    world.ledger.remember_writes(Origin.SALESCONNECT, sc_id, {"name": "Renamed before the delete"})
    assert applier([delivery(change_of(world, task_id, op=Op.DELETE))]) == [APPLIED]
    undeleted = dataclasses.replace(
        change_of(world, task_id, op=Op.UNDELETE, details=""),
        source_values={"Subject": "Call Ann", "IsDeleted": False},
    )
    assert applier([delivery(undeleted)]) == [APPLIED]
    task = world.users.get_task(sc_id)
    assert (task["deleted_at"], task["name"]) == (None, "Call Ann")


def test_an_undelete_whose_delete_never_came_still_brings_the_subject_back(
    world: SyncWorld, applier: SalesConnectTaskApplier
) -> None:
    """The delete was superseded by the undelete before it was applied (it is skipped), so the
    task was never deleted here: the rename that lost to the delete still goes."""
    task_id, sc_id = imported(world, applier)
    world.users.update_task(sc_id, name="Renamed before the delete")
    world.ledger.remember_writes(Origin.SALESCONNECT, sc_id, {"name": "Renamed before the delete"})
    deleted = change_of(world, task_id, op=Op.DELETE, at=now(1))
    undeleted = dataclasses.replace(
        change_of(world, task_id, op=Op.UNDELETE, at=now(2), details=""),
        source_values={"Subject": "Call Ann", "IsDeleted": False},
    )
    assert applier([delivery(undeleted)]) == [APPLIED]
    assert applier([delivery(deleted)]) == [SKIPPED]
    task = world.users.get_task(sc_id)
    assert (task["deleted_at"], task["name"]) == (None, "Call Ann")
