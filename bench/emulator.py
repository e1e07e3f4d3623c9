"""How many single-record calls per second the Salesforce emulator serves at --latency-ms 0.

Goal (issue 3): at least 500 single-record calls per second on this machine, so the emulator is
never what bounds the bridge's benchmarks. Each client is a separate process driving
simple-salesforce unchanged over HTTPS keep-alive, looping create -> get -> update on Tasks; the
figure is all clients' completed calls divided by the wall time, measured for 1, 2 and 4 clients.
The emulator's own CPU time per call is read from /proc, so the figure can be told apart from
what the clients cost (they share the two cores with it).

Run: `.venv/bin/python -m bench.emulator [--seconds 10] [--clients 1,2,4]`; results are printed
and written to bench/results/emulator.json. `tasksync bench` runs `measure()` as part of its
figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simple_salesforce.api import Salesforce

from bench.clients import access_token, http_session, task_object
from bench.system import Component, hermetic_environment, wait_ready
from workers.up import EMULATOR

GOAL_CALLS_PER_SECOND = 500
RESULTS = Path(__file__).resolve().parent / "results" / "emulator.json"


def _client(info: Mapping[str, Any], token: str, seconds: float, queue: Any) -> None:
    sf = Salesforce(
        instance_url=info["instance_url"],
        session_id=token,
        session=http_session(info["ca_path"], "bench"),
    )
    tasks = task_object(sf)
    latencies: dict[str, list[float]] = {"create": [], "get": [], "update": []}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        started = time.perf_counter()
        body = {"Subject": f"bench {os.getpid()} {n}", "ActivityDate": "2026-12-01"}
        task_id = tasks.create(body)["id"]
        created = time.perf_counter()
        tasks.get(task_id)
        got = time.perf_counter()
        tasks.update(task_id, {"Status": "Completed"})
        done = time.perf_counter()
        latencies["create"].append(created - started)
        latencies["get"].append(got - created)
        latencies["update"].append(done - got)
        n += 1
    queue.put(latencies)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextmanager
def emulator_at_full_speed(workdir: Path) -> Iterator[Component]:
    """An emulator process of its own at --latency-ms 0, with an allowance that never runs out."""
    emulator = Component(
        EMULATOR,
        workdir,
        hermetic_environment(),
        ("--latency-ms", "0", "--daily-api-limit", "1000000000"),
    )
    emulator.start()
    try:
        wait_ready([emulator], 60)
        yield emulator
    finally:
        emulator.stop()


def run(emulator: Component, clients: int, seconds: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    rep = emulator.info["sales_rep"]
    token = access_token(emulator.info, rep["username"], rep["password"])
    processes = [
        context.Process(target=_client, args=(emulator.info, token, seconds, queue))
        for _ in range(clients)
    ]
    cpu_before = _cpu_seconds(emulator.pid)
    started = time.monotonic()
    for process in processes:
        process.start()
    results = [queue.get(timeout=seconds + 60) for _ in processes]
    elapsed = time.monotonic() - started
    for process in processes:
        process.join()
    cpu = _cpu_seconds(emulator.pid) - cpu_before
    by_op: dict[str, list[float]] = {"create": [], "get": [], "update": []}
    for result in results:
        for op, values in result.items():
            by_op[op].extend(values)
    calls = sum(len(v) for v in by_op.values())
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "calls": calls,
        "calls_per_second": round(calls / elapsed, 1),
        "emulator_cpu_ms_per_call": round(1000 * cpu / calls, 3),
        "latency_ms": {
            op: {
                "p50": round(1000 * statistics.median(values), 2),
                "p95": round(1000 * _percentile(values, 0.95), 2),
                "p99": round(1000 * _percentile(values, 0.99), 2),
            }
            for op, values in by_op.items()
        },
    }


def measure(
    workdir: Path, clients: Sequence[int], seconds: float, *, echo: bool = True
) -> dict[str, Any]:
    """Each client count in turn against one fresh emulator; the best rate is the figure."""
    figures = []
    with emulator_at_full_speed(workdir) as emulator:
        for count in clients:
            figure = run(emulator, count, seconds)
            figures.append(figure)
            if echo:
                print(
                    f"{count} client(s): {figure['calls_per_second']:.0f} calls/s "
                    f"({figure['calls']} calls in {figure['seconds']} s), emulator CPU "
                    f"{figure['emulator_cpu_ms_per_call']} ms/call, p95 "
                    + ", ".join(f"{op} {v['p95']} ms" for op, v in figure["latency_ms"].items())
                )
    best = max(f["calls_per_second"] for f in figures)
    return {
        "goal_calls_per_second": GOAL_CALLS_PER_SECOND,
        "cpus": os.cpu_count(),
        "runs": figures,
        "best_calls_per_second": best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,2,4")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as directory:
        clients = [int(c) for c in options.clients.split(",")]
        result = measure(Path(directory), clients, options.seconds)
    best = result["best_calls_per_second"]
    verdict = "meets" if best >= GOAL_CALLS_PER_SECOND else "MISSES"
    print(f"best: {best:.0f} calls/s; {verdict} the goal of {GOAL_CALLS_PER_SECOND} calls/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
