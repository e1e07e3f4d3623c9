"""Sales Connect service speed: task writes per second through the API, and how soon the
change feed delivers a change after its commit.

Goals (issue 4): at least 300 task writes/s with SQLite, delivery within 100 ms of commit.
Runs the real `tasksync salesconnect` process and talks HTTP to it, like the bridge does.

    .venv/bin/python -m bench.salesconnect [--writes 3000] [--clients 8] [--samples 200]
                                           [--postgres]

Prints the figures and writes them to bench/results/salesconnect.json. `tasksync bench` runs
`measure()` as part of its figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from bench.clients import SalesConnectUser
from bench.system import Component, hermetic_environment, wait_ready
from salesconnect.stamps import text_to_ms
from workers.up import SALESCONNECT

RESULTS = Path(__file__).with_name("results") / "salesconnect.json"
WRITES_GOAL_PER_SECOND = 300
DELIVERY_GOAL_MS = 100
POSTGRES_ADMIN_URL = os.environ.get(
    "TASKSYNC_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class RunningSalesConnect:
    url: str

    def client(self) -> SalesConnectUser:
        return SalesConnectUser(self.url)


@contextmanager
def running_salesconnect(database_url: str, workdir: Path) -> Iterator[RunningSalesConnect]:
    """`tasksync salesconnect` on a free port over `database_url`, stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    service = Component(
        SALESCONNECT,
        workdir,
        hermetic_environment({"TASKSYNC_SALESCONNECT_DB": database_url}),
    )
    service.start()
    try:
        wait_ready([service], 60)
        yield RunningSalesConnect(service.url)
    finally:
        service.stop()


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://{urlsplit(POSTGRES_ADMIN_URL).netloc}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _user(client: SalesConnectUser) -> dict[str, Any]:
    return client.create_user(
        email=f"bench-{uuid.uuid4().hex[:12]}@example.com", name="Bench", time_zone="Europe/Berlin"
    )


def measure_writes(service: RunningSalesConnect, writes: int, clients: int) -> dict[str, Any]:
    """Each client creates a task and then edits it (a write each) until `writes` are done."""
    setup = service.client()
    user = _user(setup)
    per_client = writes // clients
    start_gate = threading.Barrier(clients + 1)

    def run(index: int) -> list[float]:
        client = service.client()
        task = None
        latencies = []
        start_gate.wait()
        for count in range(per_client):
            began = time.perf_counter()
            if task is None or count % 10 == 0:
                fields = {"name": f"bench {index}.{count}", "due_date": "2026-11-23"}
                task = client.create_task(user["id"], fields)
            else:
                client.update_task(task["id"], {"details": f"edit {count}", "status": "open"})
            latencies.append(time.perf_counter() - began)
        client.close()
        return latencies

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(run, index) for index in range(clients)]
        start_gate.wait()
        began = time.perf_counter()
        latencies = [lat for future in futures for lat in future.result()]
        elapsed = time.perf_counter() - began
    done = len(latencies)
    return {
        "writes": done,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "writes_per_second": round(done / elapsed, 1),
        "request_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "request_ms_p99": round(sorted(latencies)[int(done * 0.99) - 1] * 1000, 2),
    }


def measure_delivery(
    writer_service: RunningSalesConnect, reader_service: RunningSalesConnect, samples: int
) -> dict[str, Any]:
    """A reader long-polls the feed; the writer commits one change at a time.

    Latency is taken from the change's own `occurred_at` (stamped just before its commit, on
    this machine's clock) to the moment the reader holds it, so it over-states, never hides,
    the delay.
    """
    writer, reader = writer_service.client(), reader_service.client()
    user = _user(writer)
    task = writer.create_task(user["id"], {"name": "latency probe", "due_date": None})
    latencies_ms: list[float] = []
    cursor = reader.head_seq()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for index in range(samples):
            waiting = pool.submit(reader.changes, cursor, limit=10, wait=10.0)
            time.sleep(0.01)  # let the poll reach the server and start waiting
            writer.update_task(task["id"], {"details": str(index)})
            page = waiting.result(timeout=30)
            received = time.time()
            change = page["changes"][-1]
            latencies_ms.append(received * 1000 - text_to_ms(change["occurred_at"]))
            cursor = page["next_after"]
    latencies_ms.sort()
    return {
        "samples": samples,
        "ms_p50": round(statistics.median(latencies_ms), 1),
        "ms_p95": round(latencies_ms[int(samples * 0.95) - 1], 1),
        "ms_p99": round(latencies_ms[int(samples * 0.99) - 1], 1),
        "ms_max": round(latencies_ms[-1], 1),
    }


def run_backend(
    name: str,
    database: AbstractContextManager[str],
    workdir: Path,
    *,
    writes: int,
    clients: int,
    samples: int,
    echo: bool = True,
) -> dict[str, Any]:
    with database as database_url, running_salesconnect(database_url, workdir / name) as service:
        written = measure_writes(service, writes, clients)
        if echo:
            print(f"[{name}] writes: {written}", flush=True)
        same = measure_delivery(service, service, samples)
        if echo:
            print(f"[{name}] feed delivery, same process: {same}", flush=True)
        with running_salesconnect(database_url, workdir / f"{name}-other") as other:
            cross = measure_delivery(other, service, max(20, samples // 4))
        if echo:
            print(f"[{name}] feed delivery, writer in another process: {cross}", flush=True)
    return {"writes": written, "delivery_same_process": same, "delivery_cross_process": cross}


def measure(
    workdir: Path, *, writes: int, clients: int, samples: int, echo: bool = True
) -> dict[str, Any]:
    """The SQLite figures: what `tasksync bench` reports."""
    sqlite_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    return run_backend(
        "sqlite",
        nullcontext(sqlite_url),
        workdir,
        writes=writes,
        clients=clients,
        samples=samples,
        echo=echo,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--postgres", action="store_true", help="also measure on PostgreSQL")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "goals": {
            "writes_per_second_sqlite": WRITES_GOAL_PER_SECOND,
            "delivery_ms": DELIVERY_GOAL_MS,
        }
    }
    sizes = {"writes": args.writes, "clients": args.clients, "samples": args.samples}
    with tempfile.TemporaryDirectory(prefix="bench-salesconnect-") as directory:
        workdir = Path(directory)
        results["sqlite"] = measure(workdir, **sizes)
        if args.postgres:
            database = postgres_database("tasksync_salesconnect_bench")
            results["postgresql"] = run_backend("postgresql", database, workdir, **sizes)
    sqlite = results["sqlite"]
    rate = sqlite["writes"]["writes_per_second"]
    delivery = sqlite["delivery_same_process"]["ms_p99"]
    results["verdict"] = {
        "writes_per_second_ok": rate >= WRITES_GOAL_PER_SECOND,
        "delivery_p99_ok": delivery <= DELIVERY_GOAL_MS,
    }
    print(
        f"SQLite: {rate} task writes/s (goal >= {WRITES_GOAL_PER_SECOND}); change delivered "
        f"p50 {sqlite['delivery_same_process']['ms_p50']} ms, p99 {delivery} ms after commit "
        f"(goal <= {DELIVERY_GOAL_MS} ms)"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
