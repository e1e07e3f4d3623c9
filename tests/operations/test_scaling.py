"""Scaling out as docs/operations.md describes it: several to-salesforce worker processes on one
queue set, each with its own shards, plus a hot standby, all sharing a PostgreSQL ledger.

Every change is applied exactly once (`tasksync verify` finds no difference and Salesforce saw
one record write per change), the standby takes over the shards of a worker that stops, and
the processes' metrics add up: applied changes across workers equal the changes the producer
published, and their Salesforce calls equal what the org counted for the bridge's client.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.operations.support import (
    Sample,
    metrics_everywhere,
    probe,
    scrape,
    start_bridge_process,
    total,
)
from tests.support.databases import fresh_postgres_database
from tests.support.system import RunningSystem, SyncedUser, running_system
from tests.support.waiting import wait_for

DONE_OUTCOMES = ("applied", "duplicate", "echo-skipped", "skipped")
NOT_COUNTED_BY_THE_ORG = ("oauth2/token", "soap/login", "versions")


def applied(samples: list[Sample]) -> float:
    return total(samples, "tasksync_changes_total", direction="to-salesforce", outcome="applied")


def done(samples: list[Sample]) -> float:
    return sum(
        total(samples, "tasksync_changes_total", direction="to-salesforce", outcome=outcome)
        for outcome in DONE_OUTCOMES
    )


def salesforce_data_calls(samples: list[Sample]) -> float:
    return sum(
        sample.value
        for sample in samples
        if sample.name == "tasksync_salesforce_requests_total"
        and sample.labels["resource"] not in NOT_COUNTED_BY_THE_ORG
    )


def create_tasks(system: RunningSystem, users: list[SyncedUser], count: int, tag: str) -> list[str]:
    return [
        system.salesconnect.create_task(
            users[number % len(users)].user_id, f"{tag} call {number}", "2026-12-01"
        )["id"]
        for number in range(count)
    ]


def wait_consistent(system: RunningSystem, users: list[SyncedUser]) -> None:
    for user in users:
        system.wait_until_consistent(user.user_id, timeout=60, strict_subjects=True)


@pytest.mark.slow
def test_workers_share_shards_apply_each_change_once_and_their_metrics_add_up(
    tmp_path: Path,
) -> None:
    with (
        fresh_postgres_database("operations") as ledger_url,
        running_system(
            tmp_path / "system",
            components=frozenset({"salesconnect-producer"}),
            shard_count=4,
            ledger_url=ledger_url,
            extra_env=metrics_everywhere(["salesconnect-producer"]),
        ) as system,
    ):
        first = start_bridge_process(
            system, "worker-a", "to-salesforce", extra_args=("--shards", "0-1")
        )
        second = start_bridge_process(
            system, "worker-b", "to-salesforce", extra_args=("--shards", "2-3")
        )
        # Started last, it registers last on every shard: RabbitMQ keeps it waiting.
        standby = start_bridge_process(
            system, "worker-standby", "to-salesforce", extra_args=("--shards", "all")
        )
        producer = system.component("salesconnect-producer")
        workers = [first, second, standby]
        for worker in workers:
            wait_for(
                lambda worker=worker: probe(worker, "/readyz")[0] == 200,
                timeout=20,
                what=f"{worker.workdir.name} to be ready",
            )
            assert probe(worker, "/healthz")[0] == 200

        users = [system.create_synced_user(f"Scale {n}") for n in range(2)]
        created = create_tasks(system, users, 40, "first")
        wait_consistent(system, users)
        for task_id in created[:10]:
            system.salesconnect.update_task(task_id, details="updated once")
        wait_consistent(system, users)
        assert system.salesforce_writes() == {"create": 40, "update": 10}

        by_worker = [scrape(worker) for worker in workers]
        assert applied(by_worker[0]) > 0 and applied(by_worker[1]) > 0
        assert applied(by_worker[2]) == 0, "the standby applied while the others ran"
        assert sum(applied(samples) for samples in by_worker) == 50
        published = total(
            scrape(producer), "tasksync_producer_messages_published_total", origin="salesconnect"
        )
        assert published == 50
        assert sum(done(samples) for samples in by_worker) == published
        calls = system.salesforce_stats()["by_client"]["tasksync"]["total"]
        assert sum(salesforce_data_calls(samples) for samples in by_worker) == calls

        # Each process's series are its own: same names, labels that tell them apart.
        labels = {
            (s.labels["component"], s.labels["shards"], s.labels["process"])
            for samples in by_worker
            for s in samples
            if s.name == "tasksync_build_info"
        }
        assert {(c, shards) for c, shards, _ in labels} == {
            ("to-salesforce", "0-1"),
            ("to-salesforce", "2-3"),
            ("to-salesforce", "0-3"),
        }
        assert len({process for _, _, process in labels}) == 3

        # The worker of shards 0-1 stops: the standby takes its shards over.
        before_stop = scrape(first)
        first.stop()
        later = create_tasks(system, users, 20, "later")
        wait_consistent(system, users)
        assert system.salesforce_writes() == {"create": 60, "update": 10}
        after = [scrape(second), scrape(standby)]
        assert applied(after[1]) > 0, "the standby never took over shards 0-1"
        assert applied(before_stop) + sum(applied(samples) for samples in after) == 70
        assert len(later) == 20
        published = total(
            scrape(producer), "tasksync_producer_messages_published_total", origin="salesconnect"
        )
        assert done(before_stop) + sum(done(samples) for samples in after) == published == 70
        calls = system.salesforce_stats()["by_client"]["tasksync"]["total"]
        data_calls = salesforce_data_calls(before_stop) + sum(
            salesforce_data_calls(samples) for samples in after
        )
        assert data_calls == calls
        lag = wait_for(
            lambda: [
                s
                for s in scrape(producer)
                if s.name == "tasksync_producer_lag_seconds"
                and s.labels["cursor"] == "salesconnect-feed"
            ],
            timeout=10,
            what="the producer's lag gauge",
        )
        assert 0 <= lag[0].value < 60
