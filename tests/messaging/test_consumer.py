"""The consumer against the real RabbitMQ (a fresh vhost per test): batches, outcomes, retry
tiers with shortened TTLs, parking, re-authentication, heartbeats and draining."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pika
import pytest
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.util import exception_handler

from bridge.errors import ErrorKind, TaskSyncError
from bridge.ledger import Ledger
from bridge.messaging import (
    PARKED_QUEUE,
    Direction,
    Outcome,
    Publisher,
    RetryPolicy,
    task_key,
)
from bridge.messaging.envelope import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ERROR_KIND_HEADER,
    FIRST_FAILED_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
)
from bridge.messaging.topology import SHARD_HEADER
from schemas.task_change import task_change_json
from tests.messaging.helpers import (
    TEST_TOPOLOGY,
    RecordingHandler,
    declare,
    running_consumer,
    sc_change,
)
from tests.messaging.test_errors import salesforce_response
from tests.support.rabbitmq import BrokerVhost
from tests.support.waiting import wait_for

SOURCE = "tasksync.salesconnect.changes"
SHARDS = TEST_TOPOLOGY.shard_queues(Direction.TO_SALESFORCE)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")


@pytest.fixture
def vhost(rabbit_vhost: BrokerVhost) -> BrokerVhost:
    declare(rabbit_vhost.amqp_url)
    return rabbit_vhost


def all_queues_empty(vhost: BrokerVhost) -> bool:
    queues = [
        *SHARDS,
        *(TEST_TOPOLOGY.retry_queue(Direction.TO_SALESFORCE, t) for t in TEST_TOPOLOGY.retry_tiers),
    ]
    return sum(vhost.depths(queues).values()) == 0


def test_an_idle_consumer_handles_one_message_at_once_and_acks_it(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    handler = RecordingHandler()
    change = sc_change("task-a", user="alice")
    with (
        running_consumer(vhost.amqp_url, handler, ledger) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.applied == 1, what="the message to be applied")
        wait_for(lambda: all_queues_empty(vhost), what="the ack")
    [delivery] = handler.seen
    assert [len(b) for b in handler.batches] == [1]
    assert delivery.change == change
    assert delivery.routing_key == "upsert.alice"
    assert delivery.exchange == SOURCE
    assert delivery.attempts == 0
    assert delivery.task_key == "salesconnect:task-a"
    assert delivery.queue == TEST_TOPOLOGY.shard_queue(
        Direction.TO_SALESFORCE, TEST_TOPOLOGY.shard_of(delivery.task_key)
    )
    assert ledger.is_processed(str(change.message_id))


def test_a_backlog_arrives_in_batches_and_each_message_once(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    changes = [sc_change(f"task-{i % 25}", name=f"v{i}") for i in range(300)]
    with Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher:
        publisher.publish_many(changes)
    handler = RecordingHandler()
    with running_consumer(
        vhost.amqp_url, handler, ledger, batch_size=100, prefetch=150
    ) as consumer:
        wait_for(lambda: consumer.stats.applied == 300, what="the backlog to be applied")
        wait_for(lambda: all_queues_empty(vhost), what="the acks")
    sizes = [len(batch) for batch in handler.batches]
    assert max(sizes) > 1, sizes
    assert max(sizes) <= 100
    assert sorted(handler.seen_ids()) == sorted(str(c.message_id) for c in changes)
    per_task: dict[str, list[str]] = {}
    for delivery in handler.seen:
        per_task.setdefault(delivery.task_key, []).append(delivery.change.changed.name)  # type: ignore[arg-type]
    for key, names in per_task.items():
        expected = [c.changed.name for c in changes if task_key(c) == key]
        assert names == expected, f"{key} applied out of order"


def test_a_message_already_processed_is_acked_without_the_handler(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    change = sc_change()
    handler = RecordingHandler()
    with (
        running_consumer(vhost.amqp_url, handler, ledger) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.applied == 1, what="the first copy")
        publisher.publish(change)
        wait_for(lambda: consumer.stats.duplicates == 1, what="the second copy")
        wait_for(lambda: all_queues_empty(vhost), what="the acks")
    assert handler.seen_ids() == [str(change.message_id)]


def publish_raw(vhost: BrokerVhost, body: bytes, message_id: str, routing_key: str) -> None:
    with vhost.channel() as channel:
        channel.confirm_delivery()
        channel.basic_publish(
            SOURCE,
            routing_key,
            body,
            pika.BasicProperties(
                message_id=message_id, delivery_mode=2, headers={SHARD_HEADER: "0"}
            ),
            mandatory=True,
        )


def test_malformed_messages_are_parked_with_the_reason_and_the_next_flows(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    good = sc_change("task-good")
    unknown_version = json.loads(task_change_json(sc_change("task-v")))
    unknown_version["schema_version"] = 2
    failing = json.loads(task_change_json(sc_change("task-f")))
    failing["changed"]["status"] = "In Progress"
    handler = RecordingHandler()
    with running_consumer(vhost.amqp_url, handler, ledger) as consumer:
        publish_raw(vhost, b"{not json", "bad-json", "upsert.user-1")
        publish_raw(vhost, json.dumps(unknown_version).encode(), "bad-version", "upsert.user-1")
        publish_raw(vhost, json.dumps(failing).encode(), "bad-field", "delete.user-1")
        with Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher:
            publisher.publish(good)
        wait_for(lambda: consumer.stats.applied == 1, what="the good message")
        wait_for(lambda: vhost.depth(PARKED_QUEUE) == 3, what="three parked messages")
    assert handler.seen_ids() == [str(good.message_id)]
    parked = {props.message_id: (method, props) for method, props, _ in vhost.drain(PARKED_QUEUE)}
    assert set(parked) == {"bad-json", "bad-version", "bad-field"}
    errors = {mid: props.headers[ERROR_HEADER] for mid, (_, props) in parked.items()}
    assert "Not valid UTF-8 JSON" in errors["bad-json"]
    assert "Unsupported schema version 2" in errors["bad-version"]
    assert "changed.status" in errors["bad-field"]
    method, props = parked["bad-field"]
    assert method.routing_key == "delete.user-1"
    assert props.headers[ERROR_KIND_HEADER] == "malformed"
    assert props.headers[ORIGINAL_EXCHANGE_HEADER] == SOURCE
    assert props.headers[ORIGINAL_ROUTING_KEY_HEADER] == "delete.user-1"
    assert props.headers[ATTEMPTS_HEADER] == 1


def test_a_poison_message_is_parked_at_once_while_the_next_of_its_task_flows(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    poison, after = sc_change("task-p", name="x" * 300), sc_change("task-p", name="ok")
    with pytest.raises(SalesforceError) as caught:
        exception_handler(
            salesforce_response(
                400,
                [
                    {
                        "errorCode": "STRING_TOO_LONG",
                        "message": "Subject: data value too large",
                        "fields": ["Subject"],
                    }
                ],
            )
        )
    handler = RecordingHandler(outcomes={str(poison.message_id): [Outcome.failed(caught.value)]})
    with (
        running_consumer(vhost.amqp_url, handler, ledger) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish_many([poison, after])
        wait_for(
            lambda: consumer.stats.applied == 1 and consumer.stats.parked == 1,
            what="one parked, one applied",
        )
        wait_for(lambda: all_queues_empty(vhost), what="the acks")
    assert handler.seen_ids().count(str(poison.message_id)) == 1
    [(method, props, body)] = vhost.drain(PARKED_QUEUE)
    headers = props.headers
    assert props.message_id == str(poison.message_id)
    assert body == task_change_json(poison)
    assert headers[ERROR_HEADER].startswith("salesforce STRING_TOO_LONG (400): Subject:")
    assert headers[ERROR_KIND_HEADER] == "permanent"
    assert headers[ATTEMPTS_HEADER] == 1
    assert headers[FIRST_FAILED_HEADER].endswith("Z")
    assert headers[ORIGINAL_EXCHANGE_HEADER] == SOURCE
    assert headers[ORIGINAL_ROUTING_KEY_HEADER] == "upsert.user-1"
    assert method.routing_key == "upsert.user-1"
    assert not ledger.is_processed(str(poison.message_id))


def transient(code: str = "UNABLE_TO_LOCK_ROW") -> Outcome:
    return Outcome.failed(TaskSyncError(ErrorKind.TRANSIENT, code, "row locked"))


def test_transient_failures_travel_the_retry_tiers_and_then_apply(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    change = sc_change("task-r")
    mid = str(change.message_id)
    handler = RecordingHandler(outcomes={mid: [transient(), transient()]})
    with (
        running_consumer(vhost.amqp_url, handler, ledger) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.applied == 1, timeout=15, what="the third attempt")
        wait_for(lambda: all_queues_empty(vhost), what="the acks")
    first, second, third = handler.seen
    assert [d.attempts for d in handler.seen] == [0, 1, 2]
    assert first.exchange == SOURCE
    shard_exchange = TEST_TOPOLOGY.shard_exchange(Direction.TO_SALESFORCE)
    assert second.exchange == third.exchange == shard_exchange  # dead-lettered back by TTL
    assert second.queue == first.queue == third.queue
    assert second.routing_key == "upsert.user-1"
    assert third.last_error is not None and "UNABLE_TO_LOCK_ROW" in third.last_error
    assert second.first_failed == third.first_failed is not None
    assert consumer.stats.retried == 2
    assert ledger.is_processed(mid)


def test_a_message_that_keeps_failing_is_parked_when_attempts_run_out(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    change = sc_change("task-x")
    handler = RecordingHandler(outcomes={str(change.message_id): [transient()] * 10})
    with (
        running_consumer(
            vhost.amqp_url, handler, ledger, retry_policy=RetryPolicy(max_attempts=3)
        ) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.parked == 1, timeout=15, what="parking")
    assert len(handler.seen) == 3
    [(_, props, _)] = vhost.drain(PARKED_QUEUE)
    assert props.headers[ATTEMPTS_HEADER] == 3
    assert props.headers[ERROR_HEADER].startswith("gave up after 3 attempts: bridge UNABLE_TO")


def test_rate_limits_wait_in_a_long_tier_without_spending_attempts(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    change = sc_change("task-l")
    limited = Outcome.failed(
        TaskSyncError(ErrorKind.RATE_LIMITED, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit")
    )
    handler = RecordingHandler(outcomes={str(change.message_id): [limited, limited]})
    with (
        running_consumer(
            vhost.amqp_url, handler, ledger, retry_policy=RetryPolicy(max_attempts=2)
        ) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.applied == 1, timeout=15, what="the apply")
    assert [d.attempts for d in handler.seen] == [0, 0, 0]
    assert "REQUEST_LIMIT_EXCEEDED" in (handler.seen[-1].last_error or "")
    assert consumer.stats.parked == 0


def test_an_expired_session_reauthenticates_and_retries_at_once(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    change = sc_change("task-s")
    with pytest.raises(SalesforceError) as caught:
        exception_handler(
            salesforce_response(
                401, [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
            )
        )
    handler = RecordingHandler(outcomes={str(change.message_id): [Outcome.failed(caught.value)]})
    logins: list[float] = []
    with (
        running_consumer(
            vhost.amqp_url, handler, ledger, reauthenticate=lambda: logins.append(time.monotonic())
        ) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.applied == 1, what="the retry after login")
    assert len(logins) == 1
    assert [d.attempts for d in handler.seen] == [0, 0]
    assert [d.exchange for d in handler.seen] == [SOURCE, SOURCE]  # no retry tier on the way
    assert consumer.stats.retried == 0


def test_a_task_leased_by_another_consumer_is_deferred_not_applied(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    change = sc_change("task-busy")
    claim = ledger.begin_batch(
        holder="another-machine:1:abc", messages=[("other-message", "salesconnect:task-busy")]
    )
    assert claim.leased == {"salesconnect:task-busy"}
    handler = RecordingHandler()
    with (
        running_consumer(vhost.amqp_url, handler, ledger) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.deferred >= 2, timeout=10, what="deferrals")
        assert handler.seen == []
        ledger.finish_batch(
            holder="another-machine:1:abc", processed=[], release=["salesconnect:task-busy"]
        )
        wait_for(lambda: consumer.stats.applied == 1, timeout=10, what="the apply")
    assert [d.attempts for d in handler.seen] == [0]


def test_heartbeats_keep_flowing_while_a_handler_waits_longer_than_their_timeout(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    # heartbeat 1 s: RabbitMQ closes a connection that is silent for about 2 intervals.
    handler = RecordingHandler(release=threading.Event(), hold_seconds=4.0)
    change = sc_change("task-slow")
    with (
        running_consumer(vhost.amqp_url, handler, ledger, heartbeat=1) as consumer,
        Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher,
    ):
        publisher.publish(change)
        wait_for(lambda: consumer.stats.applied == 1, timeout=15, what="the slow apply")
        wait_for(lambda: all_queues_empty(vhost), what="the ack")
        assert consumer.stats.connections == 1
        assert consumer.consuming.is_set()
    assert len(handler.seen) == 1


def test_stopping_finishes_the_batch_in_hand_and_returns_the_rest(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    release = threading.Event()
    handler = RecordingHandler(release=release)
    changes = [sc_change("task-d", name=f"v{i}") for i in range(5)]
    queue = TEST_TOPOLOGY.shard_queue(
        Direction.TO_SALESFORCE, TEST_TOPOLOGY.shard_of("salesconnect:task-d")
    )
    with running_consumer(vhost.amqp_url, handler, ledger, batch_size=1, prefetch=10) as consumer:
        with Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher:
            publisher.publish_many(changes)
        wait_for(lambda: len(handler.batches) == 1, what="the first batch to be in hand")
        consumer.stop()
        release.set()
    assert handler.seen_ids() == [str(changes[0].message_id)]
    assert ledger.is_processed(str(changes[0].message_id))
    wait_for(lambda: vhost.depth(queue) == 4, what="the other four back in the queue")
    assert vhost.unacked(queue) == 0


def test_a_deleted_queue_is_redeclared_and_consumed_again(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    handler = RecordingHandler()
    with running_consumer(vhost.amqp_url, handler, ledger) as consumer:
        with vhost.channel() as channel:
            channel.queue_delete(SHARDS[0])
        wait_for(lambda: consumer.stats.connections == 2, what="a reconnect after the cancel")
        wait_for(consumer.consuming.is_set, what="consuming again")
        changes = [sc_change(f"task-{n}") for n in range(6)]
        with Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher:
            publisher.publish_many(changes)
        wait_for(lambda: consumer.stats.applied == 6, what="both shards consumed")
    assert {d.queue for d in handler.seen} == set(SHARDS)


def test_a_second_copy_in_one_batch_is_acked_and_never_hides_a_retry(
    vhost: BrokerVhost, ledger: Ledger
) -> None:
    change = sc_change("task-twice")
    with Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher:
        publisher.publish_many([change, change])  # a producer retrying after a lost confirm
    handler = RecordingHandler(outcomes={str(change.message_id): [transient()]})
    with running_consumer(vhost.amqp_url, handler, ledger, batch_size=10) as consumer:
        wait_for(lambda: consumer.stats.applied == 1, timeout=10, what="the retried apply")
        wait_for(lambda: all_queues_empty(vhost), what="the acks")
    assert [d.attempts for d in handler.seen] == [0, 1]
    assert consumer.stats.duplicates == 1
    assert ledger.is_processed(str(change.message_id))
