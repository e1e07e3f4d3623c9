"""SPEC.md "While sync is on": whatever is created, edited, completed or deleted on either side
is applied to the other, continuously; a Salesforce undelete brings the task back, and so does
a Sales Connect restore.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial

from tests.e2e.helpers import Both
from tests.support.waiting import wait_for

USERS_PER_BATCH = 6


def test_a_task_created_in_sales_connect_is_created_in_salesforce(both: Both) -> None:
    task = both.create_in_salesconnect("Created in Sales Connect", "2026-12-24", priority="high")

    pushed = both.wait_pushed(task["id"])

    assert (pushed["Subject"], pushed["ActivityDate"], pushed["Priority"]) == (
        "Created in Sales Connect",
        "2026-12-24",
        "High",
    )
    both.wait_salesconnect(task["id"], salesforce_task_id=pushed["Id"])
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_task_created_in_salesforce_is_created_in_sales_connect(both: Both) -> None:
    task_id = both.create_in_salesforce("Created in Salesforce", ActivityDate="2026-12-24")

    task = both.wait_imported(task_id)

    assert (task["name"], task["due_date"], task["status"]) == (
        "Created in Salesforce",
        "2026-12-24",
        "open",
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_an_edit_in_sales_connect_is_applied_to_salesforce(both: Both) -> None:
    task, task_id = both.pair_from_salesforce("Edit me in Sales Connect")

    both.salesconnect.update_task(
        task["id"], due_date="2027-03-01", priority="high", details="moved to March"
    )

    both.wait_salesforce(
        task_id, ActivityDate="2027-03-01", Priority="High", Description="moved to March"
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_an_edit_in_salesforce_is_applied_to_sales_connect(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Edit me in Salesforce")

    both.update_in_salesforce(
        task_id, ActivityDate="2027-03-01", Priority="High", Description="moved to March"
    )

    both.wait_salesconnect(
        task["id"], due_date="2027-03-01", priority="high", details="moved to March"
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_completing_and_reopening_in_sales_connect_is_applied_to_salesforce(both: Both) -> None:
    task, task_id = both.pair_from_salesforce("Complete me in Sales Connect")

    both.salesconnect.update_task(task["id"], status="completed")
    both.wait_salesforce(task_id, Status="Completed")
    both.salesconnect.update_task(task["id"], status="open")
    both.wait_salesforce(task_id, Status="Not Started")

    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_completing_and_reopening_in_salesforce_is_applied_to_sales_connect(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Complete me in Salesforce")

    both.update_in_salesforce(task_id, Status="Completed")
    both.wait_salesconnect(task["id"], status="completed")
    both.update_in_salesforce(task_id, Status="Not Started")
    both.wait_salesconnect(task["id"], status="open")

    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_deleting_a_task_in_sales_connect_deletes_it_in_salesforce(both: Both) -> None:
    task, task_id = both.pair_from_salesforce("Delete me in Sales Connect")

    both.salesconnect.delete_task(task["id"])

    both.wait_salesforce(task_id, IsDeleted=True)
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_deleting_a_task_in_salesforce_deletes_it_in_sales_connect(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Delete me in Salesforce")

    both.delete_in_salesforce(task_id)

    both.wait_salesconnect(task["id"], deleted=True)
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_salesforce_undelete_brings_the_task_back_in_sales_connect(both: Both) -> None:
    task, task_id = both.pair_from_salesconnect("Undelete me", details="keep these notes")
    both.delete_in_salesforce(task_id)
    both.wait_salesconnect(task["id"], deleted=True)

    both.system.admin.undelete(task_id, user_id=both.owner_id)

    back = both.wait_salesconnect(task["id"], deleted=False)
    assert (back["name"], back["details"], back["salesforce_task_id"]) == (
        "Undelete me",
        "keep these notes",
        task_id,
    )
    # And it syncs as before, both ways.
    both.salesconnect.update_task(task["id"], status="completed")
    both.wait_salesforce(task_id, Status="Completed", IsDeleted=False)
    both.update_in_salesforce(task_id, Description="after the undelete")
    both.wait_salesconnect(task["id"], details="after the undelete")
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_sales_connect_restore_brings_the_salesforce_task_back(both: Both) -> None:
    task, task_id = both.pair_from_salesforce("Restore me", Description="keep these notes")
    both.salesconnect.delete_task(task["id"])
    both.wait_salesforce(task_id, IsDeleted=True)

    both.salesconnect.restore_task(task["id"])

    # The REST API cannot undelete, so the bridge may bring it back as a new Task.
    back = both.wait_pushed(task["id"])
    assert (back["Subject"], back["Description"], back["OwnerId"]) == (
        "Restore me",
        "keep these notes",
        both.owner_id,
    )
    both.wait_salesconnect(task["id"], salesforce_task_id=back["Id"], deleted=False)
    both.update_in_salesforce(back["Id"], Priority="High")
    both.wait_salesconnect(task["id"], priority="high")
    both.salesconnect.update_task(task["id"], details="after the restore")
    both.wait_salesforce(back["Id"], Description="after the restore")
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


# -- continuously -------------------------------------------------------------------------------


SALESFORCE_STATUS = {"open": "Not Started", "completed": "Completed"}


@dataclass
class Tracked:
    """One task of the stream and what both sides must show after its last change."""

    salesconnect_id: str
    salesforce_id: str | None
    details: str = ""
    status: str = "open"
    deleted: bool = False


def settled(both: Both, tracked: Tracked) -> bool:
    """Has the task's last change reached both sides?"""
    task = both.salesconnect_task(tracked.salesconnect_id)
    if tracked.salesforce_id is None:
        found = both.salesforce_tasks_for(tracked.salesconnect_id)
        if not found:
            return False
        tracked.salesforce_id = str(found[0]["Id"])
    remote = both.find_salesforce_task(tracked.salesforce_id)
    if remote is None or task["salesforce_task_id"] != tracked.salesforce_id:
        return False
    if tracked.deleted:
        return task["deleted_at"] is not None and remote["IsDeleted"] is True
    return (
        task["deleted_at"] is None
        and not remote["IsDeleted"]
        and task["details"] == tracked.details
        and (remote["Description"] or "") == tracked.details
        and task["status"] == tracked.status
        and remote["Status"] == SALESFORCE_STATUS[tracked.status]
    )


