"""The parking queue: RabbitMQ's own dead-lettering after the delivery limit, and the operator's
browse, show, replay and drop, which never lose a message."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge.errors import ErrorKind
from bridge.messaging import (
    PARKED_QUEUE,
    Direction,
    ParkedMessage,
    ParkedMessageNotFoundError,
    ParkedQueue,
    Publisher,
    Topology,
)
from bridge.messaging.envelope import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    REPLAYED_AT_HEADER,
    ReceivedMessage,
    envelope_for,
)
from bridge.messaging.parking import parked_copy
from bridge.messaging.topology import SHARD_HEADER
from tests.messaging.helpers import TEST_TOPOLOGY, declare, sc_change
from tests.support.rabbitmq import BrokerVhost
from tests.support.waiting import wait_for


def park(vhost: BrokerVhost, count: int, topology: Topology = TEST_TOPOLOGY) -> list[str]:
    """Put `count` messages in parking as a worker would, oldest first; their ids."""
    now = datetime.now(UTC)
    parked = []
    for n in range(count):
        change = sc_change(f"task-{n}", user="carol")
        sent = envelope_for(change, topology, app_id="test")
        received = ReceivedMessage(
            sent.exchange, sent.routing_key, sent.body, sent.properties(), queue="q"
        )
        parked.append(
            parked_copy(
                received, error=f"reason {n}", kind=ErrorKind.PERMANENT, attempts=1, now=now
            )
        )
    with Publisher(vhost.amqp_url, topology=topology) as publisher:
        publisher.publish_messages(parked)
    return [message.message_id for message in parked]


def test_a_message_that_keeps_crashing_its_consumer_is_parked_by_rabbitmq(
    rabbit_vhost: BrokerVhost,
) -> None:
    topology = Topology(shard_count=1, retry_tiers=TEST_TOPOLOGY.retry_tiers, delivery_limit=2)
    declare(rabbit_vhost.amqp_url, topology)
    change = sc_change("task-crash", user="dave")
    with Publisher(rabbit_vhost.amqp_url, topology=topology) as publisher:
        publisher.publish(change)
    queue = topology.shard_queue(Direction.TO_SALESFORCE, 0)
    with rabbit_vhost.channel() as channel:
        for method, _, _ in channel.consume(queue, inactivity_timeout=10):
            if method is None:
                break
            channel.basic_reject(method.delivery_tag, requeue=True)  # a consumer crashing
            if rabbit_vhost.depth(PARKED_QUEUE):
                break
        channel.cancel()
    wait_for(lambda: rabbit_vhost.depth(PARKED_QUEUE) == 1, what="RabbitMQ to park it")
    [parked] = ParkedQueue(rabbit_vhost.amqp_url, topology=topology).browse()
    assert parked.message_id == str(change.message_id)
    assert parked.error == "dead-lettered by RabbitMQ: delivery_limit"
    assert parked.original_exchange == "tasksync.salesconnect.changes"
    assert parked.original_routing_key == "upsert.dave"
    assert parked.parked_from == queue
    assert ParkedQueue(rabbit_vhost.amqp_url, topology=topology).replay(None) == [parked.message_id]
    [(method, props, _)] = rabbit_vhost.drain(queue)
    assert method.exchange == "tasksync.salesconnect.changes"
    assert "x-death" not in props.headers and REPLAYED_AT_HEADER in props.headers


def test_browsing_leaves_every_message_parked_in_order(rabbit_vhost: BrokerVhost) -> None:
    declare(rabbit_vhost.amqp_url)
    ids = park(rabbit_vhost, 5)
    queue = ParkedQueue(rabbit_vhost.amqp_url, topology=TEST_TOPOLOGY)
    assert [p.message_id for p in queue.browse()] == ids
    assert [p.message_id for p in queue.browse(limit=2)] == ids[:2]
    assert [p.message_id for p in queue.browse()] == ids
    shown = queue.find(ids[3])
    details = shown.details()
    assert details["error"] == "reason 3"
    assert details["error_kind"] == "permanent"
    assert details["body"]["record"] == {"salesconnect_task_id": "task-3"}
    assert details["headers"][ERROR_HEADER] == "reason 3"
    assert rabbit_vhost.depth(PARKED_QUEUE) == 5


def test_replay_sends_chosen_messages_back_to_their_route_with_attempts_reset(
    rabbit_vhost: BrokerVhost,
) -> None:
    declare(rabbit_vhost.amqp_url)
    ids = park(rabbit_vhost, 4)
    queue = ParkedQueue(rabbit_vhost.amqp_url, topology=TEST_TOPOLOGY)
    assert queue.replay({ids[1], ids[2]}) == [ids[1], ids[2]]
    assert [p.message_id for p in queue.browse()] == [ids[0], ids[3]]
    shards = TEST_TOPOLOGY.shard_queues(Direction.TO_SALESFORCE)
    replayed = [entry for shard in shards for entry in rabbit_vhost.drain(shard)]
    assert sorted(props.message_id for _, props, _ in replayed) == sorted([ids[1], ids[2]])
    for method, props, _ in replayed:
        assert method.routing_key == "upsert.carol"
        assert ATTEMPTS_HEADER not in props.headers and ERROR_HEADER not in props.headers
        assert props.headers[SHARD_HEADER] in ("0", "1")
    with pytest.raises(ParkedMessageNotFoundError, match="missing-id"):
        queue.replay({"missing-id"})


def test_drop_records_before_removing_and_keeps_the_message_if_recording_fails(
    rabbit_vhost: BrokerVhost,
) -> None:
    declare(rabbit_vhost.amqp_url)
    ids = park(rabbit_vhost, 2)
    queue = ParkedQueue(rabbit_vhost.amqp_url, topology=TEST_TOPOLOGY)

    def broken_log(_: ParkedMessage) -> None:
        raise OSError("ledger down")

    with pytest.raises(OSError, match="ledger down"):
        queue.drop({ids[0]}, broken_log)
    assert [p.message_id for p in queue.browse()] == ids
    recorded: list[dict[str, object]] = []
    assert queue.drop({ids[0]}, lambda p: recorded.append(json.loads(p.received.body))) == [ids[0]]
    assert [p.message_id for p in queue.browse()] == [ids[1]]
    assert recorded and recorded[0]["message_id"] == ids[0]
