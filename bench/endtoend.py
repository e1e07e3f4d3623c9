"""The whole system's speed, measured from the users' side: end-to-end latency of single edits
and how fast a backlog drains.

Latency: a change's source stamp (Sales Connect's `updated_at`, Salesforce's `SystemModstamp`)
to the stamp of the bridge's write on the other side, both read after the run from the systems
themselves, so measuring costs nothing while it runs and no polling interval blurs it. Each
edit goes to a task of its own, so each write on the other side is the edit's and no other.

Backlog drain: with both workers stopped, users make `size` changes on each side; once every
one waits in its queue, one worker is started, then the other, each alone so each direction's
figure is its own. The rate counts from the moment the worker consumes (its ready file) to the
commit stamp of its last write; API calls are the emulator's counters for the bridge's client
(`Sforce-Call-Options: client=tasksync`: the worker and the poller reading behind it) over the
drain; memory is the worker's peak resident set (VmHWM); CPU is each process's share of one
core over the drain, so a saturated emulator or Sales Connect would show.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, TypeVar

from simple_salesforce.api import Salesforce

from bench.clients import SalesConnectUser, salesforce_as, stamp_ms, task_object
from bench.report import cpu_busy_ticks
from bench.system import (
    ComponentError,
    SyncedUser,
    System,
    process_cpu_seconds,
    wait_until,
)
from bridge.messaging import Direction

T = TypeVar("T")

COLLECTION_SIZE: Final = 200
BRIDGE_CLIENT: Final = "tasksync"
BENCH_CLIENT: Final = "bench"
DIRECTION_WORKER: Final = {
    Direction.TO_SALESFORCE: "to-salesforce",
    Direction.TO_SALESCONNECT: "to-salesconnect",
}


def salesforce_stamp_ms(text: str) -> int:
    """`2026-11-22T10:15:30.123+0000` as epoch milliseconds."""
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(parsed.timestamp() * 1000)


def soql_instant(epoch_ms: int) -> str:
    stamp = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of them at or below."""
    ordered = sorted(values)
    rank = max(1, -(-int(share * 1000) * len(ordered) // 1000))
    return ordered[min(len(ordered), rank) - 1]


def chunks(items: Sequence[T], size: int = COLLECTION_SIZE) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PerThread:
    """One Sales Connect client and one simple-salesforce client per user and thread
    (`requests` sessions are not shared across threads)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.local = threading.local()

    def salesconnect(self) -> SalesConnectUser:
        api: SalesConnectUser | None = getattr(self.local, "salesconnect", None)
        if api is None:
            api = self.system.new_users_api()
            self.local.salesconnect = api
        return api

    def salesforce(self, user: SyncedUser) -> Salesforce:
        clients: dict[str, Salesforce] = getattr(self.local, "salesforce", None) or {}
        self.local.salesforce = clients
        if user.user_id not in clients:
            clients[user.user_id] = self.system.salesforce_as(user)
        return clients[user.user_id]


def run_all(jobs: Sequence[Callable[[], T]], threads: int) -> list[T]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda job: job(), jobs))


def run_paced(jobs: Sequence[Callable[[], T]], rate: float, threads: int) -> tuple[list[T], float]:
    """Start job i at i / rate seconds (an open loop: a slow answer does not slow the offered
    rate); returns the results and the rate actually offered."""
    with ThreadPoolExecutor(threads) as pool:
        started = time.monotonic()
        futures = []
        for index, job in enumerate(jobs):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(job))
        offered = len(jobs) / max(time.monotonic() - started, 1e-9) if len(jobs) > 1 else rate
        return [future.result() for future in futures], offered


# -- making tasks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Made:
    """A task made by a user on one side: whose, and its id on that side."""

    user: SyncedUser
    task_id: str


def make_salesconnect_tasks(
    system: System, users: Sequence[SyncedUser], count: int, label: str, threads: int = 8
) -> list[Made]:
    clients = PerThread(system)

    def create(index: int) -> Made:
        user = users[index % len(users)]
        fields = {"name": f"{label} {index}", "due_date": "2026-12-01", "details": ""}
        task = clients.salesconnect().create_task(
            user.user_id, fields, idempotency_key=f"{label}-{index}"
        )
        return Made(user, str(task["id"]))

    return run_all([partial(create, i) for i in range(count)], threads)


def make_salesforce_tasks(
    system: System, users: Sequence[SyncedUser], count: int, label: str
) -> list[Made]:
    """Tasks created by their owners in sObject Collections of 200 (one call each)."""
    made: list[Made] = []
    for position, user in enumerate(users):
        indexes = list(range(position, count, len(users)))
        salesforce = system.salesforce_as(user)
        for chunk in chunks(indexes):
            records = [
                {
                    "attributes": {"type": "Task"},
                    "Subject": f"{label} {index}",
                    "ActivityDate": "2026-12-01",
                    "OwnerId": user.salesforce_user_id,
                }
                for index in chunk
            ]
            results = salesforce.restful(
                "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
            )
            made.extend(Made(user, str(result["id"])) for result in results)
    return made


def update_salesconnect_tasks(
    system: System, targets: Sequence[Made], values: Sequence[str], threads: int = 8
) -> None:
    """Each target's details set by its user, one write each."""
    clients = PerThread(system)

    def edit(index: int) -> None:
        clients.salesconnect().update_task(targets[index].task_id, {"details": values[index]})

    run_all([partial(edit, index) for index in range(len(targets))], threads)


def update_salesforce_tasks(system: System, targets: Sequence[Made], values: Sequence[str]) -> None:
    """Each target's Description set by its owner, 200 records a call."""
    by_user: dict[str, list[tuple[Made, str]]] = {}
    for target, value in zip(targets, values, strict=True):
        by_user.setdefault(target.user.user_id, []).append((target, value))
    for pairs in by_user.values():
        salesforce = system.salesforce_as(pairs[0][0].user)
        for chunk in chunks(pairs):
            records = [
                {"attributes": {"type": "Task"}, "Id": target.task_id, "Description": value}
                for target, value in chunk
            ]
            salesforce.restful(
                "composite/sobjects", method="PATCH", json={"allOrNone": True, "records": records}
            )


# -- reading both sides -------------------------------------------------------------------------


def salesconnect_tasks(system: System, users: Sequence[SyncedUser]) -> list[dict[str, Any]]:
    api = system.new_users_api()
    try:
        return [task for user in users for task in api.tasks(user.user_id)]
    finally:
        api.close()


def bench_salesforce(system: System) -> Salesforce:
    """simple-salesforce as the integration user, counted under the client `bench`, so the
    bench's own reads never count as the bridge's calls."""
    integration = system.emulator.info["integration_user"]
    return salesforce_as(
        system.emulator.info,
        integration["username"],
        integration["password"],
        client=BENCH_CLIENT,
    )


def salesforce_rows(
    salesforce: Salesforce, ids: Sequence[str], fields: str
) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for chunk in chunks(list(ids)):
        id_list = ",".join(f"'{task_id}'" for task_id in chunk)
        result = salesforce.query_all(f"SELECT Id, {fields} FROM Task WHERE Id IN ({id_list})")
        for record in result["records"]:
            rows[str(record["Id"])] = dict(record)
    return rows


def wait_synced(
    system: System,
    users: Sequence[SyncedUser],
    salesconnect_made: Sequence[Made],
    salesforce_made: Sequence[Made],
    timeout: float,
) -> list[dict[str, Any]]:
    """Until every task made in Sales Connect is linked to a Task and every Task made in
    Salesforce has its task; the users' tasks then."""
    wanted_links = {made.task_id for made in salesforce_made}
    wanted_tasks = {made.task_id for made in salesconnect_made}

    def synced() -> list[dict[str, Any]] | None:
        tasks = salesconnect_tasks(system, users)
        linked = {task["id"] for task in tasks if task.get("salesforce_task_id")}
        links = {task["salesforce_task_id"] for task in tasks}
        return tasks if wanted_tasks <= linked and wanted_links <= links else None

    return wait_until(synced, timeout=timeout, interval=0.5, what="the new tasks to sync")


def wait_queues_empty(system: System, timeout: float) -> None:
    """Until no message waits in either direction's shard or retry queues, twice in a row."""
    seen: list[bool] = []

    def empty() -> bool:
        total = sum(system.ready_messages(direction) for direction in Direction)
        seen.append(total == 0)
        return len(seen) >= 2 and seen[-1] and seen[-2]

    wait_until(empty, timeout=timeout, interval=0.5, what="the queues to empty")


def wait_consistent(system: System, timeout: float) -> None:
    def consistent() -> bool:
        outcome = system.verify(strict_subjects=True)
        if outcome.exit_code not in (0, 1):
            raise ComponentError(f"verify failed ({outcome.exit_code}): {outcome.stderr}")
        return outcome.exit_code == 0

    wait_until(consistent, timeout=timeout, interval=1.0, what="both sides to agree")


# -- latency ------------------------------------------------------------------------------------


def _latency_summary(latencies_ms: Sequence[float], sent: int, offered: float) -> dict[str, Any]:
    if not latencies_ms:
        return {"edits": sent, "arrived": 0, "offered_per_second": round(offered, 1)}
    return {
        "edits": sent,
        "arrived": len(latencies_ms),
        "lost": sent - len(latencies_ms),
        "offered_per_second": round(offered, 1),
        "p50_ms": round(percentile(latencies_ms, 0.50), 1),
        "p95_ms": round(percentile(latencies_ms, 0.95), 1),
        "p99_ms": round(percentile(latencies_ms, 0.99), 1),
        "max_ms": round(max(latencies_ms), 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1),
    }


def measure_latency(
    system: System,
    users: Sequence[SyncedUser],
    *,
    edits: int,
    rate: float,
    seed: int,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """`edits` single edits each direction at `rate` per second, each on a task of its own."""
    rng = random.Random(seed)
    salesconnect_made = make_salesconnect_tasks(system, users, edits, "latency-sc")
    salesforce_made = make_salesforce_tasks(system, users, edits, "latency-sf")
    tasks = wait_synced(system, users, salesconnect_made, salesforce_made, timeout)
    wait_queues_empty(system, timeout)
    by_id = {task["id"]: task for task in tasks}
    by_link = {task["salesforce_task_id"]: task for task in tasks if task["salesforce_task_id"]}
    clients = PerThread(system)
    results: dict[str, Any] = {"edits_per_direction": edits, "rate_per_second": rate}

    # Sales Connect -> Salesforce: details written by the user, read back as Description.
    values = [f"latency to salesforce {index} {rng.getrandbits(48):012x}" for index in range(edits)]

    def edit_salesconnect(index: int) -> int:
        task_id = salesconnect_made[index].task_id
        task = clients.salesconnect().update_task(task_id, {"details": values[index]})
        return stamp_ms(task["updated_at"])

    source_ms, offered = run_paced(
        [partial(edit_salesconnect, i) for i in range(edits)],
        rate,
        threads=8,
    )
    linked_ids = [str(by_id[made.task_id]["salesforce_task_id"]) for made in salesconnect_made]
    reader = bench_salesforce(system)

    def arrived_in_salesforce() -> dict[str, dict[str, Any]] | None:
        rows = salesforce_rows(reader, linked_ids, "Description, SystemModstamp")
        done = sum(
            1
            for index, task_id in enumerate(linked_ids)
            if rows.get(task_id, {}).get("Description") == values[index]
        )
        return rows if done == edits else None

    rows = _wait_or_last(
        arrived_in_salesforce,
        timeout,
        lambda: salesforce_rows(reader, linked_ids, "Description, SystemModstamp"),
    )
    latencies = [
        salesforce_stamp_ms(rows[task_id]["SystemModstamp"]) - source_ms[index]
        for index, task_id in enumerate(linked_ids)
        if rows.get(task_id, {}).get("Description") == values[index]
    ]
    results["to_salesforce"] = _latency_summary(latencies, edits, offered)

    # Salesforce -> Sales Connect: Description written by the owner, read back as details.
    values = [
        f"latency to salesconnect {index} {rng.getrandbits(48):012x}" for index in range(edits)
    ]

    def edit_salesforce(index: int) -> None:
        made = salesforce_made[index]
        task_object(clients.salesforce(made.user)).update(
            made.task_id, {"Description": values[index]}
        )

    _, offered = run_paced(
        [partial(edit_salesforce, i) for i in range(edits)],
        rate,
        threads=8,
    )
    salesforce_ids = [made.task_id for made in salesforce_made]
    sc_ids = [str(by_link[task_id]["id"]) for task_id in salesforce_ids]

    def arrived_in_salesconnect() -> dict[str, dict[str, Any]] | None:
        current = {task["id"]: task for task in salesconnect_tasks(system, users)}
        done = sum(
            1
            for index, sc_id in enumerate(sc_ids)
            if current.get(sc_id, {}).get("details") == values[index]
        )
        return current if done == edits else None

    current = _wait_or_last(
        arrived_in_salesconnect,
        timeout,
        lambda: {task["id"]: task for task in salesconnect_tasks(system, users)},
    )
    sources = salesforce_rows(reader, salesforce_ids, "SystemModstamp")
    latencies = [
        stamp_ms(current[sc_id]["updated_at"])
        - salesforce_stamp_ms(sources[salesforce_ids[index]]["SystemModstamp"])
        for index, sc_id in enumerate(sc_ids)
        if current.get(sc_id, {}).get("details") == values[index]
    ]
    results["to_salesconnect"] = _latency_summary(latencies, edits, offered)
    return results


def _wait_or_last(
    condition: Callable[[], dict[str, dict[str, Any]] | None],
    timeout: float,
    last: Callable[[], dict[str, dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """What `condition` returns once everything arrived; at the deadline, what is there (the
    edits still missing are then reported as lost)."""
    try:
        return wait_until(condition, timeout=timeout, interval=0.5, what="every edit to arrive")
    except ComponentError:
        return last()


# -- backlog drain ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainWindow:
    """Counters and clocks at one moment, to subtract."""

    wall_ms: int
    bridge_calls: int
    bridge_by_resource: dict[str, int]
    bridge_records: int
    head_seq: int
    cpu: dict[str, float]
    busy_ticks: tuple[int, int]


def _window(system: System, broker_pid: int | None) -> DrainWindow:
    stats = system.admin.stats()
    bridge = stats.get("by_client", {}).get(BRIDGE_CLIENT, {})
    pids = system.processes()
    if broker_pid:
        pids["rabbitmq"] = broker_pid
    cpu = {}
    for name, pid in pids.items():
        try:
            cpu[name] = process_cpu_seconds(pid)
        except OSError:
            continue
    return DrainWindow(
        wall_ms=int(time.time() * 1000),
        bridge_calls=int(bridge.get("total", 0)),
        bridge_by_resource={
            resource: sum(methods.values())
            for resource, methods in bridge.get("by_resource", {}).items()
        },
        bridge_records=sum(int(n) for n in bridge.get("records_written", {}).values()),
        head_seq=system.users_api.head_seq(),
        cpu=cpu,
        busy_ticks=cpu_busy_ticks(),
    )


def wait_queued(system: System, direction: Direction, count: int, timeout: float) -> int:
    """Until at least `count` messages wait for `direction` and no more arrive for 3 s (the
    producers caught up); the number waiting."""
    history: list[tuple[float, int]] = []

    def settled() -> int | None:
        waiting = system.ready_messages(direction, retries=False)
        now = time.monotonic()
        history.append((now, waiting))
        if waiting < count:
            return None
        earlier = [n for at, n in history if now - at >= 3.0]
        return waiting if earlier and earlier[-1] == waiting else None

    return wait_until(
        settled, timeout=timeout, interval=0.5, what=f"{count} messages waiting for {direction}"
    )


def drain_one(
    system: System,
    direction: Direction,
    *,
    size: int,
    queued: int,
    broker_pid: int | None,
    timeout: float,
    measure_limit: float,
) -> dict[str, Any]:
    """Start the direction's worker on its backlog and measure it until the backlog is gone,
    or for `measure_limit` seconds (then the rate is what it applied so far, and the rest
    drains unmeasured, since the next stage needs the queues empty)."""
    name = DIRECTION_WORKER[direction]
    before = _window(system, broker_pid)
    worker = system.component(name)
    worker.start()
    worker.wait_ready(system.settings.start_timeout)
    ready_ms = int(time.time() * 1000)
    before.cpu[name] = worker.cpu_seconds()  # its start-up is not the drain's

    def progress() -> int:
        if direction is Direction.TO_SALESFORCE:
            bridge = system.admin.stats().get("by_client", {}).get(BRIDGE_CLIENT, {})
            written = sum(int(n) for n in bridge.get("records_written", {}).values())
            return written - before.bridge_records
        return system.users_api.head_seq() - before.head_seq

    def drained() -> bool:
        return system.ready_messages(direction) == 0

    what = f"the {name} backlog to drain"
    finished = True
    try:
        wait_until(lambda: progress() >= size, timeout=measure_limit, interval=0.25, what=what)
        wait_until(drained, timeout=timeout, interval=0.25, what=f"the {name} queues to empty")
    except ComponentError:
        finished = False  # measured as far as it got; the rest drains off the clock below
    memory = worker.memory_kib()
    after = _window(system, broker_pid)
    done = size if finished else min(size, progress())
    if finished:
        first_ms, last_ms, writes = _write_stamps(system, direction, before)
        seconds = (last_ms - ready_ms) / 1000 if last_ms else None
    else:
        first_ms, last_ms, writes = ready_ms, after.wall_ms, done
        seconds = (after.wall_ms - ready_ms) / 1000
        wait_until(lambda: progress() >= size, timeout=timeout, interval=1.0, what=what)
        wait_until(drained, timeout=timeout, interval=0.5, what=f"the {name} queues to empty")
    window_s = max((after.wall_ms - ready_ms) / 1000, 1e-3)
    busy = (after.busy_ticks[0] - before.busy_ticks[0]) / max(
        after.busy_ticks[1] - before.busy_ticks[1], 1
    )
    calls = after.bridge_calls - before.bridge_calls
    return {
        "worker": name,
        "changes": size,
        "messages_queued": queued,
        "writes": writes,
        "startup_s": round((ready_ms - before.wall_ms) / 1000, 2),
        "drain_s": None if seconds is None else round(seconds, 2),
        "changes_per_second": None if not seconds else round(size / seconds, 1),
        "steady_changes_per_second": (
            round(size / ((last_ms - first_ms) / 1000), 1)
            if last_ms and last_ms > first_ms
            else None
        ),
        "salesforce_calls": calls,
        "salesforce_calls_per_1000": round(1000 * calls / size, 2),
        "salesforce_calls_by_resource": {
            resource: count - before.bridge_by_resource.get(resource, 0)
            for resource, count in sorted(after.bridge_by_resource.items())
            if count - before.bridge_by_resource.get(resource, 0)
        },
        "worker_peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
        "cpu_share_of_one_core": {
            process: round((after.cpu[process] - before.cpu.get(process, 0.0)) / window_s, 2)
            for process in sorted(after.cpu)
        },
        "machine_busy_share": round(busy, 2),
    }


def _write_stamps(
    system: System, direction: Direction, before: DrainWindow
) -> tuple[int, int, int]:
    """(first, last) commit stamps of the bridge's writes since `before`, and how many."""
    if direction is Direction.TO_SALESFORCE:
        integration = system.emulator.info["integration_user"]["id"]
        since = soql_instant(before.wall_ms - 1000)
        rows = bench_salesforce(system).query_all(
            "SELECT SystemModstamp FROM Task WHERE LastModifiedById = "
            f"'{integration}' AND SystemModstamp >= {since} ORDER BY SystemModstamp"
        )["records"]
        stamps = [salesforce_stamp_ms(row["SystemModstamp"]) for row in rows]
    else:
        entries = system.users_api.all_changes(before.head_seq)
        stamps = [
            stamp_ms(entry["occurred_at"])
            for entry in entries
            if entry["origin"] == "salesforce" and entry["task_id"]
        ]
    if not stamps:
        return 0, 0, 0
    return min(stamps), max(stamps), len(stamps)


def measure_drain(
    system: System,
    users: Sequence[SyncedUser],
    *,
    size: int,
    seed: int,
    broker_pid: int | None,
    timeout: float = 3600.0,
    measure_limit: float = 600.0,
) -> dict[str, Any]:
    """Two backlogs each way: `size` creates, then `size` edits of those tasks."""
    rng = random.Random(seed)
    results: dict[str, Any] = {"changes_per_direction": size}
    targets: dict[Direction, list[Made]] = {}
    for stage in ("creates", "edits"):
        for name in DIRECTION_WORKER.values():
            system.stop_component(name)
        began = time.monotonic()
        if stage == "creates":
            targets[Direction.TO_SALESFORCE] = make_salesconnect_tasks(
                system, users, size, f"backlog-{seed}"
            )
            made_sc_s = time.monotonic() - began
            targets[Direction.TO_SALESCONNECT] = make_salesforce_tasks(
                system, users, size, f"backlog-{seed}"
            )
        else:
            update_salesconnect_tasks(
                system,
                targets[Direction.TO_SALESFORCE],
                [f"backlog edit {index} {rng.getrandbits(32):08x}" for index in range(size)],
            )
            made_sc_s = time.monotonic() - began
            update_salesforce_tasks(
                system,
                targets[Direction.TO_SALESCONNECT],
                [f"backlog edit {index} {rng.getrandbits(32):08x}" for index in range(size)],
            )
        stage_results: dict[str, Any] = {
            "salesconnect_user_writes_per_second": round(size / made_sc_s, 1),
        }
        queued = {
            direction: wait_queued(system, direction, size, timeout) for direction in Direction
        }
        for direction in Direction:
            stage_results[direction.value] = drain_one(
                system,
                direction,
                size=size,
                queued=queued[direction],
                broker_pid=broker_pid,
                timeout=timeout,
                measure_limit=measure_limit,
            )
        results[stage] = stage_results
        if stage == "creates":
            # The edits need every created task linked on both sides.
            wait_synced(
                system,
                users,
                targets[Direction.TO_SALESFORCE],
                targets[Direction.TO_SALESCONNECT],
                timeout,
            )
    return results
