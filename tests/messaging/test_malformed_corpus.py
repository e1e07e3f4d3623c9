"""The malformed corpus (tests/messaging/corpus.py), published raw with pika onto the real work
queues of both directions, meets a real worker process per direction: every message is parked
in `tasksync.parked` with a reason naming the field and the rule, none is applied, no worker
crashes or stalls (a good message sent after them is applied), and no parked message carries
the worker's secrets."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import pika
import pytest
import requests

from bridge.messaging import PARKED_QUEUE, Direction, Publisher
from bridge.messaging.envelope import (
    ATTEMPTS_HEADER,
    DROPPED_HEADERS_HEADER,
    ERROR_HEADER,
    ERROR_KIND_HEADER,
    PARKED_FROM_HEADER,
)
from bridge.messaging.topology import SHARD_HEADER
from tests.messaging.corpus import CASE_ID_PREFIX, Malformed, corpus
from tests.messaging.helpers import (
    TEST_TOPOLOGY,
    WorkerProcess,
    declare,
    effect_rows,
    open_effects,
    sc_change,
    worker_args,
)
from tests.support.rabbitmq import BrokerVhost
from tests.support.waiting import wait_for

WORKER_PASSWORD: Final = f"corpus-worker-secret-{uuid.uuid4().hex}"
MAX_REASON_CHARS: Final = 2000


@pytest.fixture
def worker_url(rabbit_vhost: BrokerVhost) -> Iterator[str]:
    """An AMQP URL for a user of the workers' own, whose password must never be parked."""
    user = f"corpus-worker-{uuid.uuid4().hex[:8]}"
    management = rabbit_vhost.management
    management.request(
        "PUT", f"users/{quote(user, safe='')}", json={"password": WORKER_PASSWORD, "tags": ""}
    )
    management.request(
        "PUT",
        f"permissions/{quote(rabbit_vhost.name, safe='')}/{quote(user, safe='')}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    )
    yield rabbit_vhost.url_as(user, WORKER_PASSWORD)
    with contextlib.suppress(requests.HTTPError):
        management.request("DELETE", f"users/{quote(user, safe='')}")


def publish_raw(vhost: BrokerVhost, cases: list[Malformed]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(vhost.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for case in cases:
            if case.route == "queue":
                exchange, routing_key = "", TEST_TOPOLOGY.shard_queue(case.direction, 1)
            else:
                exchange, routing_key = case.direction.source_exchange, "upsert.user-1"
            channel.basic_publish(
                exchange,
                routing_key,
                case.body,
                pika.BasicProperties(
                    content_type=case.content_type,
                    content_encoding=case.content_encoding,
                    message_id=case.message_id,
                    delivery_mode=2,
                    headers={SHARD_HEADER: "0", **case.headers},
                ),
                mandatory=True,
            )
    finally:
        connection.close()


def problems_of(case: Malformed, props: Any, body: bytes) -> list[str]:
    """What is wrong with the parked copy of `case`, if anything."""
    problems = []
    headers = props.headers or {}
    reason = str(headers.get(ERROR_HEADER, ""))
    missing = [text for text in case.expect if text not in reason]
    if missing or headers.get(ERROR_KIND_HEADER) != "malformed":
        kind = headers.get(ERROR_KIND_HEADER)
        problems.append(f"{case.name}: {kind} {reason[:300]!r} lacks {missing}")
    if len(reason) > MAX_REASON_CHARS:
        problems.append(f"{case.name}: reason of {len(reason)} characters")
    if headers.get(ATTEMPTS_HEADER) != 1:
        problems.append(f"{case.name}: attempts {headers.get(ATTEMPTS_HEADER)!r}")
    expected_from = TEST_TOPOLOGY.shard_queue(case.direction, 1 if case.route == "queue" else 0)
    if headers.get(PARKED_FROM_HEADER) != expected_from:
        problems.append(f"{case.name}: parked from {headers.get(PARKED_FROM_HEADER)!r}")
    if (DROPPED_HEADERS_HEADER in headers) != case.drops_headers:
        problems.append(f"{case.name}: dropped headers {headers.get(DROPPED_HEADERS_HEADER)!r}")
    if body != case.body:
        problems.append(f"{case.name}: the parked body is not the message as sent")
    carried = f"{headers!r} {props!r} {body!r}"
    if WORKER_PASSWORD in carried or quote(WORKER_PASSWORD) in carried:
        problems.append(f"{case.name}: carries the worker's RabbitMQ password")
    return problems


def test_every_malformed_message_is_parked_with_its_reason_and_none_is_applied(
    rabbit_vhost: BrokerVhost, worker_url: str, tmp_path: Path
) -> None:
    cases = corpus()
    assert len(cases) >= 50
    declare(rabbit_vhost.amqp_url)
    workers = {}
    for direction in Direction:
        name = direction.value
        workers[direction] = WorkerProcess(
            tmp_path,
            name,
            worker_args(
                worker_url,
                f"sqlite:///{tmp_path / f'{name}-ledger.sqlite3'}",
                f"sqlite:///{tmp_path / f'{name}-effects.sqlite3'}",
                direction=name,
            ),
        )
    try:
        for worker in workers.values():
            worker.wait_ready()
        publish_raw(rabbit_vhost, cases)
        wait_for(
            lambda: rabbit_vhost.depth(PARKED_QUEUE) >= len(cases),
            timeout=60,
            interval=0.1,
            what=f"{len(cases)} parked messages",
        )
        # Still working: a good message sent after the corpus is applied.
        good = sc_change("task-after-the-corpus")
        with Publisher(rabbit_vhost.amqp_url, topology=TEST_TOPOLOGY) as publisher:
            publisher.publish(good)
        effects = open_effects(f"sqlite:///{tmp_path / 'to-salesforce-effects.sqlite3'}")
        applied = wait_for(lambda: effect_rows(effects), timeout=30, what="the good message")
        assert [row.message_id for row in applied] == [str(good.message_id)]
        other = open_effects(f"sqlite:///{tmp_path / 'to-salesconnect-effects.sqlite3'}")
        assert effect_rows(other) == []
        for worker in workers.values():
            assert worker.process.poll() is None, worker.log()
    finally:
        for worker in workers.values():
            worker.terminate()
        codes = {direction: worker.wait() for direction, worker in workers.items()}
    assert codes == {direction: 0 for direction in Direction}

    drained = rabbit_vhost.drain(PARKED_QUEUE)
    parked = {props.message_id: (props, body) for _, props, body in drained}
    by_id = {case.message_id: case for case in cases}
    assert len(drained) == len(cases) and sorted(parked) == sorted(by_id), (
        "every case parked once, nothing else parked"
    )
    problems = [
        problem
        for message_id, (props, body) in parked.items()
        for problem in problems_of(by_id[message_id], props, body)
    ]
    assert not problems, "\n".join(problems)
    for direction, worker in workers.items():
        log = worker.log()
        assert WORKER_PASSWORD not in log
        assert "Traceback" not in log and "batch failed unexpectedly" not in log, log[-3000:]
        assert log.count(f"parking {CASE_ID_PREFIX}") == sum(
            case.direction is direction for case in cases
        )
