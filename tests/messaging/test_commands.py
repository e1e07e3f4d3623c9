"""The operator commands against the real broker: topology, publish, status and parked, with the
exit codes their --help promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bridge.ledger import Ledger
from bridge.messaging import PARKED_QUEUE, Direction
from tests.messaging.helpers import TEST_TOPOLOGY
from tests.messaging.test_parking import park
from tests.support.rabbitmq import BrokerVhost
from tests.support.waiting import wait_for
from workers.cli import main

TOPOLOGY_ARGS = ["--shard-count", "2", "--retry-tiers", "300ms,600ms"]
UNREACHABLE = "amqp://guest:guest@127.0.0.1:9/%2F"


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def test_topology_export_check_agrees_with_the_committed_file() -> None:
    result = run("topology", "export", "--check")
    assert result.exit_code == 0, result.output


def test_topology_export_check_finds_drift(tmp_path: Path) -> None:
    target = tmp_path / "definitions.json"
    assert run("topology", "export", "--output", str(target)).exit_code == 0
    assert run("topology", "export", "--output", str(target), "--check").exit_code == 0
    drifted = run("topology", "export", "--output", str(target), "--check", "--shard-count", "8")
    assert drifted.exit_code == 1
    assert "out of date" in drifted.output
    listed = json.loads(run("topology", "export", "--output", "-").output)
    assert {q["name"] for q in listed["queues"]} >= {"tasksync.parked", "tasksync.to-salesforce.3"}


def test_topology_declare(rabbit_vhost: BrokerVhost) -> None:
    result = run("topology", "declare", "--amqp-url", rabbit_vhost.amqp_url, *TOPOLOGY_ARGS)
    assert result.exit_code == 0, result.output
    assert f"vhost '{rabbit_vhost.name}'" in result.output
    assert rabbit_vhost.depth("tasksync.to-salesconnect.1") == 0
    assert run("topology", "declare", "--amqp-url", UNREACHABLE).exit_code == 3


def test_publish_dry_run_validates_and_names_each_bad_field() -> None:
    valid = run(
        "publish",
        "--dry-run",
        "--origin",
        "salesconnect",
        "--task",
        "t-1",
        "--owner",
        "u-1",
        "--name",
        "Call Ann",
        "--due-date",
        "2026-12-01",
        "--priority",
        "high",
    )
    assert valid.exit_code == 0, valid.output
    assert "would publish to tasksync.salesconnect.changes with routing key upsert.u-1" in (
        valid.output
    )
    invalid = run(
        "publish",
        "--dry-run",
        "--origin",
        "salesforce",
        "--task",
        "short",
        "--owner",
        "u-1",
        "--due-date",
        "2026-02-30",
    )
    assert invalid.exit_code == 1
    assert "changed.due_date: Must be a calendar date" in invalid.output
    assert "record.salesforce_task_id: Must be an 18-character Salesforce id." in invalid.output
    assert run("publish", "--dry-run", "--origin", "salesconnect").exit_code == 2


def test_publish_from_flags_and_from_a_file(rabbit_vhost: BrokerVhost, tmp_path: Path) -> None:
    assert run("topology", "declare", "--amqp-url", rabbit_vhost.amqp_url, *TOPOLOGY_ARGS)
    published = run(
        "publish",
        "--amqp-url",
        rabbit_vhost.amqp_url,
        *TOPOLOGY_ARGS,
        "--origin",
        "salesconnect",
        "--task",
        "t-1",
        "--owner",
        "u-1",
        "--status",
        "completed",
    )
    assert published.exit_code == 0, published.output
    message_file = tmp_path / "change.json"
    message_file.write_text(
        json.dumps(
            {
                "origin": "salesforce",
                "op": "delete",
                "actor": "005000000000001AAA",
                "owner": {"salesforce_user_id": "005000000000001AAA"},
                "record": {"salesforce_task_id": "00T000000000001AAA"},
            }
        )
    )
    from_file = run(
        "publish", "--amqp-url", rabbit_vhost.amqp_url, *TOPOLOGY_ARGS, "--file", str(message_file)
    )
    assert from_file.exit_code == 0, from_file.output

    def drained(direction: Direction) -> list[Any]:
        return [e for q in TEST_TOPOLOGY.shard_queues(direction) for e in rabbit_vhost.drain(q)]

    [to_salesforce] = drained(Direction.TO_SALESFORCE)
    assert to_salesforce[1].message_id == published.output.strip()
    [to_salesconnect] = drained(Direction.TO_SALESCONNECT)
    assert to_salesconnect[0].routing_key == "delete.005000000000001AAA"
    message_file.write_text("[1, 2]")
    assert run("publish", "--dry-run", "--file", str(message_file)).exit_code == 1
    # Invalid input is reported before any connection is tried.
    assert run("publish", "--amqp-url", UNREACHABLE, "--file", "-", stdin="{}").exit_code == 1


def test_publish_to_an_unreachable_broker_exits_3() -> None:
    result = run(
        "publish",
        "--amqp-url",
        UNREACHABLE,
        "--origin",
        "salesconnect",
        "--task",
        "t",
        "--owner",
        "u",
    )
    assert result.exit_code == 3
    assert "not published" in result.output


def test_status_reports_queues_parked_ledger_and_lag(
    rabbit_vhost: BrokerVhost, tmp_path: Path
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    with Ledger.open(ledger_url) as ledger:
        ledger.advance_cursor("salesconnect-feed", expected=None, value="42")
    common = [
        "--amqp-url",
        rabbit_vhost.amqp_url,
        "--management-url",
        rabbit_vhost.management_url,
        "--ledger-url",
        ledger_url,
        *TOPOLOGY_ARGS,
    ]
    missing = run("status", *common, "--json")
    assert missing.exit_code == 4
    assert "tasksync.parked" in json.loads(missing.output)["missing_queues"]
    run("topology", "declare", "--amqp-url", rabbit_vhost.amqp_url, *TOPOLOGY_ARGS)
    park(rabbit_vhost, 2)

    def report_with_parked() -> dict[str, Any] | None:
        # The management API refreshes queue statistics every few seconds.
        result = run("status", *common, "--json")
        assert result.exit_code == 0, result.output
        loaded: dict[str, Any] = json.loads(result.output)
        return loaded if loaded["parked"] == 2 else None

    report = wait_for(report_with_parked, timeout=20, interval=0.5, what="the parked count")
    assert report["vhost"] == rabbit_vhost.name
    assert report["parked"] == 2
    names = [queue["name"] for queue in report["queues"]]
    assert "tasksync.to-salesforce.0" in names and report["missing_queues"] == []
    assert report["ledger"]["producer_cursors"] == 1
    [producer] = report["producers"]
    assert producer["name"] == "salesconnect-feed" and producer["lag_seconds"] >= 0
    text = run("status", *common)
    assert text.exit_code == 0 and "parked: 2" in text.output
    down = run("status", *common, "--management-url", "http://guest:guest@127.0.0.1:9")
    assert down.exit_code == 3


def test_parked_list_show_replay_and_drop(rabbit_vhost: BrokerVhost, tmp_path: Path) -> None:
    run("topology", "declare", "--amqp-url", rabbit_vhost.amqp_url, *TOPOLOGY_ARGS)
    ids = park(rabbit_vhost, 3)
    url = ["--amqp-url", rabbit_vhost.amqp_url, *TOPOLOGY_ARGS]
    listed = run("parked", "list", *url, "--json")
    assert listed.exit_code == 0
    assert [p["message_id"] for p in json.loads(listed.output)] == ids
    assert "reason 1" in run("parked", "list", *url).output
    shown = run("parked", "show", *url, ids[0])
    assert shown.exit_code == 0 and json.loads(shown.output)["error"] == "reason 0"
    assert run("parked", "show", *url, "no-such-id").exit_code == 4
    assert run("parked", "replay", *url).exit_code == 2
    replayed = run("parked", "replay", *url, ids[1])
    assert replayed.exit_code == 0 and ids[1] in replayed.output
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert run("parked", "drop", *url, ids[2], "--ledger-url", ledger_url).exit_code == 2
    dropped = run(
        "parked", "drop", *url, ids[2], "--ledger-url", ledger_url, "--reason", "test data"
    )
    assert dropped.exit_code == 0, dropped.output
    with Ledger.open(ledger_url) as ledger:
        [record] = ledger.dropped()
    assert record.message_id == ids[2] and record.reason == "test data"
    assert json.loads(record.body)["message_id"] == ids[2]
    assert [p["message_id"] for p in json.loads(run("parked", "list", *url, "--json").output)] == [
        ids[0]
    ]
    gone = run("parked", "drop", *url, "gone", "--ledger-url", ledger_url, "--reason", "x")
    assert gone.exit_code == 4
    assert rabbit_vhost.depth(PARKED_QUEUE) == 1


@pytest.mark.parametrize("command", [["parked", "list"], ["parked", "replay", "--all"]])
def test_parked_commands_exit_3_when_rabbitmq_is_unreachable(command: list[str]) -> None:
    assert run(*command, "--amqp-url", UNREACHABLE).exit_code == 3
