"""Faults with real processes: a worker killed mid-batch, a broker killed mid-stream, and two
workers sharing one queue set. Effects are counted in a database the worker processes write."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bridge.messaging import PARKED_QUEUE, Direction, Publisher, PublishError, Topology
from tests.messaging.helpers import (
    TEST_TOPOLOGY,
    WorkerProcess,
    declare,
    effect_rows,
    open_effects,
    sc_change,
    worker_args,
)
from tests.support.rabbitmq import BrokerVhost, PrivateRabbitNode
from tests.support.waiting import wait_for


def queues_of(topology: Topology) -> list[str]:
    direction = Direction.TO_SALESFORCE
    return [
        *topology.shard_queues(direction),
        *(topology.retry_queue(direction, tier) for tier in topology.retry_tiers),
        PARKED_QUEUE,
    ]


def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    rabbit_vhost: BrokerVhost, tmp_path: Path
) -> None:
    declare(rabbit_vhost.amqp_url)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    effects_url = f"sqlite:///{tmp_path / 'effects.sqlite3'}"
    engine = open_effects(effects_url)
    args = worker_args(
        rabbit_vhost.amqp_url,
        ledger_url,
        effects_url,
        batch_size=20,
        prefetch=50,
        apply_seconds=0.01,
        lease_seconds=2,
    )
    changes = [sc_change(f"task-{i % 20}", name=f"v{i}") for i in range(200)]
    first = WorkerProcess(tmp_path, "first", args)
    first.wait_ready()
    with Publisher(rabbit_vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher:
        publisher.publish_many(changes)
    wait_for(lambda: len(effect_rows(engine)) >= 60, what="the first worker to be mid-stream")
    first.kill()
    assert first.wait() == -9
    second = WorkerProcess(tmp_path, "second", args)
    second.wait_ready()
    expected = {str(c.message_id) for c in changes}
    wait_for(
        lambda: {row.message_id for row in effect_rows(engine)} == expected,
        timeout=60,
        what="every message applied",
    )
    wait_for(
        lambda: sum(rabbit_vhost.depths(queues_of(TEST_TOPOLOGY)).values()) == 0,
        what="every queue empty",
    )
    second.terminate()
    assert second.wait() == 0, second.log()
    rows = effect_rows(engine)
    counts = Counter(row.message_id for row in rows)
    twice = {message_id for message_id, count in counts.items() if count > 1}
    assert all(count <= 2 for count in counts.values())
    # Only the batches in the killed worker's hands (one per lane at most) can have been applied
    # again: everything it finished before was recorded in the ledger and acked, or recorded
    # and found there.
    last_of_lane = {
        row.batch_id.partition("-")[0]: row.batch_id for row in rows if row.pid == first.pid
    }
    in_hand = {row.message_id for row in rows if row.batch_id in set(last_of_lane.values())}
    assert twice <= in_hand, twice - in_hand
    first_applied_by = {}
    for row in rows:
        first_applied_by.setdefault(row.message_id, row.pid)
    assert all(first_applied_by[message_id] == first.pid for message_id in twice)


def test_a_broker_killed_and_restarted_mid_stream_loses_and_doubles_nothing(
    private_rabbit: PrivateRabbitNode, tmp_path: Path
) -> None:
    with private_rabbit.fresh_vhost() as vhost:
        declare(vhost.amqp_url)
        ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        effects_url = f"sqlite:///{tmp_path / 'effects.sqlite3'}"
        engine = open_effects(effects_url)
        worker = WorkerProcess(
            tmp_path,
            "worker",
            worker_args(
                vhost.amqp_url,
                ledger_url,
                effects_url,
                batch_size=10,
                apply_seconds=0.005,
                lease_seconds=2,
            ),
        )
        worker.wait_ready()
        changes = [sc_change(f"task-{i % 30}", name=f"v{i}") for i in range(300)]
        publish_errors: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            # A producer's loop: a chunk is retried (same message ids) until confirmed.
            with Publisher(vhost.amqp_url, topology=TEST_TOPOLOGY, confirm_timeout=10) as pub:
                for start in range(0, len(changes), 10):
                    # Paced by the worker, so the stream is still running when the broker dies.
                    while len(effect_rows(engine)) < start - 30 and not stop.wait(0.05):
                        pass
                    while not stop.is_set():
                        try:
                            pub.publish_many(changes[start : start + 10])
                            break
                        except PublishError as exc:
                            publish_errors.append(str(exc))
                            stop.wait(0.3)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            wait_for(lambda: len(effect_rows(engine)) >= 80, what="the stream to be flowing")
            private_rabbit.kill()
            private_rabbit.start()
            producer.join(90)
            assert not producer.is_alive()
            expected = {str(c.message_id) for c in changes}
            wait_for(
                lambda: {row.message_id for row in effect_rows(engine)} == expected,
                timeout=90,
                what="every message applied after the restart",
            )
        finally:
            stop.set()
            private_rabbit.start()
            worker.terminate()
            worker.wait()
        log = worker.log()
        assert log.count("consuming tasksync.to-salesforce.0") >= 2, "worker did not reconnect"
        assert publish_errors, "the producer should have seen the broker go away"
        counts = Counter(row.message_id for row in effect_rows(engine))
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v > 1}
        assert "PRECONDITION_FAILED" not in log, "a stale delivery tag was acked"


@pytest.mark.slow
def test_two_workers_on_one_queue_set_never_apply_one_task_at_once(
    rabbit_vhost: BrokerVhost, postgres_url: str, tmp_path: Path
) -> None:
    topology = Topology(shard_count=4, retry_tiers=TEST_TOPOLOGY.retry_tiers)
    declare(rabbit_vhost.amqp_url, topology)
    engine = open_effects(postgres_url)

    def args(shards: str) -> list[str]:
        return worker_args(
            rabbit_vhost.amqp_url,
            postgres_url,
            postgres_url,
            shard_count=4,
            shards=shards,
            batch_size=10,
            apply_seconds=0.005,
        )

    # Overlapping selections: shards 0-2 have both workers (one active, one standing by).
    first = WorkerProcess(tmp_path, "first", args("0-2"))
    first.wait_ready()
    second = WorkerProcess(tmp_path, "second", args("0-3"))
    second.wait_ready()
    changes = [sc_change(f"task-{i % 40}", name=f"v{i}") for i in range(400)]
    with Publisher(rabbit_vhost.amqp_url, topology=topology) as publisher:
        publisher.publish_many(changes)
    wait_for(lambda: len(effect_rows(engine)) >= 120, what="both workers to be busy")
    first.terminate()
    assert first.wait() == 0, first.log()
    expected = {str(c.message_id) for c in changes}
    wait_for(
        lambda: {row.message_id for row in effect_rows(engine)} == expected,
        timeout=60,
        what="the standby to take over and finish",
    )
    second.terminate()
    assert second.wait() == 0, second.log()
    rows = effect_rows(engine)
    assert Counter(row.message_id for row in rows).most_common(1)[0][1] == 1
    assert {row.pid for row in rows} == {first.pid, second.pid}
    taken_over = {
        row.task_key
        for row in rows
        if row.pid == second.pid and topology.shard_of(row.task_key) in (0, 1, 2)
    }
    assert taken_over, "the standby never took over the first worker's shards"
    with engine.connect() as conn:
        overlaps = conn.exec_driver_sql("SELECT count(*) FROM test_overlaps").scalar()
    assert overlaps == 0
    intervals: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for row in rows:
        intervals[row.task_key].append((row.started_ns, row.finished_ns, row.pid))
    for task, spans in intervals.items():
        spans.sort()
        for (_, end, pid), (start, _, other_pid) in itertools.pairwise(spans):
            assert start >= end or pid == other_pid, f"{task} applied by two workers at once"
