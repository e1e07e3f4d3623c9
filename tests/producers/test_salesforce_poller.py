"""`tasksync producer salesforce` against the emulator (no notifications), a Sales Connect
service, RabbitMQ and a ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from bridge.ledger import KnownRecord, Ledger, TaskLink
from bridge.messaging import Direction
from bridge.producers.deleted import earliest_start
from bridge.producers.salesforce import DELETED_CURSOR, POLL_CURSOR, PollCursor
from bridge.sync.conventions import (
    create_intent_key,
    salesforce_known_values,
    salesforce_message_id,
)
from schemas.fields import format_utc_stamp, parse_utc_stamp
from schemas.task_change import Op, Origin, TaskChange, TaskPriority, TaskStatus
from tests.producers.support import (
    TOPOLOGY_ARGS,
    BridgeProcess,
    PublishedMessages,
    salesforce_args,
)
from tests.support.emulator import EmulatorProcess, EmulatorUser
from tests.support.rabbitmq import BrokerVhost
from tests.support.salesconnect import RunningSalesConnect, SalesConnectClient
from tests.support.waiting import wait_for


def task_of(change: TaskChange) -> str | None:
    return change.record.salesforce_task_id


@dataclass
class PollWorld:
    emulator: EmulatorProcess
    users: SalesConnectClient
    published: PublishedMessages
    ledger_url: str
    rep: Salesforce
    rep_user: EmulatorUser
    user_id: str
    workdir: Path
    salesconnect_url: str
    amqp_url: str
    processes: list[BridgeProcess]

    def poller(self, *extra: str) -> BridgeProcess:
        process = BridgeProcess(
            self.workdir,
            "producer-salesforce",
            [
                "producer",
                "salesforce",
                "--salesconnect-url",
                self.salesconnect_url,
                "--amqp-url",
                self.amqp_url,
                "--ledger-url",
                self.ledger_url,
                "--data-dir",
                str(self.workdir),
                "--interval",
                "0.3",
                *TOPOLOGY_ARGS,
                *salesforce_args(self.emulator),
                *extra,
            ],
        )
        self.processes.append(process)
        return process

    def create(self, subject: str, **fields: Any) -> str:
        body = {"Subject": subject, "OwnerId": self.rep_user.id, **fields}
        return str(self.rep.Task.create(body)["id"])

    def ledger(self) -> Ledger:
        return Ledger.open(self.ledger_url)

    def polls(self) -> float:
        """When the poller last recorded a poll (its cursor's update time)."""
        with self.ledger() as ledger:
            cursor = ledger.cursor(POLL_CURSOR)
        return cursor.updated_at.timestamp() if cursor else 0.0

    def wait_for_polls(self, count: int = 3) -> None:
        """Let `count` more polls happen (each records its position, changed or not)."""
        for _ in range(count):
            before = self.polls()
            wait_for(lambda before=before: self.polls() > before, timeout=15, what="a poll")

    def first_sync(self) -> dict[str, Any]:
        state: dict[str, Any] = self.users.settings(self.user_id)["first_sync"]
        return state


@pytest.fixture
def world(
    emulator: EmulatorProcess,
    salesconnect_service: RunningSalesConnect,
    broker: BrokerVhost,
    tmp_path: Path,
) -> Iterator[PollWorld]:
    tag = uuid.uuid4().hex[:8]
    rep_user = emulator.admin.create_user(f"rep-{tag}@tasksync.example", "Rep-Passw0rd", "Rep")
    users = salesconnect_service.client()
    user = users.create_user(salesforce_user_id=rep_user.id)
    published = PublishedMessages(broker, Direction.TO_SALESCONNECT)
    world = PollWorld(
        emulator=emulator,
        users=users,
        published=published,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        rep=emulator.salesforce(rep_user, client="rep"),
        rep_user=rep_user,
        user_id=user["id"],
        workdir=tmp_path,
        salesconnect_url=salesconnect_service.url,
        amqp_url=broker.amqp_url,
        processes=[],
    )
    yield world
    for process in world.processes:
        process.kill()
    users.update_settings(user["id"], task_sync="off")  # later tests' pollers skip this user
    published.close()
    users.close()


def ago(**delta: float) -> str:
    return format_utc_stamp(datetime.now(UTC) - timedelta(**delta))


def test_first_sync_imports_the_last_24_hours_and_a_re_enable_applies_recent_deletes(
    world: PollWorld,
) -> None:
    admin = world.emulator.admin
    recent = world.create("Recent", Status="In Progress", Priority="High")
    day_old = world.create("Twenty-three hours old")
    admin.backdate(day_old, LastModifiedDate=ago(hours=23), SystemModstamp=ago(hours=23))
    too_old = world.create("Two days old")
    admin.backdate(
        too_old, CreatedDate=ago(days=2), LastModifiedDate=ago(days=2), SystemModstamp=ago(days=2)
    )
    world.create("A logged email", TaskSubtype="Email")
    world.emulator.salesforce("sales_rep").Task.create({"Subject": "Someone else's"})
    world.users.update_settings(world.user_id, task_sync="on")
    enabled = world.users.settings(world.user_id)

    with world.poller():
        done = wait_for(
            lambda: (s := world.first_sync())["state"] == "done" and s,
            timeout=20,
            what="the first sync to be done",
        )
        imports = world.published.wait_until(lambda m: len(m) >= 2, what="the imports")
        assert {m.change.record.salesforce_task_id for m in imports} == {recent, day_old}
        for message in imports:
            change = message.change
            assert change.op is Op.UPSERT and change.origin is Origin.SALESFORCE
            assert change.record.salesconnect_task_id is None  # an import
            assert change.owner.salesconnect_user_id == world.user_id
            assert change.owner.salesforce_user_id == world.rep_user.id
        by_task = {m.change.record.salesforce_task_id: m.change for m in imports}
        assert by_task[recent].changed.name == "Recent"
        assert "status" not in by_task[recent].changed.present()  # In Progress is not synced
        assert by_task[recent].changed.priority is TaskPriority.HIGH
        assert done["started_at"] and done["finished_at"] and done["error"] is None
        with world.ledger() as ledger:
            cursor = ledger.cursor(f"first-sync:{world.user_id}")
            assert cursor is not None and cursor.value == enabled["last_enabled_at"]
            # The applier would have created and linked the Sales Connect tasks (an unlinked one
            # is imported again by the next first sync: its import may never have been applied).
            ledger.link(
                TaskLink("tsk_recent0000000000000000000", recent, world.user_id, world.rep_user.id)
            )
            ledger.link(
                TaskLink("tsk_dayold0000000000000000000", day_old, world.user_id, world.rep_user.id)
            )

        world.users.update_settings(world.user_id, task_sync="off")
        world.rep.Task.delete(recent)
        world.wait_for_polls(3)
        assert len(world.published.collect()) == 2, "nothing is published while sync is off"

        world.users.update_settings(world.user_id, task_sync="on")
        wait_for(
            lambda: (
                (s := world.first_sync())["state"] == "done"
                and s["finished_at"] > done["finished_at"]
            ),
            timeout=20,
            what="the second first sync",
        )
        messages = world.published.wait_until(lambda m: len(m) >= 3, what="the delete")
        delete = messages[2].change
        assert (delete.op, delete.record.salesforce_task_id) == (Op.DELETE, recent)
        assert delete.record.salesconnect_task_id == "tsk_recent0000000000000000000"
        world.wait_for_polls(2)
        assert len(world.published.collect()) == 3


def test_the_first_sync_imports_a_task_seen_while_its_owner_did_not_sync(
    world: PollWorld,
) -> None:
    """An observer whose list of synced users was a moment old published a Task while its owner
    did not sync (the worker skipped it) and remembered its values: turning sync on still
    imports it, under a message id the skipped one did not use."""
    task = world.create("Seen too early", Priority="High")
    row = world.rep.Task.get(task)
    with world.ledger() as ledger:
        ledger.record_known(
            [
                KnownRecord(
                    Origin.SALESFORCE,
                    task,
                    {**salesforce_known_values(row), "IsDeleted": False},
                    parse_utc_stamp(row["LastModifiedDate"]),
                )
            ]
        )
    world.users.update_settings(world.user_id, task_sync="on")
    with world.poller():
        (imported,) = world.published.wait_for_task(task_of, task)
    assert imported.change.op is Op.UPSERT
    assert imported.change.changed.name == "Seen too early"
    assert imported.change.changed.priority is TaskPriority.HIGH
    skipped_id = salesforce_message_id(task, "upsert", parse_utc_stamp(row["SystemModstamp"]))
    assert imported.change.message_id != skipped_id


def test_polls_changes_without_notifications_and_publishes_each_once(world: PollWorld) -> None:
    world.users.update_settings(world.user_id, task_sync="on")
    with world.poller("--overlap", "30", "--settle", "0.5"):
        task = world.create("Call Ann", ActivityDate="2026-12-03", Description="Renewal")
        (created,) = world.published.wait_for_task(task_of, task)
        assert created.change.changed.present() == {
            "name": "Call Ann",
            "status": TaskStatus.OPEN,
            "priority": TaskPriority.NORMAL,
            "due_date": created.change.changed.due_date,
            "details": "Renewal",
        }
        assert str(created.change.changed.due_date) == "2026-12-03"

        world.rep.Task.update(task, {"Status": "Completed", "Subject": "Renamed in Salesforce"})
        edit = world.published.wait_for_task(task_of, task, count=2)[1].change
        assert edit.changed.present() == {"status": TaskStatus.COMPLETED}  # no rename back
        current = world.rep.Task.get(task)
        assert edit.message_id == salesforce_message_id(
            task, "upsert", parse_utc_stamp(current["SystemModstamp"])
        )
        assert edit.actor == world.rep_user.id

        world.rep.Task.update(task, {"Status": "In Progress"})
        world.wait_for_polls(3)
        world.rep.Task.update(task, {"Status": "Not Started"})
        back = world.published.wait_for_task(task_of, task, count=3)[2].change
        assert back.changed.present() == {"status": TaskStatus.OPEN}

        # The bridge's own write: its values are remembered just after it lands.
        bridge = world.emulator.salesforce("integration", client="tasksync")
        bridge.Task.update(task, {"Description": "Written by the bridge"})
        with world.ledger() as ledger:
            ledger.remember_writes(
                Origin.SALESFORCE, task, {"Description": "Written by the bridge"}
            )
        world.wait_for_polls(4)  # every row is read again (overlap 30 s): nothing new
        assert len(world.published.collect()) == 3, [m.change for m in world.published.messages]

        world.rep.Task.delete(task)
        delete = world.published.wait_for_task(task_of, task, count=4)[3].change
        assert delete.op is Op.DELETE and delete.changed.is_empty()
        world.emulator.admin.undelete(task, world.rep_user.id)
        undelete = world.published.wait_for_task(task_of, task, count=5)[4].change
        assert undelete.op is Op.UNDELETE
        assert undelete.changed.present() == {
            "status": TaskStatus.OPEN,
            "priority": TaskPriority.NORMAL,
            "due_date": created.change.changed.due_date,
            "details": "Written by the bridge",
        }
        world.wait_for_polls(2)
        assert len(world.published.collect()) == 5


def test_a_create_the_bridge_never_recorded_is_known_by_its_intent(world: PollWorld) -> None:
    """The to-salesforce applier killed between Salesforce creating a Task and recording its
    values: the poller takes the values the applier meant to create as known, so the create is
    not published back; a person's later edit still is, alone."""
    world.users.update_settings(world.user_id, task_sync="on")
    salesconnect_id = f"tsk_{uuid.uuid4().hex}"
    values = {
        "Subject": "Created by the bridge",
        "Status": "Not Started",
        "Priority": "Normal",
        "ActivityDate": None,
        "Description": None,
        "IsDeleted": False,
    }
    with world.ledger() as ledger:
        ledger.record_known(
            [KnownRecord(Origin.SALESFORCE, create_intent_key(salesconnect_id), values)]
        )
    bridge = world.emulator.salesforce("integration", client="tasksync")
    task = str(
        bridge.Task.upsert(
            f"Sales_Connect_Id__c/{salesconnect_id}",
            {"Subject": "Created by the bridge", "OwnerId": world.rep_user.id},
        )
        and bridge.query(f"SELECT Id FROM Task WHERE Sales_Connect_Id__c = '{salesconnect_id}'")[
            "records"
        ][0]["Id"]
    )
    with world.poller("--overlap", "30", "--settle", "0.5"):
        world.wait_for_polls(3)
        assert world.published.collect() == []
        world.rep.Task.update(task, {"Status": "Completed"})
        (edit,) = world.published.wait_for_task(task_of, task)
        assert edit.change.changed.present() == {"status": TaskStatus.COMPLETED}
        assert edit.change.record.salesconnect_task_id == salesconnect_id


def test_rows_sharing_the_cursor_stamp_or_committed_late_are_not_skipped(
    world: PollWorld,
) -> None:
    world.users.update_settings(world.user_id, task_sync="on")
    admin = world.emulator.admin
    poller = world.poller("--overlap", "0", "--settle", "0")
    with poller:
        first = world.create("First")
        world.published.wait_for_task(task_of, first)
        world.wait_for_polls(1)
    with world.ledger() as ledger:
        stored = ledger.cursor(POLL_CURSOR)
    assert stored is not None
    cursor = PollCursor.decode(stored.value)
    assert cursor.task_id == first

    tie = world.create("Same SystemModstamp as the cursor")
    admin.backdate(
        tie,
        LastModifiedDate=format_utc_stamp(cursor.stamp),
        SystemModstamp=format_utc_stamp(cursor.stamp),
    )
    with poller:  # no overlap: only `SystemModstamp >= cursor` finds it
        world.published.wait_for_task(task_of, tie)

    late = world.create("Committed late")
    late_stamp = format_utc_stamp(cursor.stamp - timedelta(seconds=2))
    admin.backdate(late, LastModifiedDate=late_stamp, SystemModstamp=late_stamp)
    with world.poller("--overlap", "5", "--settle", "0"):
        (message,) = world.published.wait_for_task(task_of, late)
        assert message.change.occurred_at == parse_utc_stamp(late_stamp)
        world.wait_for_polls(2)
    assert [m.change.record.salesforce_task_id for m in world.published.collect()] == [
        first,
        tie,
        late,
    ]


def test_get_deleted_publishes_deletes_of_tasks_purged_before_any_poll_saw_them(
    world: PollWorld,
) -> None:
    # getDeleted reaches back to the start of the day 15 days ago; a Task purged now was deleted
    # more than 15 days ago, so it can be listed only once today is more than a minute old.
    wait_for(
        lambda: (
            datetime.now(UTC) - earliest_start(datetime.now(UTC)) > timedelta(days=15, seconds=20)
        ),
        timeout=90,
        what="the day to be a minute old (UTC)",
    )
    admin = world.emulator.admin
    task = world.create("Deleted long ago")
    admin.backdate(
        task, CreatedDate=ago(days=16), LastModifiedDate=ago(days=16), SystemModstamp=ago(days=16)
    )
    world.rep.Task.delete(task)
    deleted_at = ago(days=15, seconds=10)
    admin.backdate(task, DeletedDate=deleted_at)
    assert admin.purge_recycle_bin() == 1
    world.users.update_settings(world.user_id, task_sync="on")
    start = earliest_start(datetime.now(UTC))
    with world.ledger() as ledger:
        ledger.link(
            TaskLink("tsk_purged0000000000000000000", task, world.user_id, world.rep_user.id)
        )
        ledger.advance_cursor(DELETED_CURSOR, expected=None, value=format_utc_stamp(start))

    with world.poller():
        (message,) = world.published.wait_for_task(task_of, task)
        world.wait_for_polls(2)
    change = message.change
    assert change.op is Op.DELETE
    assert change.record.salesconnect_task_id == "tsk_purged0000000000000000000"
    assert change.owner.salesconnect_user_id == world.user_id
    assert change.occurred_at == parse_utc_stamp(deleted_at)
    with world.ledger() as ledger:
        covered = ledger.cursor(DELETED_CURSOR)
    assert covered is not None and parse_utc_stamp(covered.value) > start
    assert len(world.published.collect()) == 1


def test_a_wrong_salesforce_password_is_reported_plainly_and_retried(world: PollWorld) -> None:
    world.users.update_settings(world.user_id, task_sync="on")
    poller = world.poller("--salesforce-password", "wrong")
    poller.launch()
    wait_for(
        lambda: poller.log().count("invalid_grant") >= 2,
        timeout=20,
        what="two failed logins in the log",
    )
    assert poller.stop() == 0
    assert "Traceback" not in poller.log()
    assert not poller.ready_file.exists()
