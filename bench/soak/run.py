"""`tasksync soak`: the whole system under simulated users and injected faults, then the checks.

1. A private RabbitMQ node (never the shared broker: the soak stops it) and the whole system on
   it; an org validation rule that refuses Subjects saying FORBIDDEN; a few synced users.
2. For `minutes`: the people (bench.soak.actors) act on both sides while the schedule
   (bench.soak.chaos) kills processes, stops the broker and makes Salesforce fail.
3. Calm: faults off, everything running; quiesce until the queues are empty and verify finds
   only what the invalid changes must leave, for a poller cycle.
4. The checks (bench.soak.checks), then an echo probe on the quiet system.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.report import machine
from bench.soak.actors import VALIDATION_RULE, Activity, users_status
from bench.soak.chaos import Chaos, schedule
from bench.soak.checks import (
    echo_probe,
    expected_differences,
    feed_echo_violations,
    model_violations,
    parking_violations,
    quiesce,
    verify_violations,
)
from bench.soak.model import Violation
from bench.system import PrivateBroker, System, SystemSettings

VIOLATION_KINDS: Final = ("lost", "doubled", "divergent", "echo", "parking")
POLL_INTERVAL: Final = 2.0
POLLER_SETTLE: Final = 2.0
RETRY_TIERS: Final = "1s,3s,10s,30s"


@dataclass(frozen=True)
class SoakPlan:
    """How hard and how long: the same plan and seed give the same people and faults."""

    minutes: float
    seed: int
    users: int = 3
    actions_per_second: float = 6.0
    invalid_share: float = 0.03
    quiesce_timeout: float = 120.0

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    @property
    def settle(self) -> float:
        """How long the system must stay quiet: a poller cycle and its settle time, and a bit."""
        return POLL_INTERVAL + POLLER_SETTLE + 2.0


def run_soak(plan: SoakPlan, *, rabbitmq_server: str, say: Callable[[str], None]) -> dict[str, Any]:
    """The whole soak; the JSON document `tasksync soak` writes (`violations` decides)."""
    document: dict[str, Any] = {
        "format": "tasksync-soak/1",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": plan.minutes,
        "seed": plan.seed,
        "plan": asdict(plan),
        "settings": {"retry_tiers": RETRY_TIERS, "poll_interval": POLL_INTERVAL},
    }
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tasksync-soak-"))
    try:
        broker = PrivateBroker(workdir / "rabbitmq", rabbitmq_server)
        say(f"starting a private RabbitMQ node ({broker.node_name}) and the whole system")
        broker.launch()
        system = System(
            SystemSettings(
                workdir=workdir / "system",
                broker=broker.broker,
                emulator_args=("--seed", str(plan.seed), "--daily-api-limit", "100000000"),
                shard_count=2,
                retry_tiers=RETRY_TIERS,
                poll_interval=POLL_INTERVAL,
            )
        )
        try:
            system.start(broker_ready=broker.wait_started)
            document["machine"] = machine(broker.broker.version())
            document.update(_soak(system, broker, plan, say))
        finally:
            say("stopping the system and the private RabbitMQ node")
            system.stop()
            broker.remove()
    finally:
        # What the components logged, the ledger and both systems' data stay for whoever
        # investigates a violation (or a run that could not finish).
        if document.get("violations") == []:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            document["kept_workdir"] = str(workdir)
            say(f"kept the logs, ledger and both systems' data in {workdir}")
    document["seconds"] = round(time.monotonic() - began, 1)
    return document


def _soak(
    system: System, broker: PrivateBroker, plan: SoakPlan, say: Callable[[str], None]
) -> dict[str, Any]:
    system.admin.set_validation_rules([VALIDATION_RULE])
    users = [
        system.create_synced_user(f"Soak user {n}", wait_first_sync=False)
        for n in range(plan.users)
    ]
    for user in users:
        system.wait_first_sync(user.user_id)
    activity = Activity(
        system,
        users,
        seed=plan.seed,
        rate=plan.actions_per_second,
        invalid_share=plan.invalid_share,
    )
    chaos = Chaos(system, broker, say)
    events = schedule(plan.seed, plan.seconds)
    say(f"{plan.minutes:g} minutes of users and faults ({len(events)} scheduled faults)")
    stop = threading.Event()
    people = threading.Thread(target=activity.run, args=(stop,), name="soak-people")
    started = time.monotonic()
    people.start()
    try:
        chaos.run(events, started)
        while time.monotonic() - started < plan.seconds:
            time.sleep(0.5)
            chaos.restart_crashed()
    finally:
        stop.set()
        people.join()
    say("calm: faults off, every component running; waiting for the system to quiesce")
    chaos.calm(timeout=180)
    expected = expected_differences(activity.models)
    quiet = quiesce(system, expected, settle=plan.settle, timeout=plan.quiesce_timeout)
    say(f"quiet after {quiet.seconds:.0f} s" if quiet.reached else "never quiesced")
    violations: list[Violation] = []
    if not quiet.reached:
        violations.append(
            Violation("lost", f"the system did not quiesce within {plan.quiesce_timeout:.0f} s")
        )
    violations += verify_violations(quiet.outcome, expected)
    found, counts = model_violations(system, users, activity.models)
    violations += found
    found, feed = feed_echo_violations(system, activity.models)
    violations += found
    found, parked = parking_violations(system, activity.models)
    violations += found
    stats = system.admin.stats()
    notifications = system.admin.notifications()
    found, probe = echo_probe(system, users, activity.models, settle=plan.settle, say=say)
    violations += found
    bridge = stats.get("by_client", {}).get("tasksync", {})
    return {
        "actions": dict(sorted(activity.done.items())),
        "actions_skipped": dict(sorted(activity.skipped.items())),
        "people_failures": activity.failures[:50],
        "tasks": users_status(activity.models),
        "chaos": chaos.log.as_json(),
        "salesforce": {
            "bridge_calls": bridge.get("total", 0),
            "bridge_calls_by_status": bridge.get("by_status", {}),
            "bridge_records_written": bridge.get("records_written", {}),
            "all_calls_by_status": stats.get("by_status", {}),
            "notifications_sent": notifications.get("notifications_sent"),
            "notifications_dropped": notifications.get("notifications_dropped"),
        },
        "salesconnect": feed,
        "counts": counts,
        "parked": parked,
        "quiesce_seconds": round(quiet.seconds, 1),
        "quiesced": quiet.reached,
        "verify": {
            "exit_code": quiet.outcome.exit_code,
            "differences": len(quiet.outcome.differences),
            "expected_differences": len(expected),
        },
        "echo_probe": probe,
        "violations": [violation.as_json() for violation in violations],
        "violations_by_kind": {
            kind: sum(1 for v in violations if v.kind == kind) for kind in VIOLATION_KINDS
        },
    }


def summary_lines(document: dict[str, Any]) -> list[str]:
    """The figures `tasksync soak` prints."""
    tasks = document.get("tasks", {})
    chaos = document.get("chaos", {})
    salesforce = document.get("salesforce", {})
    feed = document.get("salesconnect", {})
    lines = [
        f"soak: {document['minutes']:g} min, seed {document['seed']}, {document['seconds']} s",
        f"  people: {sum(document.get('actions', {}).values())} actions "
        f"{document.get('actions', {})}",
        f"  skipped (not synced yet, or changed under them): {document.get('actions_skipped')}",
        f"  tasks: {tasks}",
        f"  killed: {chaos.get('kills')}; broker outages {chaos.get('broker_outages')} "
        f"({chaos.get('broker_down_seconds')} s down); fault changes "
        f"{chaos.get('fault_changes')}; sessions expired {chaos.get('sessions_expired')} times",
        f"  Salesforce: bridge calls {salesforce.get('bridge_calls')} by status "
        f"{salesforce.get('bridge_calls_by_status')}; records written by the bridge "
        f"{salesforce.get('bridge_records_written')}; notifications sent "
        f"{salesforce.get('notifications_sent')}, dropped "
        f"{salesforce.get('notifications_dropped')}",
        f"  Sales Connect: {feed}",
        f"  counts: {document.get('counts')}",
        f"  parked: {len(document.get('parked', []))} (invalid changes made: "
        f"{tasks.get('poisoned')}); quiesced: {document.get('quiesced')} after "
        f"{document.get('quiesce_seconds')} s; verify {document.get('verify')}",
        f"  echo probe: {document.get('echo_probe')}",
    ]
    exits = chaos.get("unexpected_exits") or []
    if exits:
        lines.append(
            f"  warning: {len(exits)} components exited by themselves: "
            + ", ".join(f"{e['component']} ({e['exit_code']})" for e in exits)
        )
    if document.get("people_failures"):
        lines.append(f"  warning: people's own calls failed: {document['people_failures'][:5]}")
    if chaos.get("errors"):
        lines.append(f"  warning: faults that could not be injected: {chaos['errors'][:5]}")
    by_kind = document.get("violations_by_kind", {})
    lines.append(
        "  violations: " + ", ".join(f"{kind} {by_kind.get(kind, 0)}" for kind in VIOLATION_KINDS)
    )
    for violation in document.get("violations", [])[:40]:
        lines.append(f"    [{violation['kind']}] {violation['message']}")
    if document.get("kept_workdir"):
        lines.append(f"  logs, ledger and data kept in {document['kept_workdir']}")
    return lines
