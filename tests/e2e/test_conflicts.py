"""SPEC.md "Convergence": when both sides edit the same task at once they end equal, by the rule
docs/sync.md documents: field by field, the later source modification wins (Sales Connect's
`updated_at`, Salesforce's `SystemModstamp`); on equal stamps Salesforce wins, then the larger
message id; a delete wins over concurrent edits.

"At once" here means back to back, faster than the bridge carries either edit (it needs tens of
milliseconds at least). The two calls still happen one after the other on one clock, so the
second editor's stamp is the later one: each round asserts that it won, and checks that against
the stamps themselves whenever the Salesforce stamp could be read before the bridge wrote.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from schemas.fields import parse_utc_stamp
from tests.e2e.helpers import Both, wait_quiet
from tests.support.system import RunningSystem
from tests.support.waiting import wait_for

SALESFORCE_TO_NEUTRAL = {
    "Subject": "name",
    "Status": "status",
    "Priority": "priority",
    "ActivityDate": "due_date",
    "Description": "details",
}
VALUES_FROM_SALESFORCE = {
    "Status": {"Not Started": "open", "Completed": "completed"},
    "Priority": {"Normal": "normal", "High": "high"},
}
NEUTRAL_TO_SALESFORCE = {
    "status": {"open": "Not Started", "completed": "Completed"},
    "priority": {"normal": "Normal", "high": "High"},
}

# (who edits first, Sales Connect's edit, Salesforce's edit). Status and priority have two synced
# values each, so both sides can only set them to different new values in different fields:
# they take part in the rounds that merge fields.
ROUNDS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("salesconnect", {"details": "round 1 here"}, {"Description": "round 1 there"}),
    ("salesforce", {"details": "round 2 here"}, {"Description": "round 2 there"}),
    ("salesconnect", {"due_date": "2027-05-01"}, {"ActivityDate": "2027-06-01"}),
    ("salesforce", {"due_date": "2027-07-01"}, {"ActivityDate": "2027-08-01"}),
    (
        "salesconnect",
        {"details": "round 5 here", "due_date": "2027-09-01"},
        {"Description": "round 5 there", "ActivityDate": "2027-10-01"},
    ),
    (
        "salesforce",
        {"details": "round 6 here", "due_date": None},
        {"Description": "round 6 there", "ActivityDate": "2027-11-01"},
    ),
    # Several fields, overlapping in one: the overlap by stamps, the others merged.
    (
        "salesconnect",
        {"details": "round 7 here", "priority": "high"},
        {"Description": "round 7 there", "Status": "Completed"},
    ),
    (
        "salesforce",
        {"due_date": "2027-12-01", "status": "open"},
        {"ActivityDate": None, "Priority": "Normal"},
    ),
]


def neutral(salesforce_values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        SALESFORCE_TO_NEUTRAL[name]: VALUES_FROM_SALESFORCE.get(name, {}).get(value, value)
        for name, value in salesforce_values.items()
    }


def as_salesforce(values: Mapping[str, Any]) -> dict[str, Any]:
    field = {neutral_name: sf for sf, neutral_name in SALESFORCE_TO_NEUTRAL.items()}
    return {
        field[name]: NEUTRAL_TO_SALESFORCE.get(name, {}).get(value, value)
        for name, value in values.items()
    }


def edit_both(
    both: Both,
    task_id: str,
    salesforce_id: str,
    *,
    first: str,
    here: dict[str, Any],
    there: dict[str, Any],
) -> tuple[datetime, datetime | None]:
    """Both edits back to back; returns their stamps (Salesforce's when it could be read before
    the bridge wrote the Task)."""

    def edit_salesforce() -> datetime | None:
        both.update_in_salesforce(salesforce_id, **there)
        task = both.salesforce_task(salesforce_id)
        assert task is not None
        if task["LastModifiedById"] != both.owner_id:
            return None
        return parse_utc_stamp(task["SystemModstamp"])

    if first == "salesforce":
        salesforce_stamp = edit_salesforce()
        edited = both.salesconnect.update_task(task_id, **here)
    else:
        edited = both.salesconnect.update_task(task_id, **here)
        salesforce_stamp = edit_salesforce()
    return parse_utc_stamp(edited["updated_at"]), salesforce_stamp


def test_both_sides_editing_the_same_fields_at_once_end_equal_and_the_later_edit_wins(
    both: Both,
) -> None:
    task, salesforce_id = both.pair_from_salesconnect("Edited on both sides")
    for number, (first, here, there) in enumerate(ROUNDS, start=1):
        here_stamp, there_stamp = edit_both(
            both, task["id"], salesforce_id, first=first, here=here, there=there
        )

        if there_stamp is not None:
            salesforce_wins = there_stamp >= here_stamp  # equal stamps: Salesforce wins
            assert salesforce_wins == (first == "salesconnect"), (number, here_stamp, there_stamp)
        else:
            salesforce_wins = first == "salesconnect"
        expected = {**here, **neutral(there)} if salesforce_wins else {**neutral(there), **here}
        both.wait_salesconnect(task["id"], **expected)
        both.wait_salesforce(salesforce_id, **as_salesforce(expected))
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_delete_wins_over_a_concurrent_edit_on_the_other_side(both: Both) -> None:
    cases = {
        name: both.pair_from_salesconnect(name)
        for name in (
            "deleted here, then edited there",
            "edited there, then deleted here",
            "deleted there, then edited here",
            "edited here, then deleted there",
        )
    }

    for name, (task, salesforce_id) in cases.items():
        if name == "deleted here, then edited there":
            both.salesconnect.delete_task(task["id"])
            both.update_in_salesforce(salesforce_id, Description="edited there")
        elif name == "edited there, then deleted here":
            both.update_in_salesforce(salesforce_id, Description="edited there")
            both.salesconnect.delete_task(task["id"])
        elif name == "deleted there, then edited here":
            both.delete_in_salesforce(salesforce_id)
            both.salesconnect.update_task(task["id"], details="edited here")
        else:
            both.salesconnect.update_task(task["id"], details="edited here")
            both.delete_in_salesforce(salesforce_id)

    for task, salesforce_id in cases.values():
        both.wait_salesconnect(task["id"], deleted=True)
        both.wait_salesforce(salesforce_id, IsDeleted=True)
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


@contextlib.contextmanager
def notifications_dropped(system: RunningSystem) -> Iterator[None]:
    """Only the poller carries Salesforce changes meanwhile."""
    system.admin.set_faults(notification_drop_share=1.0)
    try:
        yield
    finally:
        system.admin.set_faults(notification_drop_share=0.0)


@contextlib.contextmanager
def stopped(system: RunningSystem, *names: str) -> Iterator[None]:
    """These components stopped for the block; running again after it, whatever happens."""
    for name in names:
        system.stop_component(name)
    try:
        yield
    finally:
        for name in names:
            if not system.component(name).is_running:
                system.start_component(name)


def test_on_equal_stamps_salesforce_wins(both: Both) -> None:
    """Equal stamps cannot be made by timing: the emulator's admin API gives the Salesforce edit
    the very stamp of the Sales Connect one. Notifications are off, so the poller reads the Task
    only with that stamp, and the to-salesforce worker waits until it has."""
    system = both.system
    task, salesforce_id = both.pair_from_salesconnect("Equal stamps")
    with notifications_dropped(system), stopped(system, "to-salesforce"):
        both.update_in_salesforce(salesforce_id, Description="Salesforce's value")
        edited = both.salesconnect.update_task(task["id"], details="Sales Connect's value")
        stamp = edited["updated_at"]
        system.admin.backdate(salesforce_id, LastModifiedDate=stamp, SystemModstamp=stamp)

        both.wait_salesconnect(task["id"], details="Salesforce's value")
    both.wait_salesforce(salesforce_id, Description="Salesforce's value")

    wait_quiet(system)
    assert both.salesconnect_task(task["id"])["details"] == "Salesforce's value"
    assert both.salesforce_task(salesforce_id)["Description"] == "Salesforce's value"
    system.wait_until_consistent(both.user_id, strict_subjects=True)


def task_resource_calls(system: RunningSystem) -> int:
    """The bridge's calls on single Tasks (GET, PATCH, DELETE of sobjects/Task/{id})."""
    by_client = system.salesforce_stats().get("by_client", {})
    resource = by_client.get("tasksync", {}).get("by_resource", {}).get("sobjects/Task/{id}", {})
    return sum(int(n) for n in resource.values())


