"""SPEC.md "Nothing is lost" and "Nothing is doubled": a worker killed with SIGKILL in the middle
of a stream, Salesforce refusing every call for a while, every notification dropped (the poller
is the backstop), and messages delivered or replayed again, even after the ledger forgot them.

This module's system is killed, stopped and reconfigured by its tests; each puts it back as it
found it before the next one starts.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.ledger import Ledger
from bridge.producers.salesconnect import CURSOR_NAME as FEED_CURSOR
from tests.e2e.helpers import Both, wait_quiet
from tests.support.system import RunningSystem
from tests.support.waiting import wait_for
from workers.up import tasksync_command

OWN_SYSTEM = True
STREAM = 40


@pytest.fixture
def ledger(system: RunningSystem) -> Iterator[Ledger]:
    with Ledger.open(system.ledger_url, create_schema=False) as opened:
        yield opened


def pushed_count(both: Both) -> int:
    return len(both.owned_salesforce_tasks())


def each_exactly_once(both: Both, count: int) -> bool:
    """`count` live tasks on each side, paired one to one (a task links its Task, or a Task
    names its task), none without its partner."""
    tasks = both.live_salesconnect_tasks()
    remote = both.owned_salesforce_tasks()
    if not len(tasks) == len(remote) == count:
        return False
    by_id = {str(r["Id"]): r for r in remote}
    by_task = {str(r["Sales_Connect_Id__c"]): r for r in remote if r["Sales_Connect_Id__c"]}
    partners = [by_id.get(str(t["salesforce_task_id"])) or by_task.get(t["id"]) for t in tasks]
    return all(partners) and len({id(p) for p in partners}) == count


def assert_each_exactly_once(both: Both, count: int, timeout: float = 10.0) -> None:
    wait_for(
        lambda: each_exactly_once(both, count),
        timeout=timeout,
        what=f"{count} tasks on each side, paired one to one",
    )
    # The bridge links a task to its Task just after writing the Task: wait for the links too.
    wait_for(
        lambda: all(t["salesforce_task_id"] for t in both.live_salesconnect_tasks()),
        timeout=timeout,
        what="every task to be linked to its Task",
    )
    assert each_exactly_once(both, count)


def test_the_to_salesforce_worker_killed_mid_stream_loses_nothing_and_doubles_nothing(
    both: Both,
) -> None:
    """SIGKILL while the stream flows; restarted at once. Tasks in the batch it held stay leased
    to the dead process until the lease runs out (30 s, bridge/messaging), so the last of them
    may take that long: the deadline allows for it."""
    system = both.system
    names = [f"Stream {n:02d}" for n in range(STREAM)]
    for name in names[: STREAM // 2]:
        both.create_in_salesconnect(name)
    wait_for(lambda: pushed_count(both) >= 5, what="the stream to be flowing")

    system.kill("to-salesforce")
    for name in names[STREAM // 2 :]:
        both.create_in_salesconnect(name)
    system.start_component("to-salesforce")

    assert_each_exactly_once(both, STREAM, timeout=60)
    system.wait_until_consistent(both.user_id, strict_subjects=True)
    assert sorted(r["Subject"] for r in both.owned_salesforce_tasks()) == names


def test_the_sales_connect_producer_killed_mid_stream_loses_nothing_and_doubles_nothing(
    both: Both,
) -> None:
    system = both.system
    for n in range(STREAM // 2):
        both.create_in_salesconnect(f"Stream {n:02d}")
    wait_for(lambda: pushed_count(both) >= 1, what="the stream to be flowing")

    system.kill("salesconnect-producer")
    for n in range(STREAM // 2, STREAM):
        both.create_in_salesconnect(f"Stream {n:02d}")
    system.start_component("salesconnect-producer")

    assert_each_exactly_once(both, STREAM, timeout=30)
    system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_changes_made_while_salesforce_refuses_every_call_arrive_once_it_is_back(
    both: Both,
) -> None:
    system = both.system
    task, task_id = both.pair_from_salesconnect("Edited while Salesforce is down")

    def refused() -> int:
        by_client = system.salesforce_stats().get("by_client", {})
        return int(by_client.get("tasksync", {}).get("by_status", {}).get("503", 0))

    before = refused()
    system.admin.set_faults(server_unavailable_share=1.0)
    try:
        created = [both.create_in_salesconnect(f"Made while down {n}") for n in range(3)]
        both.salesconnect.update_task(task["id"], details="edited while down")
        wait_for(lambda: refused() >= before + 4, what="the bridge to meet the outage")
    finally:
        system.admin.set_faults(server_unavailable_share=0.0)

    both.wait_salesforce(task_id, Description="edited while down")
    for made in created:
        both.wait_pushed(made["id"])
    system.wait_until_consistent(both.user_id, strict_subjects=True)
    assert_each_exactly_once(both, 4)


def test_with_every_notification_dropped_the_poller_carries_every_salesforce_change(
    both: Both,
) -> None:
    system = both.system
    counters = system.admin.notifications()
    system.admin.set_faults(notification_drop_share=1.0)
    try:
        created = both.create_in_salesforce("Made without notifications")
        edited, edited_id = both.pair_from_salesconnect("Edited without notifications")
        deleted, deleted_id = both.pair_from_salesconnect("Deleted without notifications")
        both.update_in_salesforce(edited_id, Status="Completed", Description="polled")
        both.delete_in_salesforce(deleted_id)

        imported = both.wait_imported(created)
        both.wait_salesconnect(edited["id"], status="completed", details="polled")
        both.wait_salesconnect(deleted["id"], deleted=True)
        system.admin.undelete(deleted_id, user_id=both.owner_id)
        both.wait_salesconnect(deleted["id"], deleted=False)
    finally:
        system.admin.set_faults(notification_drop_share=0.0)

    assert imported["name"] == "Made without notifications"
    after = system.admin.notifications()
    assert after["notifications_sent"] == counters["notifications_sent"]
    # The user's create, edit, delete and undelete; the bridge's own writes are never notified.
    assert after["notifications_dropped"] == counters["notifications_dropped"] + 4
    system.wait_until_consistent(both.user_id, strict_subjects=True)


# -- delivered again ----------------------------------------------------------------------------


def replay_feed_from(system: RunningSystem, ledger: Ledger, seq: int) -> None:
    """Move the Sales Connect producer's cursor back and let it publish everything after `seq`
    again (same message ids, as after a crash before the cursor moved)."""
    system.stop_component("salesconnect-producer")
    try:
        cursor = ledger.cursor(FEED_CURSOR)
        assert cursor is not None
        assert ledger.advance_cursor(FEED_CURSOR, expected=cursor.value, value=str(seq))
    finally:
        system.start_component("salesconnect-producer")


def publish(system: RunningSystem, workdir: Path, message: dict[str, Any]) -> None:
    path = workdir / f"{message['message_id']}.json"
    path.write_text(json.dumps(message))
    subprocess.run(
        [*tasksync_command(), "publish", "--file", str(path)],
        env=system.bridge_environment(),
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_sales_connect_changes_replayed_never_create_a_second_salesforce_task(
    both: Both, ledger: Ledger
) -> None:
    """The producer publishes the task's create and edit again, and the workers' ledger has lost
    both the processed ids and the link (as after restoring an old backup): nothing but the
    create's upsert on Sales_Connect_Id__c stands between the replay and a second Task."""
    system = both.system
    head = system.salesconnect.head_seq()
    task, task_id = both.pair_from_salesconnect("Published twice", details="first")
    both.salesconnect.update_task(task["id"], details="second")
    both.wait_salesforce(task_id, Description="second")
    wait_quiet(system, salesforce_poll=False)

    ledger.forget_processed(datetime.now(UTC))
    ledger.unlink(task["id"])
    replay_feed_from(system, ledger, head)
    wait_quiet(system, salesforce_poll=False)

    assert [r["Id"] for r in both.salesforce_tasks_for(task["id"])] == [task_id]
    assert both.salesforce_task(task_id)["Description"] == "second"
    assert both.salesconnect_task(task["id"])["salesforce_task_id"] == task_id
    assert_each_exactly_once(both, 1)
    system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_salesforce_changes_delivered_again_never_create_a_second_sales_connect_task(
    both: Both, ledger: Ledger, tmp_path: Path
) -> None:
    system = both.system
    task, task_id = both.pair_from_salesforce("Delivered twice", Description="as made")
    stamp = both.salesforce_task(task_id)["SystemModstamp"]
    message: dict[str, Any] = {
        "schema_version": 1,
        "message_id": str(uuid.uuid4()),
        "occurred_at": stamp,
        "origin": "salesforce",
        "op": "upsert",
        "actor": both.owner_id,
        "owner": {"salesforce_user_id": both.owner_id, "salesconnect_user_id": both.user_id},
        "record": {"salesforce_task_id": task_id},
        "changed": {
            "name": "Delivered twice",
            "status": "open",
            "priority": "normal",
            "due_date": None,
            "details": "as made",
        },
    }
    writes = len(system.salesconnect_changes(origin="salesforce", user_id=both.user_id))

    # The same import twice, then once more under a new id after the ledger lost the link.
    publish(system, tmp_path, message)
    publish(system, tmp_path, message)
    ledger.unlink(task["id"])
    publish(system, tmp_path, {**message, "message_id": str(uuid.uuid4())})
    wait_quiet(system, salesforce_poll=False)

    assert [t["id"] for t in both.linked_salesconnect_tasks(task_id)] == [task["id"]]
    assert len(system.salesconnect_changes(origin="salesforce", user_id=both.user_id)) == writes
    assert_each_exactly_once(both, 1)
    system.wait_until_consistent(both.user_id, strict_subjects=True)
