"""`tasksync producer salesconnect` against a real Sales Connect service and RabbitMQ."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.ledger import Ledger
from bridge.messaging import Direction
from bridge.producers.salesconnect import CURSOR_NAME
from bridge.sync.conventions import salesconnect_message_id
from schemas.fields import parse_utc_stamp
from schemas.task_change import Op, Origin, TaskChange, TaskPriority, TaskStatus
from tests.producers.support import (
    TOPOLOGY_ARGS,
    BridgeProcess,
    PublishedMessages,
    fake_salesforce_user_id,
)
from tests.support.rabbitmq import BrokerVhost, free_port
from tests.support.salesconnect import RunningSalesConnect, SalesConnectClient
from tests.support.waiting import wait_for


@dataclass
class FeedWorld:
    users: SalesConnectClient
    bridge: SalesConnectClient
    published: PublishedMessages
    ledger_url: str
    producer: BridgeProcess

    def user(self, *, sync: bool = True, connected: bool = True) -> str:
        created = self.users.create_user(
            salesforce_user_id=fake_salesforce_user_id() if connected else None
        )
        if sync:
            self.users.update_settings(created["id"], task_sync="on")
        return created["id"]

    def seq_of(self, task_id: str, op: str) -> list[int]:
        return [
            change["seq"]
            for change in self.users.all_changes()
            if change["task_id"] == task_id and change["op"] == op
        ]


def task_of(change: TaskChange) -> str | None:
    return change.record.salesconnect_task_id


@pytest.fixture
def world(
    salesconnect_service: RunningSalesConnect, broker: BrokerVhost, tmp_path: Path
) -> Iterator[FeedWorld]:
    users = salesconnect_service.client()
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    # Start after everything already in the feed (other tests' users), as a producer deployed
    # with an existing service would be told to.
    with Ledger.open(ledger_url) as ledger:
        ledger.advance_cursor(CURSOR_NAME, expected=None, value=str(users.head_seq()))
    producer = BridgeProcess(
        tmp_path,
        "producer-salesconnect",
        [
            "producer",
            "salesconnect",
            "--salesconnect-url",
            salesconnect_service.url,
            "--amqp-url",
            broker.amqp_url,
            "--ledger-url",
            ledger_url,
            "--data-dir",
            str(tmp_path),
            # Longer than BridgeProcess.stop waits: SIGTERM must end a long-poll at once.
            "--wait",
            "25",
            *TOPOLOGY_ARGS,
        ],
    )
    world_published = PublishedMessages(broker, Direction.TO_SALESFORCE)
    yield FeedWorld(
        users=users,
        bridge=users.as_bridge(),
        published=world_published,
        ledger_url=ledger_url,
        producer=producer,
    )
    producer.stop()
    world_published.close()
    users.close()


def test_publishes_synced_users_task_changes_and_nothing_else(world: FeedWorld) -> None:
    users = world.users
    alice = world.user(sync=False)
    before = users.create_task(alice, "Existed before sync", "2026-12-01")
    linked_before = users.create_task(alice, "Existed, then linked", None)
    users.update_settings(alice, task_sync="on")
    bob = world.user(sync=False)
    carol = world.user(connected=False)
    world.producer.start()

    created = users.create_task(alice, "Call Ann", "2026-12-03", details="About the renewal")
    edited = users.update_task(created["id"], status="completed", priority="high")
    users.update_task(before["id"], name="Renamed, still never pushed")
    users.create_task(bob, "Bob's task (sync off)", None)
    users.create_task(carol, "Carol's task (not connected)", None)
    world.bridge.update_task(created["id"], details="Written by the bridge")
    world.bridge.update_task(linked_before["id"], salesforce_task_id="00T5E0000000001AAA")
    users.update_task(linked_before["id"], due_date="2026-12-24")
    users.delete_task(created["id"])
    restored = users.restore_task(created["id"])
    sentinel = users.create_task(alice, "Sentinel", None)

    messages = world.published.wait_for_task(task_of, sentinel["id"])
    messages = world.published.collect()
    got = [(m.change.record.salesconnect_task_id, m.change.op) for m in messages]
    assert got == [
        (created["id"], Op.UPSERT),
        (created["id"], Op.UPSERT),
        (linked_before["id"], Op.UPSERT),
        (created["id"], Op.DELETE),
        (created["id"], Op.UNDELETE),
        (sentinel["id"], Op.UPSERT),
    ], world.producer.log()

    create, edit, linked_edit, delete, undelete, _ = (m.change for m in messages)
    assert create.changed.present() == {
        "name": "Call Ann",
        "status": TaskStatus.OPEN,
        "priority": TaskPriority.NORMAL,
        "due_date": create.changed.due_date,
        "details": "About the renewal",
    }
    assert str(create.changed.due_date) == "2026-12-03"
    assert set(edit.changed.present()) == {"status", "priority"}
    assert edit.occurred_at == parse_utc_stamp(edited["updated_at"])
    assert linked_edit.record.salesforce_task_id == "00T5E0000000001AAA"
    assert set(linked_edit.changed.present()) == {"due_date"}
    assert delete.changed.is_empty()
    assert set(undelete.changed.present()) == {"name", "status", "priority", "due_date", "details"}
    assert undelete.occurred_at == parse_utc_stamp(restored["updated_at"])
    for message in messages:
        change = message.change
        assert change.origin is Origin.SALESCONNECT
        assert change.owner.salesconnect_user_id == alice
        assert change.owner.salesforce_user_id == users.get_user(alice)["salesforce_user_id"]
        assert message.routing_key == f"{change.op.value}.{alice}"
        assert message.exchange == "tasksync.salesconnect.changes"
        assert message.message_id == str(change.message_id)
        assert change.trace_id == change.message_id.hex
    assert create.message_id == salesconnect_message_id(
        world.seq_of(created["id"], "task_created")[0]
    )

    # Published values are known afterwards, for the appliers' "changed at the target" check.
    with Ledger.open(world.ledger_url) as ledger:
        assert ledger.unchanged_fields(
            Origin.SALESCONNECT, sentinel["id"], {"name": "Sentinel", "due_date": None}
        ) == {"name", "due_date"}
        cursor = ledger.cursor(CURSOR_NAME)
    assert (
        cursor is not None and int(cursor.value) >= world.seq_of(sentinel["id"], "task_created")[0]
    )


def test_the_bridges_own_writes_become_known_without_being_published(world: FeedWorld) -> None:
    """A worker killed between its write and recording it leaves the value unknown; the feed's
    echo entry makes it known, so later changes to that field do not wait forever."""
    users = world.users
    alice = world.user()
    world.producer.start()
    created = users.create_task(alice, "Call Ann", None, priority="high")
    world.bridge.update_task(created["id"], priority="normal")
    sentinel = users.create_task(alice, "Sentinel", None)
    world.published.wait_for_task(task_of, sentinel["id"])
    messages = world.published.collect()
    assert [m.change.record.salesconnect_task_id for m in messages].count(created["id"]) == 1
    with Ledger.open(world.ledger_url) as ledger:
        assert ledger.unchanged_fields(
            Origin.SALESCONNECT, created["id"], {"priority": "normal", "name": "Call Ann"}
        ) == {"priority", "name"}


def write_tasks(users: SalesConnectClient, user_id: str, count: int) -> list[str]:
    return [users.create_task(user_id, f"Task {n}", None)["id"] for n in range(count)]


def test_restart_resumes_without_loss_or_gap(world: FeedWorld) -> None:
    alice = world.user()
    world.producer.start()
    first = write_tasks(world.users, alice, 20)
    world.published.wait_for_task(task_of, first[-1])
    assert world.producer.stop() == 0

    while_down = write_tasks(world.users, alice, 15)
    world.producer.start()
    after = write_tasks(world.users, alice, 5)
    world.published.wait_for_task(task_of, after[-1])

    published = [m.change.record.salesconnect_task_id for m in world.published.collect()]
    assert published == first + while_down + after  # in order, each once


def test_killed_mid_stream_loses_nothing_and_repeats_only_identical_messages(
    world: FeedWorld,
) -> None:
    alice = world.user()
    world.producer.start()
    written: list[str] = []
    writer = threading.Thread(
        target=lambda: written.extend(write_tasks(world.users, alice, 120)), daemon=True
    )
    writer.start()
    world.published.wait_until(lambda messages: len(messages) >= 10, what="some messages")
    world.producer.kill()
    writer.join(60)
    assert len(written) == 120
    world.producer.start()
    world.published.wait_for_task(task_of, written[-1])

    messages = world.published.collect()
    assert {m.change.record.salesconnect_task_id for m in messages} == set(written)
    bodies: dict[str, bytes] = {}
    for message in messages:
        assert bodies.setdefault(message.message_id, message.body) == message.body


def test_a_crash_before_the_cursor_moved_republishes_the_same_message_ids(
    world: FeedWorld,
) -> None:
    alice = world.user()
    with Ledger.open(world.ledger_url) as ledger:
        start = ledger.cursor(CURSOR_NAME)
    assert start is not None
    world.producer.start()
    written = write_tasks(world.users, alice, 8)
    world.published.wait_for_task(task_of, written[-1])
    assert world.producer.stop() == 0

    # As if the process died after the confirms but before moving its cursor.
    with Ledger.open(world.ledger_url) as ledger:
        moved = ledger.cursor(CURSOR_NAME)
        assert moved is not None
        assert ledger.advance_cursor(CURSOR_NAME, expected=moved.value, value=start.value)
    world.producer.start()
    wait_for(
        lambda: len(world.published.collect()) >= 2 * len(written),
        timeout=15,
        what="the page published again",
    )
    again = world.published.messages[len(written) :]
    assert [m.message_id for m in again] == [
        m.message_id for m in world.published.messages[: len(written)]
    ]
    assert [m.body for m in again] == [m.body for m in world.published.messages[: len(written)]]


def test_an_unreachable_sales_connect_is_reported_plainly_and_retried(
    broker: BrokerVhost, tmp_path: Path
) -> None:
    port = free_port()
    producer = BridgeProcess(
        tmp_path,
        "producer-unreachable",
        [
            "producer",
            "salesconnect",
            "--salesconnect-url",
            f"http://127.0.0.1:{port}",
            "--amqp-url",
            broker.amqp_url,
            "--data-dir",
            str(tmp_path),
            *TOPOLOGY_ARGS,
        ],
    )
    producer.launch()
    try:
        wait_for(
            lambda: (
                producer.log().count(f"cannot reach http://127.0.0.1:{port}: connection refused")
                >= 2
            ),
            timeout=20,
            what="two plain connection errors in the log",
        )
    finally:
        status = producer.stop()
    assert status == 0
    assert "Traceback" not in producer.log()
    assert not producer.ready_file.exists()
