"""The to-salesforce applier against the emulator, the Sales Connect service and a ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bridge.errors import ErrorKind, classify
from bridge.messaging import APPLIED, SKIPPED, OutcomeKind
from bridge.sync.conventions import create_intent_key, salesforce_known_values
from bridge.sync.to_salesconnect import SalesConnectTaskApplier
from bridge.sync.to_salesforce import SalesforceTaskApplier
from schemas.task_change import Op, Origin, TaskChange, TaskPriority, TaskStatus
from tests.sync.conftest import SyncWorld, delivery
from tests.sync.messages import from_salesconnect, from_salesforce, now


@pytest.fixture
def applier(world: SyncWorld) -> SalesforceTaskApplier:
    return SalesforceTaskApplier(world.gateway, world.salesconnect, world.ledger, world.directory)


def new_task(world: SyncWorld, **fields: object) -> dict[str, object]:
    task = world.users.create_task(world.salesconnect_user_id, **fields)  # type: ignore[arg-type]
    return dict(task)


def change_of(world: SyncWorld, task: dict[str, object], **kwargs: object) -> TaskChange:
    return from_salesconnect(
        world.salesconnect_user_id, world.salesforce_user_id, str(task["id"]), **kwargs
    )


def created(
    world: SyncWorld, applier: SalesforceTaskApplier, **fields: object
) -> tuple[dict[str, object], str]:
    task = new_task(world, **fields)
    assert applier([delivery(change_of(world, task, name=str(task["name"])))]) == [APPLIED]
    link = world.ledger.link_for_salesconnect(str(task["id"]))
    assert link is not None
    return task, link.salesforce_task_id


def test_a_create_becomes_one_task_owned_by_the_connected_user(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    task = new_task(
        world, name="Send proposal", due_date="2026-11-23", priority="high", details="Pricing v2"
    )
    message = change_of(world, task, name="Send proposal")
    assert applier([delivery(message)]) == [APPLIED]
    assert applier([delivery(message)]) == [APPLIED]
    found = world.rep.query(
        f"SELECT Id, Subject, Priority, ActivityDate, Description, OwnerId, Status "
        f"FROM Task WHERE Sales_Connect_Id__c = '{task['id']}'"
    )["records"]
    assert len(found) == 1
    sf = found[0]
    assert (sf["Subject"], sf["Priority"], sf["ActivityDate"], sf["Description"]) == (
        "Send proposal",
        "High",
        "2026-11-23",
        "Pricing v2",
    )
    assert (sf["OwnerId"], sf["Status"]) == (world.salesforce_user_id, "Not Started")
    linked = world.users.get_task(str(task["id"]))
    assert linked["salesforce_task_id"] == sf["Id"]


def test_an_edit_writes_only_the_changed_fields(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    task, sf_id = created(world, applier, details="old")
    world.rep.Task.update(sf_id, {"Status": "In Progress", "Priority": "Low"})
    world.ledger.remember_writes(
        Origin.SALESFORCE, sf_id, {"Status": "In Progress", "Priority": "Low"}
    )
    world.ledger.remember_version(
        Origin.SALESFORCE, sf_id, world.gateway.get(sf_id).last_modified_date
    )
    world.emulator.admin.clear_stats()
    assert applier([delivery(change_of(world, task, details="new details"))]) == [APPLIED]
    assert world.bridge_calls() == 1
    assert world.salesforce_writes() == {"update": 1}
    sf = world.gateway.get(sf_id)
    assert (sf.description, sf.status, sf.priority) == ("new details", "In Progress", "Low")


def test_a_rename_stays_in_sales_connect_when_the_template_does_not_use_the_name(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    world.users.update_settings(
        world.salesconnect_user_id, activity_subject_template="Reminder from Sales Connect"
    )
    task, sf_id = created(world, applier, name="First name")
    assert world.gateway.get(sf_id).subject == "Reminder from Sales Connect"
    assert applier([delivery(change_of(world, task, name="Second name"))]) == [SKIPPED]
    assert world.gateway.get(sf_id).subject == "Reminder from Sales Connect"


def test_an_older_change_loses_to_a_newer_one(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    task, sf_id = created(world, applier)
    newer = change_of(world, task, status=TaskStatus.COMPLETED, at=now(+5))
    older = change_of(world, task, status=TaskStatus.OPEN, priority=TaskPriority.HIGH, at=now(+2))
    assert applier([delivery(newer)]) == [APPLIED]
    assert applier([delivery(older)]) == [APPLIED]
    sf = world.gateway.get(sf_id)
    assert (sf.status, sf.priority) == ("Completed", "High")


def test_a_salesforce_change_not_synced_yet_makes_the_message_wait(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    task, sf_id = created(world, applier)
    world.rep.Task.update(sf_id, {"Status": "Completed"})
    outcome = applier([delivery(change_of(world, task, status=TaskStatus.OPEN))])[0]
    assert outcome.kind is OutcomeKind.FAILED and outcome.error is not None
    assert classify(outcome.error).kind is ErrorKind.TRANSIENT
    assert "not synced yet" in str(outcome.error)
    assert world.gateway.get(sf_id).status == "Completed"


def test_a_backlog_goes_out_in_collections(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    tasks = [new_task(world, name=f"task {n}") for n in range(5)]
    world.emulator.admin.clear_stats()
    creates = [delivery(change_of(world, t, name=str(t["name"]))) for t in tasks]
    assert applier(creates) == [APPLIED] * 5
    assert world.bridge_calls() == 1
    # The values it meant to create were kept until the Tasks' own were recorded, then dropped.
    intents = [create_intent_key(str(task["id"])) for task in tasks]
    assert world.ledger.fingerprints(Origin.SALESFORCE, intents) == {}
    for task in tasks:
        sf_id = world.ledger.link_for_salesconnect(str(task["id"]))
        assert sf_id is not None
        # Last changed a while ago: read now, the stamp is settled and vouches for the values.
        earlier = datetime.now(UTC) - timedelta(seconds=5)
        world.emulator.admin.backdate(
            sf_id.salesforce_task_id, LastModifiedDate=earlier, SystemModstamp=earlier
        )
        world.ledger.remember_version(
            Origin.SALESFORCE,
            sf_id.salesforce_task_id,
            world.gateway.get(sf_id.salesforce_task_id).last_modified_date,
        )
    world.emulator.admin.clear_stats()
    edits = [delivery(change_of(world, t, status=TaskStatus.COMPLETED)) for t in tasks]
    assert applier(edits) == [APPLIED] * 5
    assert world.bridge_calls() == 2  # one query of current values, one collections update
    statuses = {t.status for t in world.gateway.tasks(f"OwnerId = '{world.salesforce_user_id}'")}
    assert statuses == {"Completed"}


def test_tasks_changed_within_the_last_second_are_written_one_by_one_once_settled(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    """Salesforce dates If-Unmodified-Since to the second: a Task changed in this second could
    change again unseen, so it is read again once the second is over and written with the
    condition, never by an unconditional collection."""
    tasks = [new_task(world, name=f"fresh {n}") for n in range(3)]
    assert (
        applier([delivery(change_of(world, t, name=str(t["name"]))) for t in tasks])
        == [APPLIED] * 3
    )
    links = [world.ledger.link_for_salesconnect(str(t["id"])) for t in tasks]
    ids = [link.salesforce_task_id for link in links if link is not None]
    assert not any(task.settled for task in world.gateway.tasks_by_id(ids).values())
    world.emulator.admin.clear_stats()
    edits = [delivery(change_of(world, t, status=TaskStatus.COMPLETED)) for t in tasks]
    assert applier(edits) == [APPLIED] * 3
    resources = world.emulator.admin.stats()["by_client"]["tasksync"]["by_resource"]
    assert not [name for name in resources if "composite" in name], resources
    assert sum(methods.get("PATCH", 0) for methods in resources.values()) == 3, resources
    current = world.gateway.tasks_by_id(ids)
    assert {task.status for task in current.values()} == {"Completed"}


def test_two_messages_of_one_task_in_one_batch_apply_in_order(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    task = new_task(world, name="n")
    first = change_of(world, task, name="n", at=now(-1))
    second = change_of(world, task, due_date=date(2026, 12, 1))
    assert applier([delivery(first), delivery(second)]) == [APPLIED, APPLIED]
    link = world.ledger.link_for_salesconnect(str(task["id"]))
    assert link is not None
    assert world.gateway.get(link.salesforce_task_id).activity_date == "2026-12-01"


def test_delete_and_restore(world: SyncWorld, applier: SalesforceTaskApplier) -> None:
    task, sf_id = created(world, applier)
    assert applier([delivery(change_of(world, task, op=Op.DELETE))]) == [APPLIED]
    assert world.gateway.tasks_by_id([sf_id])[sf_id].is_deleted
    # Known as deleted: the producers will not send this delete back.
    assert world.ledger.unchanged_fields(Origin.SALESFORCE, sf_id, {"IsDeleted": True})
    assert applier([delivery(change_of(world, task, op=Op.DELETE))]) == [SKIPPED]
    world.users.delete_task(str(task["id"]))
    world.users.restore_task(str(task["id"]))
    assert applier([delivery(change_of(world, task, op=Op.UNDELETE, name=str(task["name"])))]) == [
        APPLIED
    ]
    link = world.ledger.link_for_salesconnect(str(task["id"]))
    assert link is not None and link.salesforce_task_id != sf_id
    assert not world.gateway.get(link.salesforce_task_id).is_deleted
    assert world.users.get_task(str(task["id"]))["salesforce_task_id"] == link.salesforce_task_id


def test_a_validation_rule_parks_and_shows_on_the_settings_page(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    world.emulator.admin.set_validation_rules(
        [
            {
                "name": "No_Urgent",
                "field": "Subject",
                "matches": "(?i)urgent",
                "message": "Subjects may not say urgent",
            }
        ]
    )
    task = new_task(world, name="URGENT call")
    outcome = applier([delivery(change_of(world, task, name="URGENT call"))])[0]
    assert outcome.kind is OutcomeKind.FAILED and outcome.error is not None
    failure = classify(outcome.error)
    assert failure.kind is ErrorKind.PERMANENT
    assert "Subjects may not say urgent" in failure.message
    error = world.salesconnect.settings(world.salesconnect_user_id).last_sync_error
    assert error is not None and "Subjects may not say urgent" in error


def test_details_over_the_description_limit_park_with_the_rule(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    task, _ = created(world, applier)
    outcome = applier([delivery(change_of(world, task, details="x" * 32_001))])[0]
    assert outcome.error is not None
    assert classify(outcome.error).kind is ErrorKind.PERMANENT
    assert "32,000" in str(outcome.error)


def test_nothing_syncs_for_a_user_whose_sync_is_off(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    task = new_task(world)
    world.users.update_settings(world.salesconnect_user_id, task_sync="off")
    assert applier([delivery(change_of(world, task, name="x"))]) == [SKIPPED]
    assert world.bridge_calls() == 0


def test_known_values_are_recorded_for_echo_suppression(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    _, sf_id = created(world, applier, name="Echo me", due_date="2026-11-30")
    current = salesforce_known_values(world.gateway.get(sf_id).values())
    assert world.ledger.unchanged_fields(Origin.SALESFORCE, sf_id, current) == set(current)


def test_an_earlier_delete_retried_after_a_later_restore_is_skipped(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    """A delete that waited in a retry tier while the task was restored must not delete the
    Task the restore kept."""
    task, sf_id = created(world, applier)
    deleted = change_of(world, task, op=Op.DELETE, at=now(1))
    restored = change_of(world, task, op=Op.UNDELETE, at=now(2), name=str(task["name"]))
    assert applier([delivery(restored)]) in ([APPLIED], [SKIPPED])
    assert applier([delivery(deleted)]) == [SKIPPED]
    assert not world.gateway.get(sf_id).is_deleted


def test_a_create_retried_after_the_delete_that_followed_it_makes_no_task(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    """The create waited in a retry tier; the delete came first and found no Task to delete.
    The create, carrying every field (so Sales Connect is not read), must lose to it."""
    task = new_task(world, name="Short-lived", due_date="2026-11-23", details="gone soon")
    create = change_of(
        world,
        task,
        at=now(1),
        name="Short-lived",
        status=TaskStatus.OPEN,
        priority=TaskPriority.NORMAL,
        due_date=date(2026, 11, 23),
        details="gone soon",
    )
    world.users.delete_task(str(task["id"]))
    deleted = change_of(world, task, op=Op.DELETE, at=now(2))
    assert applier([delivery(deleted)]) == [SKIPPED]
    assert applier([delivery(create)]) == [SKIPPED]
    found = world.rep.query(f"SELECT Id FROM Task WHERE Sales_Connect_Id__c = '{task['id']}'")
    assert found["totalSize"] == 0
    assert world.ledger.link_for_salesconnect(str(task["id"])) is None


def test_a_salesforce_delete_stamped_before_the_create_still_deletes(
    world: SyncWorld, applier: SalesforceTaskApplier
) -> None:
    """Creates never claim the task's existence: a Salesforce delete whose stamp is older than
    the Sales Connect create (found only when sync is turned on again, or another clock)
    still deletes the task."""
    task, sf_id = created(world, applier)
    deleted = from_salesforce(
        world.salesforce_user_id,
        sf_id,
        op=Op.DELETE,
        at=now(-10 * 24 * 3600),
        salesconnect_task_id=str(task["id"]),
    )
    to_salesconnect = SalesConnectTaskApplier(world.salesconnect, world.ledger, world.directory)
    assert to_salesconnect([delivery(deleted)]) == [APPLIED]
    assert world.users.get_task(str(task["id"]), include_deleted=True)["deleted_at"] is not None
