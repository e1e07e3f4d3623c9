"""Messaging speed against the goals of the messaging issue, each measured against bare pika in
the same run, on a fresh vhost of the local RabbitMQ:

* publishing with confirms (`Publisher.publish_messages`) >= 0.5 x a bare pika publish loop
  without confirms, same prepared messages;
* consuming with the ledger (`Consumer`, SQLite ledger by default, no-op handler) >= 0.5 x a
  bare pika consume-and-ack loop.

    .venv/bin/python -m bench.messaging [--messages 20000] [--ledger-url postgresql://...]

Prints the figures and writes bench/results/messaging.json. `tasksync bench` runs `measure()`
as part of its figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika

from bench.system import Broker, Vhost
from bridge.ledger import Ledger
from bridge.messaging import (
    APPLIED,
    Consumer,
    ConsumerSettings,
    Delivery,
    Direction,
    Outcome,
    Publisher,
    Topology,
)
from bridge.messaging.envelope import OutboundMessage, envelope_for
from schemas.task_change import (
    ChangedFields,
    Op,
    Origin,
    Owner,
    RecordRef,
    TaskChange,
    load_task_change,
)
from workers.options import DEFAULT_AMQP_URL, DEFAULT_MANAGEMENT_URL

RESULTS = Path(__file__).parent / "results" / "messaging.json"
TOPOLOGY = Topology()
SHARDS = TOPOLOGY.shard_queues(Direction.TO_SALESFORCE)


def sc_change(task: str, user: str) -> TaskChange:
    """A Sales Connect rename, as the Sales Connect producer publishes one."""
    return TaskChange(
        message_id=uuid.uuid4(),
        origin=Origin.SALESCONNECT,
        op=Op.UPSERT,
        occurred_at=datetime.now(UTC).replace(microsecond=0),
        actor=user,
        owner=Owner(salesconnect_user_id=user),
        record=RecordRef(salesconnect_task_id=task),
        trace_id=uuid.uuid4().hex,
        changed=ChangedFields(name="Call back"),
    )


def prepared(count: int) -> list[OutboundMessage]:
    return [
        envelope_for(sc_change(f"task-{n % 500}", user=f"user-{n % 20}"), TOPOLOGY, app_id="bench")
        for n in range(count)
    ]


def _channel(vhost: Vhost) -> tuple[Any, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(vhost.amqp_url))
    return connection, connection.channel()


def purge(vhost: Vhost) -> None:
    connection, channel = _channel(vhost)
    for queue in SHARDS:
        channel.queue_purge(queue)
    connection.close()


def wait_depth(vhost: Vhost, count: int) -> None:
    """Wait until all `count` confirmed messages are in the shards: any fewer is a loss."""
    deadline = time.monotonic() + 120
    while (waiting := sum(vhost.ready_counts(SHARDS).values())) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {waiting} of {count} published messages arrived in 120 s")
        time.sleep(0.05)


def wait_settled(vhost: Vhost, count: int, quiet: float = 3.0) -> int:
    """Wait until the shards hold `count` messages or their depth has stopped growing for
    `quiet` seconds, and return how many of `count` are missing. A publish without confirms
    has no guarantee: the broker may drop a message of it (a quorum queue's pending command
    when the connection closes), which is what confirms are for."""
    deadline = time.monotonic() + 120
    last, changed = -1, time.monotonic()
    while (waiting := sum(vhost.ready_counts(SHARDS).values())) < count:
        now = time.monotonic()
        if waiting != last:
            last, changed = waiting, now
        elif now - changed >= quiet:
            break
        if now > deadline:
            raise RuntimeError(f"only {waiting} of {count} published messages arrived in 120 s")
        time.sleep(0.05)
    return max(0, count - waiting)


def bare_publish(vhost: Vhost, messages: Sequence[OutboundMessage]) -> tuple[float, int]:
    """The bare loop's rate, and how many of its messages the broker did not keep."""
    connection = pika.BlockingConnection(pika.URLParameters(vhost.amqp_url))
    channel = connection.channel()
    properties = [m.properties() for m in messages]
    started = time.perf_counter()
    for message, props in zip(messages, properties, strict=True):
        channel.basic_publish(message.exchange, message.routing_key, message.body, props)
    elapsed = time.perf_counter() - started
    connection.close()
    return len(messages) / elapsed, wait_settled(vhost, len(messages))


def confirmed_publish(vhost: Vhost, messages: Sequence[OutboundMessage]) -> float:
    with Publisher(vhost.amqp_url, topology=TOPOLOGY) as publisher:
        publisher.publish_messages(messages[:10])  # connect outside the timing
        started = time.perf_counter()
        publisher.publish_messages(messages[10:], timeout=300)
        elapsed = time.perf_counter() - started
    return (len(messages) - 10) / elapsed


