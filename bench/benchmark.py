"""`tasksync bench`: every speed figure the issues set a goal for, in one run, on this machine.

In order, so no part loads another: the Salesforce emulator's own rate (`bench.emulator`), the
Sales Connect service's own rates (`bench.salesconnect`), publishing and consuming against
bare pika (`bench.messaging`), then the whole system with the emulator at 50 ms per call:
end-to-end latency of single edits at a steady rate, and backlog drains (`bench.endtoend`).
Same seed and sizes every run (`FULL`, or `QUICK` for a smoke test); the machine is noted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench import emulator as emulator_bench
from bench import endtoend
from bench import messaging as messaging_bench
from bench import salesconnect as salesconnect_bench
from bench.report import Figure, Goal, machine
from bench.system import Broker, System, SystemSettings

LATENCY_GOAL: Final = Goal("<=", 1000, "issue 6: one edit reaches the other side within 1 s, p99")
DRAIN_GOAL: Final = Goal(">=", 1000, "issue 6: 20,000 changes drain at >= 1,000/s to Salesforce")
CALLS_GOAL: Final = Goal("<=", 10, "issue 6: <= 10 Salesforce API calls per 1,000 changes")
RATIO_GOAL: Final = Goal(">=", 0.5, "issue 5: at least half the rate of bare pika")
EMULATOR_GOAL: Final = Goal(">=", 500, "issue 3: >= 500 single-record calls/s at --latency-ms 0")
SALESCONNECT_GOAL: Final = Goal(">=", 300, "issue 4: >= 300 task writes/s with SQLite")
FEED_GOAL: Final = Goal("<=", 100, "issue 4: a change delivered within 100 ms of its commit")
LOST_GOAL: Final = Goal("==", 0, "SPEC: nothing is lost")
EMULATOR_LATENCY_MS: Final = 50


@dataclass(frozen=True)
class Sizes:
    """How much each part does; fixed per mode so every run's figures compare."""

    mode: str
    users: int
    latency_edits: int
    latency_rate: float
    drain_changes: int
    emulator_clients: tuple[int, ...]
    emulator_seconds: float
    salesconnect_writes: int
    salesconnect_clients: int
    feed_samples: int
    messaging_messages: int
    messaging_rounds: int
    poll_interval: float | None


FULL: Final = Sizes(
    mode="full",
    users=8,
    latency_edits=600,
    latency_rate=20.0,
    drain_changes=20_000,
    emulator_clients=(1, 2, 4),
    emulator_seconds=10.0,
    salesconnect_writes=3000,
    salesconnect_clients=8,
    feed_samples=200,
    messaging_messages=20_000,
    messaging_rounds=3,
    poll_interval=None,  # the product's default
)
QUICK: Final = Sizes(
    mode="quick",
    users=2,
    latency_edits=40,
    latency_rate=20.0,
    drain_changes=300,
    emulator_clients=(2,),
    emulator_seconds=2.0,
    salesconnect_writes=400,
    salesconnect_clients=4,
    feed_samples=20,
    messaging_messages=2000,
    messaging_rounds=1,
    poll_interval=1.0,
)


