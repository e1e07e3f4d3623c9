"""SPEC.md "No echo loops": one user edit produces exactly one write on the other side and no
write back, in both directions.

Counted with the harness's `counts()`: the emulator's record writes by the bridge's client
(`Sforce-Call-Options: client=tasksync`) and by anyone else, and the Sales Connect feed's task
changes by origin (the bridge writes with `X-Sync-Origin: salesforce`), with the bridge's
link-only updates (setting `salesforce_task_id` on a task it pushed) counted apart. Each test
counts from a quiet system (the one before ended with `wait_quiet`), checks the running count
as each change arrives, and ends with `wait_quiet`, after which nothing more can be written:
so the final count is all that its changes ever caused, the pair it starts from included.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.helpers import Both, wait_quiet
from tests.support.system import RunningSystem, WriteCounts


@pytest.fixture(scope="module", autouse=True)
def quiet_at_first(system: RunningSystem) -> None:
    """The shared system at rest before the first count (the module before may have left
    something on its way)."""
    wait_quiet(system)


WRITES = (
    "salesforce_records_by_bridge",
    "salesforce_records_by_others",
    "salesconnect_changes_by_bridge",
    "salesconnect_changes_by_users",
    "salesconnect_links_by_bridge",
)


class Counter:
    """Writes since the test began (API calls, which the poller makes all the time, aside)."""

    def __init__(self, both: Both) -> None:
        self.system = both.system
        self.start = self.system.counts()
        self.start_ops = self.system.salesforce_writes()

    def now(self) -> WriteCounts:
        return self.system.counts() - self.start

    def bridge_writes_by_operation(self) -> dict[str, int]:
        ops = self.system.salesforce_writes()
        delta = {op: n - self.start_ops.get(op, 0) for op, n in ops.items()}
        return {op: n for op, n in delta.items() if n}

    def expect(self, bridge_writes: dict[str, int] | None = None, **expected: int) -> None:
        counted = self.now()
        assert {name: getattr(counted, name) for name in WRITES} == {
            **dict.fromkeys(WRITES, 0),
            **expected,
        }
        if bridge_writes is not None:
            assert self.bridge_writes_by_operation() == bridge_writes

    def expect_at_rest(self, bridge_writes: dict[str, int] | None = None, **expected: int) -> None:
        wait_quiet(self.system)
        self.expect(bridge_writes, **expected)


SALESCONNECT_EDITS: list[dict[str, Any]] = [
    {"name": "Renamed in Sales Connect"},
    {"status": "completed"},
    {"priority": "high"},
    {"due_date": "2027-01-15"},
    {"details": "a note from Sales Connect"},
    {"status": "open", "due_date": None, "details": ""},
]

SALESFORCE_EDITS: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    # (the edit, what Sales Connect then shows; None: nothing synced changed, nothing written)
    ({"Status": "Completed"}, {"status": "completed"}),
    ({"Priority": "High"}, {"priority": "high"}),
    ({"ActivityDate": "2027-01-15"}, {"due_date": "2027-01-15"}),
    ({"Description": "a note from Salesforce"}, {"details": "a note from Salesforce"}),
    ({"Subject": "Renamed in Salesforce"}, None),  # a Salesforce rename does not flow back
    ({"Status": "In Progress"}, None),  # not synced
    ({"Status": "Not Started", "ActivityDate": None}, {"status": "open", "due_date": None}),
]


def test_a_sales_connect_create_makes_one_salesforce_create_plus_its_link_and_nothing_back(
    both: Both,
) -> None:
    counter = Counter(both)

    task = both.create_in_salesconnect("Created in Sales Connect", details="once")
    pushed = both.wait_pushed(task["id"])
    both.wait_salesconnect(task["id"], salesforce_task_id=pushed["Id"])

    # The link: the bridge sets salesforce_task_id on the task it pushed. It is a Sales Connect
    # write by the bridge, but no user-visible change, and it is never sent to Salesforce.
    counter.expect_at_rest(
        {"create": 1},
        salesforce_records_by_bridge=1,
        salesconnect_changes_by_users=1,
        salesconnect_links_by_bridge=1,
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_salesforce_create_makes_one_sales_connect_create_and_nothing_back(both: Both) -> None:
    counter = Counter(both)

    both.pair_from_salesforce("Created in Salesforce", Description="once")

    counter.expect_at_rest(
        {},
        salesforce_records_by_others=1,
        salesconnect_changes_by_bridge=1,
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_each_sales_connect_edit_makes_exactly_one_salesforce_write_and_nothing_back(
    both: Both,
) -> None:
    counter = Counter(both)
    task, task_id = both.pair_from_salesforce("Edited in Sales Connect")

    for number, edit in enumerate(SALESCONNECT_EDITS, start=1):
        both.salesconnect.update_task(task["id"], **edit)
        expected = {
            "name": ("Subject", edit.get("name")),
            "status": ("Status", {"open": "Not Started", "completed": "Completed"}),
            "priority": ("Priority", {"normal": "Normal", "high": "High"}),
            "due_date": ("ActivityDate", None),
            "details": ("Description", None),
        }
        wanted: dict[str, Any] = {}
        for name, value in edit.items():
            field, table = expected[name]
            if isinstance(table, dict):
                wanted[field] = table[value]
            elif name == "details":
                wanted[field] = value or None
            else:
                wanted[field] = value
        both.wait_salesforce(task_id, **wanted)
        assert counter.now().salesforce_records_by_bridge == number

    counter.expect_at_rest(
        {"update": len(SALESCONNECT_EDITS)},
        salesforce_records_by_bridge=len(SALESCONNECT_EDITS),
        salesconnect_changes_by_users=len(SALESCONNECT_EDITS),
        # The pair: made in Salesforce by the user, imported by the bridge.
        salesforce_records_by_others=1,
        salesconnect_changes_by_bridge=1,
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_each_salesforce_edit_makes_exactly_one_sales_connect_write_and_nothing_back(
    both: Both,
) -> None:
    counter = Counter(both)
    task, task_id = both.pair_from_salesconnect("Edited in Salesforce")

    writes = 1  # the pair's link
    for edit, shown in SALESFORCE_EDITS:
        both.update_in_salesforce(task_id, **edit)
        if shown is None:
            continue
        writes += 1
        both.wait_salesconnect(task["id"], **shown)
        counted = counter.now()
        assert (
            counted.salesconnect_changes_by_bridge + counted.salesconnect_links_by_bridge == writes
        )

    counter.expect_at_rest(
        {"create": 1},
        salesforce_records_by_others=len(SALESFORCE_EDITS),
        salesconnect_changes_by_bridge=writes - 1,
        # The pair: made in Sales Connect, pushed and linked by the bridge.
        salesconnect_changes_by_users=1,
        salesforce_records_by_bridge=1,
        salesconnect_links_by_bridge=1,
    )
    both.system.wait_until_consistent(both.user_id)


def test_a_sales_connect_delete_and_restore_each_make_one_salesforce_write_and_nothing_back(
    both: Both,
) -> None:
    counter = Counter(both)
    task, task_id = both.pair_from_salesforce("Deleted and restored in Sales Connect")

    both.salesconnect.delete_task(task["id"])
    both.wait_salesforce(task_id, IsDeleted=True)
    assert counter.now().salesforce_records_by_bridge == 1
    both.salesconnect.restore_task(task["id"])
    back = both.wait_pushed(task["id"])
    both.wait_salesconnect(task["id"], salesforce_task_id=back["Id"])

    # The REST API cannot undelete: the restore makes a new Task, and the bridge links the
    # restored task to it (a link-only write).
    counter.expect_at_rest(
        {"delete": 1, "create": 1} if back["Id"] != task_id else {"delete": 1, "undelete": 1},
        salesforce_records_by_bridge=2,
        salesconnect_changes_by_users=2,
        salesconnect_links_by_bridge=0 if back["Id"] == task_id else 1,
        # The pair: made in Salesforce by the user, imported by the bridge.
        salesforce_records_by_others=1,
        salesconnect_changes_by_bridge=1,
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_salesforce_delete_and_undelete_each_make_one_sales_connect_write_and_nothing_back(
    both: Both,
) -> None:
    counter = Counter(both)
    task, task_id = both.pair_from_salesconnect("Deleted and undeleted in Salesforce")

    both.delete_in_salesforce(task_id)
    both.wait_salesconnect(task["id"], deleted=True)
    assert counter.now().salesconnect_changes_by_bridge == 1
    both.system.admin.undelete(task_id, user_id=both.owner_id)
    both.wait_salesconnect(task["id"], deleted=False)

    counter.expect_at_rest(
        {"create": 1},
        salesforce_records_by_others=2,
        salesconnect_changes_by_bridge=2,
        # The pair: made in Sales Connect, pushed and linked by the bridge.
        salesconnect_changes_by_users=1,
        salesforce_records_by_bridge=1,
        salesconnect_links_by_bridge=1,
    )
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)
