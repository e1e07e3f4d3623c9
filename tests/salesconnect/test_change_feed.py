"""The change feed: complete, ordered, gapless under concurrent writers, prompt to wake."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.support.salesconnect import (
    ChangeJson,
    RunningSalesConnect,
    SalesConnectClient,
    SalesConnectError,
    UserJson,
    running_salesconnect,
)

DUE = date(2026, 11, 23)
WRITERS_PER_PROCESS = 4
WRITES_PER_WRITER = 30


@pytest.fixture
def second_process(
    salesconnect_service: RunningSalesConnect, tmp_path: Path
) -> Iterator[RunningSalesConnect]:
    """Another service process over the same database, as when several run side by side."""
    with running_salesconnect(salesconnect_service.database_url, tmp_path) as other:
        yield other


def test_every_change_is_fed_in_order_with_its_fields(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    head = salesconnect.head_seq()
    task = salesconnect.create_task(salesconnect_user["id"], "Call Dana", DUE, details="notes")
    salesconnect.update_task(task["id"], name="Call Dana back", status="completed")
    salesconnect.delete_task(task["id"])
    page = salesconnect.changes(head)
    assert page["head_seq"] >= head + 3
    entries = page["changes"]
    assert [e["seq"] for e in entries] == list(range(head + 1, head + 1 + len(entries)))
    created, updated, deleted = [e for e in entries if e["task_id"] == task["id"]]
    assert created == {
        "seq": created["seq"],
        "user_id": salesconnect_user["id"],
        "task_id": task["id"],
        "op": "task_created",
        "changed": {
            "name": "Call Dana",
            "status": "open",
            "priority": "normal",
            "due_date": "2026-11-23",
            "details": "notes",
        },
        "version": 1,
        "occurred_at": task["created_at"],
        "actor": salesconnect_user["id"],
        "origin": "user",
        "task_sync": "off",
        "salesforce_task_id": None,
        "task_created_at": task["created_at"],
        "first_enabled_at": None,
        "last_enabled_at": None,
    }
    assert updated["changed"] == {"name": "Call Dana back", "status": "completed"}
    assert (deleted["op"], deleted["version"], deleted["changed"]) == ("task_deleted", 3, {})
    assert page["next_after"] == entries[-1]["seq"]


def test_limit_pages_through_the_feed(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    head = salesconnect.head_seq()
    for index in range(5):
        salesconnect.create_task(salesconnect_user["id"], f"task {index}", DUE)
    first = salesconnect.changes(head, limit=2)
    second = salesconnect.changes(first["next_after"], limit=2)
    seqs = [e["seq"] for e in first["changes"] + second["changes"]]
    assert seqs == list(range(head + 1, head + 5))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": -1}, "after"),
        ({"after": "abc"}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"wait": 31}, "wait"),
        ({"wait": "nan"}, "wait"),
    ],
)
def test_bad_feed_parameters_are_named(
    salesconnect: SalesConnectClient, params: dict[str, object], field: str
) -> None:
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request("GET", "/api/changes", params=params)
    assert caught.value.status == 400
    assert field in caught.value.fields


def test_a_long_poll_with_nothing_new_answers_empty_when_the_wait_ends(
    salesconnect: SalesConnectClient,
) -> None:
    after = salesconnect.head_seq() + 1000
    page = salesconnect.changes(after, wait=0.3)
    assert page["changes"] == []
    assert page["next_after"] == after


def long_poll(
    client: SalesConnectClient, after: int, wait: float
) -> tuple[list[ChangeJson], float]:
    started = time.monotonic()
    page = client.changes(after, wait=wait)
    return page["changes"], time.monotonic() - started


def test_a_long_poll_wakes_when_a_change_commits(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    head = salesconnect.head_seq()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(long_poll, SalesConnectClient(salesconnect.base_url), head, 20.0)
        task = salesconnect.create_task(salesconnect_user["id"], "Wake up", DUE)
        changes, waited = waiting.result(timeout=30)
    assert [c["task_id"] for c in changes] == [task["id"]]
    assert waited < 10, "the poll ran to its deadline instead of waking on the commit"


def test_a_long_poll_sees_commits_made_by_another_process(
    salesconnect: SalesConnectClient,
    salesconnect_user: UserJson,
    second_process: RunningSalesConnect,
) -> None:
    head = salesconnect.head_seq()
    other = second_process.client()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(long_poll, SalesConnectClient(salesconnect.base_url), head, 20.0)
        task = other.create_task(salesconnect_user["id"], "From elsewhere", DUE)
        changes, waited = waiting.result(timeout=30)
    assert [c["task_id"] for c in changes] == [task["id"]]
    assert waited < 10, "the poll ran to its deadline instead of re-checking the database"


def test_concurrent_writers_in_two_processes_never_make_the_feed_skip(
    salesconnect: SalesConnectClient,
    salesconnect_user: UserJson,
    second_process: RunningSalesConnect,
) -> None:
    """A reader tails the feed while writers commit through two processes at once.

    Every page it reads must continue exactly where its cursor stood (no hole that a later
    commit could fill), and in the end it must have seen every write exactly once.
    """
    start = salesconnect.head_seq()
    user_id = salesconnect_user["id"]
    done = threading.Event()
    seen: list[ChangeJson] = []
    holes: list[str] = []

    def tail() -> None:
        reader = SalesConnectClient(salesconnect.base_url)
        cursor = start
        while True:
            finished = done.is_set()
            page = reader.changes(cursor, limit=25, wait=0.0 if finished else 0.2)
            seqs = [c["seq"] for c in page["changes"]]
            if seqs != list(range(cursor + 1, cursor + 1 + len(seqs))):
                holes.append(f"after {cursor} read {seqs}")
            seen.extend(page["changes"])
            cursor = page["next_after"]
            if finished and not seqs:
                return

    def write(client: SalesConnectClient, writer: int) -> list[tuple[str, int]]:
        written = []
        task = client.create_task(user_id, f"writer {writer}", DUE)
        written.append((task["id"], task["version"]))
        for index in range(WRITES_PER_WRITER - 1):
            updated = client.update_task(task["id"], details=f"{writer}.{index}")
            written.append((updated["id"], updated["version"]))
        return written

    clients = [SalesConnectClient(salesconnect.base_url), second_process.client()]
    with concurrent.futures.ThreadPoolExecutor(1 + 2 * WRITERS_PER_PROCESS) as pool:
        reader = pool.submit(tail)
        writes = [
            pool.submit(write, clients[writer % 2], writer)
            for writer in range(2 * WRITERS_PER_PROCESS)
        ]
        expected = {pair for future in writes for pair in future.result(timeout=120)}
        done.set()
        reader.result(timeout=60)

    assert holes == []
    seqs = [c["seq"] for c in seen]
    assert seqs == list(range(start + 1, start + 1 + len(seqs))), "every seq once, in order"
    mine = {(c["task_id"], c["version"]) for c in seen if c["user_id"] == user_id}
    assert mine == expected
    assert len(expected) == 2 * WRITERS_PER_PROCESS * WRITES_PER_WRITER