def run_benchmark(
    broker: Broker, sizes: Sizes, *, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Run every part; the JSON document `tasksync bench` writes."""
    started = time.monotonic()
    document: dict[str, Any] = {
        "format": "tasksync-bench/1",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "sizes": asdict(sizes),
        "machine": machine(broker.version()),
    }
    with tempfile.TemporaryDirectory(prefix="tasksync-bench-") as directory:
        workdir = Path(directory)
        failures: dict[str, str] = {}

        def part(name: str, what: str, measure: Callable[[], Any]) -> None:
            """One part; a part that fails is recorded and the others still run."""
            say(what)
            try:
                document[name] = measure()
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
                say(f"{name} failed: {failures[name]}")

        part(
            "emulator",
            "the Salesforce emulator's own rate (--latency-ms 0)",
            lambda: emulator_bench.measure(
                workdir / "emulator", sizes.emulator_clients, sizes.emulator_seconds, echo=False
            ),
        )
        part(
            "salesconnect",
            "the Sales Connect service's own rates",
            lambda: salesconnect_bench.measure(
                workdir / "salesconnect",
                writes=sizes.salesconnect_writes,
                clients=sizes.salesconnect_clients,
                samples=sizes.feed_samples,
                echo=False,
            ),
        )
        part(
            "messaging",
            "publishing and consuming against bare pika",
            lambda: messaging_bench.measure(
                broker, messages=sizes.messaging_messages, rounds=sizes.messaging_rounds
            ),
        )
        part(
            "system",
            f"the whole system, emulator at {EMULATOR_LATENCY_MS} ms per call",
            lambda: measure_system(workdir / "system", broker, sizes, seed=seed, say=say),
        )
        document.update(document.pop("system", {}))
        document["failures"] = failures
    document["seconds"] = round(time.monotonic() - started, 1)
    document["figures"] = [figure.as_json() for figure in figures(document)]
    return document


def measure_system(
    workdir: Path, broker: Broker, sizes: Sizes, *, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Latency, then the backlog drains, on one system; then whether both sides agree."""
    results: dict[str, Any] = {}
    settings = SystemSettings(
        workdir=workdir,
        broker=broker,
        emulator_args=(
            "--latency-ms",
            str(EMULATOR_LATENCY_MS),
            "--seed",
            str(seed),
            "--daily-api-limit",
            "100000000",
        ),
        poll_interval=sizes.poll_interval,
    )
    with System(settings) as system:
        users = [
            system.create_synced_user(f"Bench user {n}", wait_first_sync=False)
            for n in range(sizes.users)
        ]
        for user in users:
            system.wait_first_sync(user.user_id)
        say(f"latency: {sizes.latency_edits} edits each way at {sizes.latency_rate:g}/s")
        results["latency"] = endtoend.measure_latency(
            system, users, edits=sizes.latency_edits, rate=sizes.latency_rate, seed=seed
        )
        say(f"backlog drain: {sizes.drain_changes:,} changes each way, creates then edits")
        results["drain"] = endtoend.measure_drain(
            system, users, size=sizes.drain_changes, seed=seed, broker_pid=broker.node_pid()
        )
        say("checking that both sides agree")
        outcome = system.verify(strict_subjects=True)
        results["differences_after"] = len(outcome.differences)
        results["differences_sample"] = outcome.differences[:20]
    return results


def _dig(document: Any, *path: str) -> Any:
    """document[path...], or None where a part is missing (it failed)."""
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


DIRECTIONS: Final = (
    ("to_salesforce", "to-salesforce", "Sales Connect -> Salesforce"),
    ("to_salesconnect", "to-salesconnect", "Salesforce -> Sales Connect"),
)


def figures(document: dict[str, Any]) -> list[Figure]:
    """The figures of a bench document, each with the goal it answers to. A part that failed
    leaves its figures without a value."""
    sizes = document["sizes"]
    found: list[Figure] = []
    rate = sizes["latency_rate"]
    for key, _, title in DIRECTIONS:
        result = _dig(document, "latency", key) or {}
        for share in ("p50", "p95", "p99"):
            found.append(
                Figure(
                    f"latency.{key}.{share}_ms",
                    f"edit latency {title} {share} at {rate:g}/s",
                    result.get(f"{share}_ms"),
                    "ms",
                    LATENCY_GOAL if share == "p99" else None,
                )
            )
        lost = result["edits"] - result["arrived"] if result else None
        found.append(Figure(f"latency.{key}.lost", f"edits lost {title}", lost, "", LOST_GOAL))
    for stage in ("creates", "edits"):
        for key, worker, title in DIRECTIONS:
            result = _dig(document, "drain", stage, worker) or {}
            prefix = f"drain.{stage}.{key}"
            label = f"backlog of {sizes['drain_changes']:,} {stage} {title}"
            to_salesforce = key == "to_salesforce"
            found += [
                Figure(
                    f"{prefix}.changes_per_second",
                    f"{label}: drain rate",
                    result.get("changes_per_second"),
                    "changes/s",
                    DRAIN_GOAL if to_salesforce else None,
                ),
                Figure(
                    f"{prefix}.salesforce_calls_per_1000",
                    f"{label}: Salesforce calls per 1,000",
                    result.get("salesforce_calls_per_1000"),
                    "calls",
                    CALLS_GOAL if to_salesforce else None,
                ),
                Figure(
                    f"{prefix}.worker_peak_rss_mib",
                    f"{label}: {worker} worker peak RSS",
                    result.get("worker_peak_rss_mib"),
                    "MiB",
                ),
            ]
            cpu = result.get("cpu_share_of_one_core") or {}
            for process in ("emulator", "salesconnect"):
                found.append(
                    Figure(
                        f"{prefix}.{process}_cpu_share",
                        f"{label}: {process} CPU (share of one core)",
                        cpu.get(process),
                        "",
                    )
                )
    found += [
        Figure(
            "messaging.publish_ratio",
            "publish with confirms / bare pika without",
            _dig(document, "messaging", "publish_ratio"),
            "x",
            RATIO_GOAL,
        ),
        Figure(
            "messaging.consume_ratio",
            "consume with the ledger / bare pika consume-and-ack",
            _dig(document, "messaging", "consume_ratio"),
            "x",
            RATIO_GOAL,
        ),
        Figure(
            "messaging.publish_confirmed_per_s",
            "publish with confirms",
            _dig(document, "messaging", "publish_confirmed_per_s"),
            "msg/s",
        ),
        Figure(
            "messaging.consume_with_ledger_per_s",
            "consume with the ledger",
            _dig(document, "messaging", "consume_with_ledger_per_s"),
            "msg/s",
        ),
        Figure(
            "emulator.calls_per_second",
            "Salesforce emulator, single-record calls",
            _dig(document, "emulator", "best_calls_per_second"),
            "calls/s",
            EMULATOR_GOAL,
        ),
        Figure(
            "salesconnect.writes_per_second",
            "Sales Connect service, task writes (SQLite)",
            _dig(document, "salesconnect", "writes", "writes_per_second"),
            "writes/s",
            SALESCONNECT_GOAL,
        ),
        Figure(
            "salesconnect.feed_delivery_p99_ms",
            "Sales Connect change feed delivery p99",
            _dig(document, "salesconnect", "delivery_same_process", "ms_p99"),
            "ms",
            FEED_GOAL,
        ),
        Figure(
            "system.differences_after",
            "differences between the sides afterwards (verify)",
            _dig(document, "differences_after"),
            "",
            LOST_GOAL,
        ),
    ]
    return found
