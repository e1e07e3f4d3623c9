"""SPEC.md "Field mapping (both directions)": name/Subject, status, priority, due date and
details/Description cross both ways; values outside the tables are not synced.

Every process of this module's system runs in UTC+14 (`PROCESS_TIME_ZONE`), the user in UTC-10,
so a due date that went through a datetime anywhere would land on another day.
"""

from __future__ import annotations

import pytest

from tests.e2e.helpers import Both, UserPool, wait_quiet

PROCESS_TIME_ZONE = "Pacific/Kiritimati"
USERS_PER_BATCH = 8

EDGE_DATES = ("2026-12-31", "2027-01-01", "2024-02-29", "2026-03-29", "2026-11-01", None)


@pytest.fixture
def both(users: UserPool) -> Both:
    return users.take("Mapping", time_zone="America/Adak")


def test_a_sales_connect_task_reaches_salesforce_with_every_field_mapped(both: Both) -> None:
    task = both.create_in_salesconnect(
        "Call Ann about the renewal",
        "2026-12-31",
        status="completed",
        priority="high",
        details="First line\nSecond line: ünïcödé ✓",
    )

    pushed = both.wait_pushed(task["id"])

    assert pushed["Subject"] == "Call Ann about the renewal"
    assert pushed["Status"] == "Completed"
    assert pushed["Priority"] == "High"
    assert pushed["ActivityDate"] == "2026-12-31"
    assert pushed["Description"] == "First line\nSecond line: ünïcödé ✓"
    assert pushed["OwnerId"] == both.owner_id
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_salesforce_task_reaches_sales_connect_with_every_field_mapped(both: Both) -> None:
    task, _ = both.pair_from_salesforce(
        "Send the proposal",
        Status="Completed",
        Priority="High",
        ActivityDate="2027-01-01",
        Description="Attach the price list\r\nand the terms",
    )

    assert task["name"] == "Send the proposal"
    assert task["status"] == "completed"
    assert task["priority"] == "high"
    assert task["due_date"] == "2027-01-01"
    assert task["details"] == "Attach the price list\r\nand the terms"
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_sales_connect_rename_updates_the_salesforce_subject(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Old name")

    both.salesconnect.update_task(task["id"], name="New name")

    both.wait_salesforce(task_id, Subject="New name")
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_status_open_and_completed_cross_both_ways(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Status both ways")

    both.salesconnect.update_task(task["id"], status="completed")
    both.wait_salesforce(task_id, Status="Completed")
    both.update_in_salesforce(task_id, Status="Not Started")
    both.wait_salesconnect(task["id"], status="open")
    both.update_in_salesforce(task_id, Status="Completed")
    both.wait_salesconnect(task["id"], status="completed")
    both.salesconnect.update_task(task["id"], status="open")
    both.wait_salesforce(task_id, Status="Not Started")

    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_priority_normal_and_high_cross_both_ways(both: Both) -> None:
    task, task_id = both.pair_from_salesforce("Priority both ways", Priority="Normal")
    assert task["priority"] == "normal"

    both.salesconnect.update_task(task["id"], priority="high")
    both.wait_salesforce(task_id, Priority="High")
    both.update_in_salesforce(task_id, Priority="Normal")
    both.wait_salesconnect(task["id"], priority="normal")
    both.update_in_salesforce(task_id, Priority="High")
    both.wait_salesconnect(task["id"], priority="high")

    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_due_dates_never_shift_in_either_direction(both: Both) -> None:
    made_here = {d: both.create_in_salesconnect(f"Here, due {d}", d)["id"] for d in EDGE_DATES}
    made_there = {
        d: both.create_in_salesforce(f"There, due {d}", ActivityDate=d) for d in EDGE_DATES
    }

    for due_date, task_id in made_here.items():
        assert both.wait_pushed(task_id)["ActivityDate"] == due_date
    for due_date, task_id in made_there.items():
        assert both.wait_imported(task_id)["due_date"] == due_date
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_due_date_changes_and_removal_cross_both_ways_on_the_same_day(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Moving due date", "2026-12-31")

    both.salesconnect.update_task(task["id"], due_date="2027-01-01")
    both.wait_salesforce(task_id, ActivityDate="2027-01-01")
    both.update_in_salesforce(task_id, ActivityDate="2026-03-29")
    both.wait_salesconnect(task["id"], due_date="2026-03-29")
    both.update_in_salesforce(task_id, ActivityDate=None)
    both.wait_salesconnect(task["id"], due_date=None)
    both.salesconnect.update_task(task["id"], due_date="2024-02-29")
    both.wait_salesforce(task_id, ActivityDate="2024-02-29")

    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_details_and_description_cross_both_ways_and_clear_to_empty(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Details both ways", details="")

    both.salesconnect.update_task(task["id"], details="Bring the contract\nand a pen")
    both.wait_salesforce(task_id, Description="Bring the contract\nand a pen")
    both.update_in_salesforce(task_id, Description="Bring the signed contract 📄")
    both.wait_salesconnect(task["id"], details="Bring the signed contract 📄")
    both.update_in_salesforce(task_id, Description=None)
    both.wait_salesconnect(task["id"], details="")
    both.salesconnect.update_task(task["id"], details="x" * 32_000)
    both.wait_salesforce(task_id, Description="x" * 32_000)
    both.salesconnect.update_task(task["id"], details="")
    both.wait_salesforce(task_id, Description=None)

    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


# -- "not synced" values ------------------------------------------------------------------------


NOT_SYNCED = (
    ("Status", "In Progress"),
    ("Status", "Waiting on someone else"),
    ("Status", "Deferred"),
    ("Priority", "Low"),
)


def test_salesforce_values_outside_the_tables_leave_sales_connect_as_it_was(both: Both) -> None:
    pairs = [
        both.pair_from_salesconnect(f"{value} is not synced", status="completed", priority="high")
        for _, value in NOT_SYNCED
    ]

    for (field, value), (_, task_id) in zip(NOT_SYNCED, pairs, strict=True):
        both.update_in_salesforce(task_id, **{field: value})
    wait_quiet(both.system)

    for task, _ in pairs:
        after = both.salesconnect_task(task["id"])
        assert (after["status"], after["priority"]) == ("completed", "high")
        assert after["version"] == task["version"]
    outcome = both.system.wait_until_consistent(both.user_id, strict_subjects=True)
    assert sorted(f["kind"] for f in outcome.explained) == ["value_not_synced"] * 4


def test_a_salesforce_status_of_in_progress_leaves_sales_connect_unchanged(both: Both) -> None:
    task, task_id = both.pair_from_salesforce("In progress, open", Status="Not Started")

    # Together with a synced field, so its arrival proves the In Progress was seen too.
    both.update_in_salesforce(task_id, Status="In Progress", Description="started on it")

    after = both.wait_salesconnect(task["id"], details="started on it")
    assert after["status"] == "open"
    # The not-synced value is remembered, so moving on from it is a change again.
    both.update_in_salesforce(task_id, Status="Completed")
    both.wait_salesconnect(task["id"], status="completed")
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_salesforce_priority_of_low_leaves_sales_connect_unchanged(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Low, high", priority="high")

    both.update_in_salesforce(task_id, Priority="Low", ActivityDate="2027-02-01")

    after = both.wait_salesconnect(task["id"], due_date="2027-02-01")
    assert after["priority"] == "high"
    both.update_in_salesforce(task_id, Priority="Normal")
    both.wait_salesconnect(task["id"], priority="normal")
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_task_imported_while_low_gets_normal_priority(both: Both) -> None:
    task, _ = both.pair_from_salesforce("Imported low", Priority="Low", Status="In Progress")

    assert task["priority"] == "normal"
    assert task["status"] == "open"
    outcome = both.system.wait_until_consistent(both.user_id, strict_subjects=True)
    assert sorted(str(f.get("field")) for f in outcome.explained) == ["priority", "status"]


def test_a_sales_connect_details_edit_never_resets_salesforce_in_progress_or_low(
    both: Both,
) -> None:
    task, task_id = both.pair_from_salesconnect("Keep my Salesforce values", priority="high")
    both.update_in_salesforce(task_id, Status="In Progress", Priority="Low", Description="sf")
    both.wait_salesconnect(task["id"], details="sf")

    both.salesconnect.update_task(task["id"], details="notes from Sales Connect")

    after = both.wait_salesforce(task_id, Description="notes from Sales Connect")
    assert (after["Status"], after["Priority"]) == ("In Progress", "Low")
    wait_quiet(both.system, salesforce_poll=False)
    assert both.salesforce_task(task_id) == after
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)