def test_a_later_salesforce_edit_wins_when_only_the_poller_carries_it(both: Both) -> None:
    system = both.system
    task, salesforce_id = both.pair_from_salesconnect("Later in Salesforce")
    # The poller has seen the Task as the bridge made it, and a second has passed since (the
    # If-Unmodified-Since check is to the second): the first try below then certainly gets a 412.
    wait_quiet(system)
    with notifications_dropped(system), stopped(system, "salesforce-poller", "to-salesforce"):
        both.salesconnect.update_task(task["id"], details="earlier, in Sales Connect")
        both.update_in_salesforce(salesforce_id, Description="later, in Salesforce")
        calls = task_resource_calls(system)
        system.start_component("to-salesforce")
        # Its first try finds the unsynced Salesforce edit (a 412 and a read); the retry makes
        # at least one more call on the Task.
        wait_for(
            lambda: task_resource_calls(system) >= calls + 3,
            timeout=20,
            what="the to-salesforce worker to try the Sales Connect edit twice",
        )
        kept = both.salesforce_task(salesforce_id)
        assert kept is not None
        assert kept["Description"] == "later, in Salesforce"

    both.wait_salesconnect(task["id"], details="later, in Salesforce")
    system.wait_until_consistent(both.user_id, strict_subjects=True)
