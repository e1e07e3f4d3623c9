"""deploy/rabbitmq/definitions.json imports into a RabbitMQ node of the test's own, and its users
can do their job and nothing more (least privilege), through tasksync's own code paths."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from bridge.errors import ErrorKind, TaskSyncError
from bridge.ledger import Ledger
from bridge.messaging import (
    PARKED_QUEUE,
    Direction,
    Outcome,
    ParkedQueue,
    Publisher,
    PublishError,
    Topology,
)
from bridge.messaging.definitions import component_users, definitions_json
from schemas.task_change import Origin, Owner, RecordRef
from tests.messaging.helpers import SF_USER, RecordingHandler, running_consumer, sc_change
from tests.messaging.test_topology import DEFINITIONS, normalised
from tests.support.rabbitmq import PrivateRabbitNode, amqp_url_for
from tests.support.waiting import wait_for

TOPOLOGY = Topology()


@pytest.fixture(scope="module")
def imported(private_rabbit: PrivateRabbitNode) -> PrivateRabbitNode:
    copy = private_rabbit.base_dir / "definitions.json"
    shutil.copy(DEFINITIONS, copy)
    result = private_rabbit.rabbitmqctl("import_definitions", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    return private_rabbit


def url(node: PrivateRabbitNode, user: str) -> str:
    return amqp_url_for(node.amqp_base_url, "/", user=user, password=f"{user}-dev")


@contextlib.contextmanager
def channel_as(node: PrivateRabbitNode, user: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url(node, user)))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def refused(node: PrivateRabbitNode, user: str, action: Any) -> bool:
    with channel_as(node, user) as channel:
        try:
            action(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            return exc.reply_code == 403
    return False


def test_the_file_imports_and_declares_exactly_the_code_topology(
    imported: PrivateRabbitNode,
) -> None:
    assert DEFINITIONS.read_text() == definitions_json(TOPOLOGY)
    declared = imported.management.definitions("/")
    assert normalised(declared) == normalised(json.loads(DEFINITIONS.read_text()))
    users = {u["name"]: u for u in imported.management.get("users")}
    for user in component_users():
        assert user.name in users
        assert sorted(users[user.name]["tags"]) == sorted(user.tags)
    permissions = {
        p["user"]: (p["configure"], p["write"], p["read"])
        for p in imported.management.get("permissions")
        if p["vhost"] == "/"
    }
    for user in component_users():
        assert permissions[user.name] == (user.configure, user.write, user.read)


def test_a_producer_may_only_publish_to_its_own_exchange(imported: PrivateRabbitNode) -> None:
    producer = "tasksync-salesconnect-producer"
    with Publisher(url(imported, producer), topology=TOPOLOGY) as publisher:
        publisher.publish(sc_change("task-priv"))
        salesforce_change = replace(
            sc_change("task-priv"),
            origin=Origin.SALESFORCE,
            owner=Owner(salesforce_user_id=SF_USER),
            record=RecordRef(salesforce_task_id=SF_USER),
        )
        with pytest.raises(PublishError, match="ACCESS_REFUSED"):
            publisher.publish(salesforce_change)
    shard = TOPOLOGY.shard_queue(
        Direction.TO_SALESFORCE, TOPOLOGY.shard_of("salesconnect:task-priv")
    )
    assert refused(imported, producer, lambda ch: ch.basic_consume(shard, lambda *a: None))
    assert refused(imported, producer, lambda ch: ch.queue_declare("anything", durable=True))


def test_a_worker_consumes_its_direction_publishes_retries_and_parks_and_nothing_more(
    imported: PrivateRabbitNode, tmp_path: Path
) -> None:
    worker = "tasksync-worker-to-salesforce"
    applied, failing, parked = (sc_change(f"task-w{n}") for n in range(3))
    handler = RecordingHandler(
        outcomes={
            str(failing.message_id): [
                Outcome.failed(TaskSyncError(ErrorKind.TRANSIENT, "UNABLE_TO_LOCK_ROW", "locked"))
            ],
            str(parked.message_id): [Outcome.park("validation rule says no")],
        }
    )
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    with running_consumer(url(imported, worker), handler, ledger, topology=TOPOLOGY) as consumer:
        with Publisher(url(imported, "tasksync-salesconnect-producer"), topology=TOPOLOGY) as pub:
            pub.publish_many([applied, failing, parked])
        # The producer test's message is applied too: count ours.
        wait_for(
            lambda: (
                str(applied.message_id) in handler.seen_ids()
                and (consumer.stats.retried, consumer.stats.parked) == (1, 1)
            ),
            what="one applied, one retried, one parked",
        )
    assert ledger.is_processed(str(applied.message_id))
    retry_5s = TOPOLOGY.retry_queue(Direction.TO_SALESFORCE, TOPOLOGY.retry_tiers[0])
    with channel_as(imported, "tasksync-admin") as channel:
        assert channel.queue_declare(retry_5s, passive=True).method.message_count == 1
    other = TOPOLOGY.shard_queue(Direction.TO_SALESCONNECT, 0)
    assert refused(imported, worker, lambda ch: ch.basic_consume(other, lambda *a: None))
    assert refused(imported, worker, lambda ch: ch.basic_consume(PARKED_QUEUE, lambda *a: None))
    assert refused(imported, worker, lambda ch: TOPOLOGY.declare(ch, Direction.TO_SALESCONNECT))

    def publish_to_other_source(channel: Any) -> None:
        channel.confirm_delivery()
        channel.basic_publish("tasksync.salesforce.changes", "upsert.x", b"{}")

    assert refused(imported, worker, publish_to_other_source)

    operator = "tasksync-operator"
    [seen] = ParkedQueue(url(imported, operator), topology=TOPOLOGY).browse()
    assert seen.message_id == str(parked.message_id)
    assert seen.error == "validation rule says no"
    assert refused(imported, operator, TOPOLOGY.declare)
    assert ParkedQueue(url(imported, operator), topology=TOPOLOGY).replay(None) == [seen.message_id]
