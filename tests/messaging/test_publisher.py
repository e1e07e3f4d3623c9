"""Confirmed publishing against the real RabbitMQ: load, headers, nacks and unroutable returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from bridge.messaging import Direction, OutboundMessage, Publisher, PublishError, Topology
from bridge.messaging.envelope import (
    OCCURRED_AT_HEADER,
    ORIGIN_HEADER,
    SCHEMA_VERSION_HEADER,
    TASK_KEY_HEADER,
    task_key,
)
from bridge.messaging.topology import SHARD_HEADER
from schemas.task_change import Origin, Owner, RecordRef, load_task_change
from tests.messaging.helpers import SF_USER, TEST_TOPOLOGY, declare, sc_change
from tests.support.rabbitmq import BrokerVhost
from tests.support.waiting import wait_for

TOPOLOGY = Topology(shard_count=4, retry_tiers=TEST_TOPOLOGY.retry_tiers)
SHARDS = TOPOLOGY.shard_queues(Direction.TO_SALESFORCE)


def test_ten_thousand_confirmed_messages_all_arrive_in_their_task_shard(
    rabbit_vhost: BrokerVhost,
) -> None:
    declare(rabbit_vhost.amqp_url, TOPOLOGY)
    changes = [sc_change(f"task-{i % 97}", user=f"user-{i % 7}") for i in range(10_000)]
    with Publisher(rabbit_vhost.amqp_url, topology=TOPOLOGY, window=500) as publisher:
        publisher.publish_many(changes)
    expected = Counter(
        TOPOLOGY.shard_queue(Direction.TO_SALESFORCE, TOPOLOGY.shard_of(task_key(c)))
        for c in changes
    )
    depths = wait_for(
        lambda: (d := rabbit_vhost.depths(SHARDS)) == expected and d,
        what="every confirmed message in its shard",
    )
    assert sum(depths.values()) == 10_000
    assert all(depths[queue] > 0 for queue in SHARDS)


def test_messages_carry_the_properties_and_headers_operators_read(
    rabbit_vhost: BrokerVhost,
) -> None:
    declare(rabbit_vhost.amqp_url, TOPOLOGY)
    change = sc_change("task-h", user="bob")
    with Publisher(rabbit_vhost.amqp_url, topology=TOPOLOGY, app_id="sc-producer") as publisher:
        publisher.publish(change)
    queue = TOPOLOGY.shard_queue(Direction.TO_SALESFORCE, TOPOLOGY.shard_of("salesconnect:task-h"))
    [(method, props, body)] = rabbit_vhost.drain(queue)
    assert load_task_change(body) == change
    assert method.exchange == "tasksync.salesconnect.changes"
    assert method.routing_key == "upsert.bob"
    assert props.message_id == str(change.message_id)
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.timestamp is not None
    assert props.app_id == "sc-producer"
    assert props.correlation_id == change.trace_id
    assert props.headers[SCHEMA_VERSION_HEADER] == 1
    assert props.headers[ORIGIN_HEADER] == "salesconnect"
    assert props.headers[TASK_KEY_HEADER] == "salesconnect:task-h"
    assert props.headers[SHARD_HEADER] == str(TOPOLOGY.shard_of("salesconnect:task-h"))
    assert props.headers[OCCURRED_AT_HEADER].endswith("Z")


def test_an_unroutable_message_is_an_error_the_producer_sees(rabbit_vhost: BrokerVhost) -> None:
    declare(rabbit_vhost.amqp_url, TOPOLOGY)
    with rabbit_vhost.channel() as channel:
        channel.exchange_unbind(
            destination=TOPOLOGY.shard_exchange(Direction.TO_SALESFORCE),
            source="tasksync.salesconnect.changes",
            routing_key="#",
        )
    routed_elsewhere = [sc_change(f"t{i}") for i in range(3)]
    with Publisher(rabbit_vhost.amqp_url, topology=TOPOLOGY) as publisher:
        with pytest.raises(PublishError) as caught:
            publisher.publish_many(routed_elsewhere)
        assert set(caught.value.failures) == {str(c.message_id) for c in routed_elsewhere}
        assert all("unroutable (312 NO_ROUTE)" in why for why in caught.value.failures.values())
        # The same publisher keeps working for what is routable.
        publisher.publish(
            replace(
                routed_elsewhere[0],
                origin=Origin.SALESFORCE,
                owner=Owner(salesforce_user_id=SF_USER),
                record=RecordRef(salesforce_task_id=SF_USER),
            )
        )
    assert sum(rabbit_vhost.depths(TOPOLOGY.shard_queues(Direction.TO_SALESCONNECT)).values()) == 1


def test_a_nacked_message_is_an_error_the_producer_sees(rabbit_vhost: BrokerVhost) -> None:
    # A full queue that rejects publishes makes RabbitMQ nack exactly what does not fit.
    with rabbit_vhost.channel() as channel:
        channel.exchange_declare("test.full", "fanout", durable=True)
        channel.queue_declare(
            "test.full",
            durable=True,
            arguments={
                "x-queue-type": "classic",
                "x-max-length": 3,
                "x-overflow": "reject-publish",
            },
        )
        channel.queue_bind("test.full", "test.full")
    messages = [
        OutboundMessage("test.full", "k", f"body {i}".encode(), message_id=f"m{i}")
        for i in range(10)
    ]
    with (
        Publisher(rabbit_vhost.amqp_url, topology=TOPOLOGY) as publisher,
        pytest.raises(PublishError) as caught,
    ):
        publisher.publish_messages(messages)
    assert caught.value.failures == {f"m{i}": "nacked by RabbitMQ" for i in range(3, 10)}
    assert rabbit_vhost.depth("test.full") == 3


def test_publishing_to_a_missing_exchange_fails_and_the_publisher_recovers(
    rabbit_vhost: BrokerVhost,
) -> None:
    change = sc_change()
    with Publisher(rabbit_vhost.amqp_url, topology=TOPOLOGY) as publisher:
        with pytest.raises(PublishError) as caught:
            publisher.publish(change)
        assert "NOT_FOUND" in caught.value.failures[str(change.message_id)]
        declare(rabbit_vhost.amqp_url, TOPOLOGY)
        publisher.publish(change)
    assert sum(rabbit_vhost.depths(SHARDS).values()) == 1


def test_an_unreachable_broker_is_an_error_not_a_hang() -> None:
    change = sc_change()
    with (
        Publisher("amqp://guest:guest@127.0.0.1:9/%2F", topology=TOPOLOGY) as publisher,
        pytest.raises(PublishError) as caught,
    ):
        publisher.publish(change, timeout=20)
    assert "cannot connect" in caught.value.failures[str(change.message_id)]