def create(both: Both, side: str, step: int) -> Tracked:
    details = f"made at step {step}"
    if side == "salesconnect":
        task = both.create_in_salesconnect(f"Stream {step}", details=details)
        return Tracked(task["id"], None, details=details)
    task_id = both.create_in_salesforce(f"Stream {step}", Description=details)
    return Tracked(both.wait_imported(task_id)["id"], task_id, details=details)


def change(both: Both, side: str, step: int, action: str, tracked: Tracked) -> None:
    assert tracked.salesforce_id is not None
    here, there = tracked.salesconnect_id, tracked.salesforce_id
    if action == "edit":
        tracked.details = f"edited at step {step} in {side}"
        if side == "salesconnect":
            both.salesconnect.update_task(here, details=tracked.details)
        else:
            both.update_in_salesforce(there, Description=tracked.details)
    elif action == "complete":
        tracked.status = "completed" if tracked.status == "open" else "open"
        if side == "salesconnect":
            both.salesconnect.update_task(here, status=tracked.status)
        else:
            both.update_in_salesforce(there, Status=SALESFORCE_STATUS[tracked.status])
    else:
        tracked.deleted = True
        if side == "salesconnect":
            both.salesconnect.delete_task(here)
        else:
            both.delete_in_salesforce(there)


def test_creates_edits_completions_and_deletes_flow_both_ways_continuously(both: Both) -> None:
    """A stream of 48 changes from both sides, one after another with no pause; each task's next
    change waits only until its own previous one has crossed (the same task edited on both
    sides at once is `test_conflicts`'s subject)."""
    chance = random.Random(6)
    tracked_tasks: list[Tracked] = []
    for step in range(48):
        side = ("salesconnect", "salesforce")[step % 2]
        live = [t for t in tracked_tasks if not t.deleted]
        action = chance.choice(["create"] * 2 + ["edit"] * 3 + ["complete"] * 2 + ["delete"])
        if action == "create" or len(live) < 3:
            tracked_tasks.append(create(both, side, step))
            continue
        tracked = chance.choice(live)
        wait_for(partial(settled, both, tracked), what=f"step {step}'s task to settle")
        change(both, side, step, action, tracked)

    for tracked in tracked_tasks:
        wait_for(partial(settled, both, tracked), what="every task to settle")
    live = [t for t in tracked_tasks if not t.deleted]
    assert len(both.live_salesconnect_tasks()) == len(live)
    assert len(both.owned_salesforce_tasks()) == len(live)
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)