def bare_consume(vhost: Vhost, count: int, prefetch: int, *, validate: bool = False) -> float:
    """A bare pika consume-and-ack loop; with `validate`, each body also goes through
    `load_task_change`, the contract check every tasksync consumer must make."""
    connection = pika.BlockingConnection(pika.URLParameters(vhost.amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    received = 0
    started = 0.0

    def on_message(ch: Any, method: Any, _props: Any, body: bytes) -> None:
        nonlocal received, started
        if received == 0:
            started = time.perf_counter()
        received += 1
        if validate:
            load_task_change(body)
        ch.basic_ack(method.delivery_tag)
        if received == count:
            ch.stop_consuming()

    for queue in SHARDS:
        channel.basic_consume(queue, on_message)
    channel.start_consuming()
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def ledger_consume(
    vhost: Vhost, count: int, prefetch: int, batch_size: int, ledger_url: str
) -> float:
    first: list[float] = []

    def handler(batch: Sequence[Delivery]) -> list[Outcome]:
        if not first:
            first.append(time.perf_counter())
        return [APPLIED] * len(batch)

    ledger = Ledger.open(ledger_url)
    consumer = Consumer(
        ConsumerSettings(
            amqp_url=vhost.amqp_url,
            direction=Direction.TO_SALESFORCE,
            topology=TOPOLOGY,
            prefetch=prefetch,
            batch_size=batch_size,
        ),
        handler,
        ledger,
    )
    thread = threading.Thread(target=consumer.run, kwargs={"install_signal_handlers": False})
    thread.start()
    deadline = time.monotonic() + 300
    while consumer.stats.applied + consumer.stats.duplicates < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"consumed only {consumer.stats.applied} of {count}")
        time.sleep(0.01)
    finished = time.perf_counter()
    consumer.stop()
    thread.join(60)
    ledger.close()
    return count / (finished - first[0])


def measure(
    broker: Broker,
    *,
    messages: int,
    rounds: int,
    prefetch: int = 200,
    batch_size: int = 200,
    ledger_url: str | None = None,
) -> dict[str, Any]:
    """Both pairs, `rounds` times alternating on a fresh vhost of `broker`; medians count."""
    prepared_messages = prepared(messages)
    figures: dict[str, list[float]] = {
        "publish_bare": [],
        "publish_confirmed": [],
        "consume_bare": [],
        "consume_bare_validating": [],
        "consume_with_ledger": [],
    }
    lost_without_confirms = 0
    with broker.fresh_vhost("tasksync-bench") as vhost, tempfile.TemporaryDirectory() as tmp:
        connection = pika.BlockingConnection(pika.URLParameters(vhost.amqp_url))
        TOPOLOGY.declare(connection.channel())
        connection.close()
        # Alternating rounds, so a burst of load from elsewhere on the machine hits both sides.
        for round_number in range(rounds):
            rate, missing = bare_publish(vhost, prepared_messages)
            figures["publish_bare"].append(rate)
            lost_without_confirms += missing
            purge(vhost)
            figures["publish_confirmed"].append(confirmed_publish(vhost, prepared_messages))
            wait_depth(vhost, messages)
            figures["consume_bare"].append(bare_consume(vhost, messages, prefetch))
            with Publisher(vhost.amqp_url, topology=TOPOLOGY) as publisher:
                publisher.publish_messages(prepared_messages, timeout=300)
            figures["consume_bare_validating"].append(
                bare_consume(vhost, messages, prefetch, validate=True)
            )
            # New message ids each round: a ledger shared across rounds has seen the old ones.
            fresh = prepared(messages)
            with Publisher(vhost.amqp_url, topology=TOPOLOGY) as publisher:
                publisher.publish_messages(fresh, timeout=300)
            round_ledger = ledger_url or f"sqlite:///{Path(tmp) / f'ledger{round_number}.db'}"
            figures["consume_with_ledger"].append(
                ledger_consume(vhost, messages, prefetch, batch_size, round_ledger)
            )
            purge(vhost)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    return {
        "messages": messages,
        "rounds": rounds,
        "ledger": "postgresql" if ledger_url else "sqlite",
        "publish_bare_per_s": round(medians["publish_bare"]),
        "publish_confirmed_per_s": round(medians["publish_confirmed"]),
        "publish_ratio": round(medians["publish_confirmed"] / medians["publish_bare"], 2),
        "consume_bare_per_s": round(medians["consume_bare"]),
        "consume_with_ledger_per_s": round(medians["consume_with_ledger"]),
        "consume_ratio": round(medians["consume_with_ledger"] / medians["consume_bare"], 2),
        "consume_bare_validating_per_s": round(medians["consume_bare_validating"]),
        "consume_ratio_to_validating_loop": round(
            medians["consume_with_ledger"] / medians["consume_bare_validating"], 2
        ),
        "publish_bare_lost": lost_without_confirms,
        "all_rounds_per_s": {name: [round(v) for v in values] for name, values in figures.items()},
        "goal": "each ratio >= 0.5",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs; medians count")
    parser.add_argument("--prefetch", type=int, default=200, help="per shard consumer")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--ledger-url", help="default: a fresh SQLite file per round")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    parser.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL)
    args = parser.parse_args(argv)
    results = measure(
        Broker(args.amqp_url, args.management_url),
        messages=args.messages,
        rounds=args.rounds,
        prefetch=args.prefetch,
        batch_size=args.batch_size,
        ledger_url=args.ledger_url,
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
