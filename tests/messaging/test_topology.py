"""Topology names and arguments; what the code declares equals deploy/rabbitmq/definitions.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.messaging import Direction, Topology, parse_retry_tiers, parse_shard_selection
from bridge.messaging.definitions import definitions_json, topology_definitions
from tests.messaging.helpers import declare
from tests.support.rabbitmq import BrokerVhost

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"


def test_the_issue_names_exist_and_read_well_in_the_management_ui() -> None:
    single = Topology(shard_count=1)
    assert single.shard_queues(Direction.TO_SALESFORCE) == ["tasksync.to-salesforce"]
    assert single.shard_queues(Direction.TO_SALESCONNECT) == ["tasksync.to-salesconnect"]
    default = Topology()
    assert default.shard_queues(Direction.TO_SALESFORCE) == [
        f"tasksync.to-salesforce.{n}" for n in range(4)
    ]
    names = {q.name for q in default.queues()} | {e.name for e in default.exchanges()}
    assert {
        "tasksync.salesconnect.changes",
        "tasksync.salesforce.changes",
        "tasksync.parked",
        "tasksync.parking",
        "tasksync.to-salesforce.retry.5s",
        "tasksync.to-salesforce.retry.30s",
        "tasksync.to-salesforce.retry.5m",
        "tasksync.to-salesconnect.retry.30m",
    } <= names


def test_queue_arguments_work_on_rabbitmq_3_10_and_4() -> None:
    layout = Topology()
    shard = dict(layout.shard_queue_arguments())
    assert shard == {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-delivery-limit": 20,
        "x-dead-letter-exchange": "tasksync.parking",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    tier = layout.retry_tiers[0]
    retry = dict(layout.retry_queue_arguments(Direction.TO_SALESFORCE, tier))
    assert retry["x-message-ttl"] == 5000
    assert retry["x-dead-letter-exchange"] == "tasksync.to-salesforce.shards"
    for queue in layout.queues():
        # Neither classic mirroring nor transient queues: both are gone in RabbitMQ 4.
        assert queue.arguments["x-queue-type"] in ("quorum", "classic")
        assert not any(key.startswith("ha-") for key in queue.arguments)


def test_a_task_always_maps_to_the_same_shard() -> None:
    # Fixed values: changing the hash would move live tasks between shards.
    layout = Topology(shard_count=4)
    assert [layout.shard_of(f"salesconnect:task-{n}") for n in range(8)] == [3, 2, 3, 3, 3, 2, 1, 0]
    assert layout.shard_of("salesforce:00T000000000001AAA") == 3
    spread = Counter(layout.shard_of(f"salesconnect:{n}") for n in range(10_000))
    assert all(2300 < count < 2700 for count in spread.values()), spread


@pytest.mark.parametrize(
    ("text", "expected"),
    [("all", (0, 1, 2, 3)), ("0-3", (0, 1, 2, 3)), ("0,2", (0, 2)), ("3,1-2", (1, 2, 3))],
)
def test_shard_selection(text: str, expected: tuple[int, ...]) -> None:
    assert parse_shard_selection(text, 4) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("4", "shard 4 does not exist; shards are 0-3"), ("2-1", "runs backwards"), ("a", "0-3")],
)
def test_bad_shard_selection_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shard_selection(text, 4)


def test_retry_tiers_parse_and_must_grow() -> None:
    assert [t.ttl_ms for t in parse_retry_tiers("500ms,5s,5m,1h")] == [
        500,
        5000,
        300_000,
        3_600_000,
    ]
    with pytest.raises(ValueError, match="must grow"):
        parse_retry_tiers("30s,5s")
    with pytest.raises(ValueError, match="positive whole duration"):
        parse_retry_tiers("5x")


def normalised(definitions: dict[str, Any]) -> dict[str, list[str]]:
    keys = {
        "queues": ("name", "durable", "auto_delete", "arguments"),
        "exchanges": ("name", "type", "durable", "auto_delete", "internal", "arguments"),
        "bindings": ("source", "destination", "destination_type", "routing_key", "arguments"),
    }
    return {
        kind: sorted(
            json.dumps({k: item[k] for k in fields}, sort_keys=True)
            for item in definitions[kind]
            if not str(item.get("name", item.get("source", ""))).startswith("amq.")
        )
        for kind, fields in keys.items()
    }


def test_declaring_is_idempotent_and_matches_the_exported_definitions(
    rabbit_vhost: BrokerVhost,
) -> None:
    layout = Topology()
    declare(rabbit_vhost.amqp_url, layout)
    declare(rabbit_vhost.amqp_url, layout)
    declared = rabbit_vhost.management.definitions(rabbit_vhost.name)
    assert normalised(declared) == normalised(topology_definitions(layout))


def test_the_committed_definitions_file_is_what_the_code_exports() -> None:
    assert DEFINITIONS.read_text() == definitions_json(Topology()), "run `tasksync topology export`"
