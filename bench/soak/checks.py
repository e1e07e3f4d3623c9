"""The soak's verdict, once the system is quiet: every rule of "What users and operators must be
able to trust" (SPEC.md) turned into a check that names each violation.

* lost: a task or a field value the users' last writes call for is not there (the model), or
  `tasksync verify` finds a task missing on one side;
* doubled: verify finds a task twice, or a side holds more live tasks than the users made;
* divergent: verify finds a pair that disagrees (a field, or deleted on one side only);
* echo: the bridge wrote a user's own value back to the side it came from (the Sales Connect
  feed traced value by value), or, on a quiet system, one edit caused more than one write;
* parking: the parked queue holds anything but the invalid changes, one message each, with the
  reason the org or the mapping gave.

The differences the invalid changes must leave are expected, not violations: a task whose
create was parked is missing in Salesforce; a task whose edit was parked differs in that field.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.clients import task_object
from bench.endtoend import bench_salesforce
from bench.soak.actors import People
from bench.soak.model import Poison, TaskModel, Violation, echo_violations, field_violations
from bench.system import SyncedUser, System, VerifyOutcome, wait_until
from bridge.messaging import Direction

DIFFERENCE_KINDS: Final = {
    "missing_in_salesforce": "lost",
    "missing_in_salesconnect": "lost",
    "link_to_missing_salesforce_task": "lost",
    "duplicate_in_salesforce": "doubled",
    "duplicate_in_salesconnect": "doubled",
    "extra_in_salesforce": "doubled",
    "field_mismatch": "divergent",
    "deleted_in_salesforce_only": "divergent",
    "deleted_in_salesconnect_only": "divergent",
}
PROBE_TASKS: Final = 5


def expected_differences(models: Iterable[TaskModel]) -> set[tuple[str, str, str | None]]:
    """(kind, Sales Connect task id, field) of each difference an invalid change leaves."""
    expected: set[tuple[str, str, str | None]] = set()
    for model in models:
        if model.poison is None or not model.salesconnect_id:
            continue
        if model.poisoned_create:
            expected.add(("missing_in_salesforce", model.salesconnect_id, None))
        elif model.poison is Poison.DETAILS_TOO_LONG:
            expected.add(("field_mismatch", model.salesconnect_id, "details"))
        else:
            expected.add(("field_mismatch", model.salesconnect_id, "name"))
    return expected


def _difference_key(finding: Mapping[str, Any]) -> set[tuple[str, str, str | None]]:
    field = finding.get("field") if finding.get("kind") == "field_mismatch" else None
    return {
        (str(finding.get("kind")), str(task_id), field)
        for task_id in finding.get("salesconnect_task_ids") or [""]
    }


def unexpected_differences(
    outcome: VerifyOutcome, expected: set[tuple[str, str, str | None]]
) -> list[dict[str, Any]]:
    return [finding for finding in outcome.differences if not _difference_key(finding) & expected]


def verify_violations(
    outcome: VerifyOutcome, expected: set[tuple[str, str, str | None]]
) -> list[Violation]:
    if outcome.exit_code not in (0, 1):
        return [
            Violation(
                "divergent", f"verify could not run ({outcome.exit_code}): {outcome.stderr[-500:]}"
            )
        ]
    return [
        Violation(
            DIFFERENCE_KINDS.get(str(finding.get("kind")), "divergent"),
            f"verify: {finding.get('kind')}: {finding.get('message')}",
            ",".join(finding.get("salesconnect_task_ids") or []) or None,
        )
        for finding in unexpected_differences(outcome, expected)
    ]


@dataclass
class Quiet:
    seconds: float
    reached: bool
    outcome: VerifyOutcome


def quiesce(
    system: System,
    expected: set[tuple[str, str, str | None]],
    *,
    settle: float,
    timeout: float,
) -> Quiet:
    """Until no message waits in any work or retry queue and verify finds only the expected
    differences, twice, `settle` seconds apart (so the poller had a full cycle to bring
    anything the queues did not hold)."""
    started = time.monotonic()
    clean_since: float | None = None
    last = VerifyOutcome(-1, {}, "not run")
    while time.monotonic() - started < timeout:
        waiting = sum(system.ready_messages(direction) for direction in Direction)
        if waiting == 0:
            last = system.verify(strict_subjects=True)
            clean = last.exit_code in (0, 1) and not unexpected_differences(last, expected)
            if clean and clean_since is None:
                clean_since = time.monotonic()
            elif clean and clean_since is not None and time.monotonic() - clean_since >= settle:
                return Quiet(time.monotonic() - started, True, last)
            elif not clean:
                clean_since = None
        else:
            clean_since = None
        time.sleep(1.0)
    return Quiet(time.monotonic() - started, False, last)


def queues_quiet(system: System, *, settle: float, timeout: float) -> bool:
    """Until no message waits in any work or retry queue, twice, `settle` seconds apart."""
    started = time.monotonic()
    empty_since: float | None = None
    while time.monotonic() - started < timeout:
        if sum(system.ready_messages(direction) for direction in Direction) == 0:
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since >= settle:
                return True
        else:
            empty_since = None
        time.sleep(0.5)
    return False


def model_violations(
    system: System, users: Sequence[SyncedUser], models: Sequence[TaskModel]
) -> tuple[list[Violation], dict[str, int]]:
    """Each task's final Sales Connect state against the users' writes, and how many live tasks
    each side holds against how many the users made."""
    api = system.new_users_api()
    try:
        tasks = [task for user in users for task in api.tasks(user.user_id, include_deleted="true")]
    finally:
        api.close()
    by_id = {task["id"]: task for task in tasks}
    by_link = {task["salesforce_task_id"]: task for task in tasks if task["salesforce_task_id"]}
    violations: list[Violation] = []
    for model in models:
        final = by_id.get(model.salesconnect_id or "") or by_link.get(model.salesforce_id or "")
        if final is not None and model.salesconnect_id is None:
            model.salesconnect_id = str(final["id"])
        violations += field_violations(model, final)
    live_salesconnect = sum(1 for task in tasks if not task.get("deleted_at"))
    owners = ",".join(f"'{user.salesforce_user_id}'" for user in users)
    live_salesforce = int(
        bench_salesforce(system).query(f"SELECT COUNT() FROM Task WHERE OwnerId IN ({owners})")[
            "totalSize"
        ]
    )
    made_live = sum(1 for model in models if not model.deleted)
    made_live_in_salesforce = sum(
        1 for model in models if not model.deleted and not model.poisoned_create
    )
    counts = {
        "live_tasks_made": made_live,
        "live_salesconnect_tasks": live_salesconnect,
        "live_salesforce_tasks": live_salesforce,
        "live_salesforce_tasks_expected": made_live_in_salesforce,
    }
    for side, found, wanted in (
        ("Sales Connect", live_salesconnect, made_live),
        ("Salesforce", live_salesforce, made_live_in_salesforce),
    ):
        if found > wanted:
            violations.append(
                Violation("doubled", f"{side} holds {found} live tasks; the users made {wanted}")
            )
        elif found < wanted:
            violations.append(
                Violation("lost", f"{side} holds {found} live tasks; the users made {wanted}")
            )
    return violations, counts


def feed_echo_violations(
    system: System, models: Sequence[TaskModel]
) -> tuple[list[Violation], dict[str, int]]:
    entries = system.users_api.all_changes(0)
    bridge = [entry for entry in entries if entry["origin"] == "salesforce" and entry["task_id"]]
    links = sum(
        1
        for entry in bridge
        if entry["op"] == "task_updated" and set(entry["changed"]) == {"salesforce_task_id"}
    )
    violations, traced = echo_violations(models, bridge)
    users = sum(1 for entry in entries if entry["origin"] == "user" and entry["task_id"])
    return violations, {
        "salesconnect_changes_by_users": users,
        "salesconnect_changes_by_bridge": len(bridge) - links,
        "salesconnect_links_by_bridge": links,
        "bridge_updates_traced_to_salesforce_users": traced,
    }


def parking_violations(
    system: System, models: Sequence[TaskModel]
) -> tuple[list[Violation], list[dict[str, Any]]]:
    """The parked queue against the invalid changes the users made."""
    parked = system.parked()
    by_id = {model.salesconnect_id: model for model in models if model.salesconnect_id}
    seen: Counter[str] = Counter()
    listing: list[dict[str, Any]] = []
    violations: list[Violation] = []
    for message in parked:
        try:
            body = json.loads(message.received.body)
        except ValueError:
            body = {}
        record = body.get("record") or {}
        task_id = record.get("salesconnect_task_id")
        listing.append(
            {
                "message_id": message.message_id,
                "task": task_id,
                "op": body.get("op"),
                "origin": body.get("origin"),
                "reason": message.error,
            }
        )
        model = by_id.get(task_id) if task_id else None
        if model is None or model.poison is None:
            violations.append(
                Violation(
                    "parking",
                    f"a valid change was parked ({body.get('origin')} {body.get('op')} of "
                    f"{task_id or record.get('salesforce_task_id')}): {message.error}",
                    task_id,
                )
            )
            continue
        seen[str(task_id)] += 1
        if model.poison.reason_marker not in message.error:
            violations.append(
                Violation(
                    "parking",
                    f"task {task_id} was parked without its reason "
                    f"({model.poison.reason_marker} expected): {message.error}",
                    task_id,
                )
            )
    for model in models:
        if model.poison is None or not model.salesconnect_id:
            continue
        count = seen[model.salesconnect_id]
        if count != 1:
            violations.append(
                Violation(
                    "parking",
                    f"the invalid change of task {model.salesconnect_id} ({model.poison.value}) "
                    f"is parked {count} times, not once",
                    model.salesconnect_id,
                )
            )
    return violations, listing


def bridge_salesforce_records(system: System) -> int:
    bridge = system.admin.stats().get("by_client", {}).get("tasksync", {})
    return sum(int(n) for n in bridge.get("records_written", {}).values())


def echo_probe(
    system: System,
    users: Sequence[SyncedUser],
    models: Sequence[TaskModel],
    *,
    settle: float,
    say: Callable[[str], None],
) -> tuple[list[Violation], dict[str, Any]]:
    """On the quiet system: a few edits each side must cause exactly one write each on the
    other side and none back (the counters of both systems, as the echo rule is stated)."""
    people = People(system, users)
    ready = [
        model
        for model in models
        if model.poison is None
        and not model.deleted
        and model.salesconnect_id
        and model.salesforce_id
    ]
    if len(ready) < 2 * PROBE_TASKS:
        return [], {"skipped": f"only {len(ready)} synced live tasks"}
    on_salesconnect, on_salesforce = ready[:PROBE_TASKS], ready[PROBE_TASKS : 2 * PROBE_TASKS]
    records_before = bridge_salesforce_records(system)
    head = system.users_api.head_seq()
    for model in on_salesconnect:
        people.salesconnect().update_task(
            str(model.salesconnect_id), {"details": f"echo probe {model.key}"}
        )
    for model in on_salesforce:
        task_id = str(model.salesforce_id)
        people.salesforce_call(
            model.user_index,
            lambda sf, task_id=task_id: task_object(sf).update(  # type: ignore[misc]
                task_id, {"Description": "echo probe from Salesforce"}
            ),
        )
    say("echo probe: 5 edits each side on the quiet system")

    def arrived() -> bool:
        tasks = {
            str(model.salesconnect_id): system.users_api.task(str(model.salesconnect_id))
            for model in on_salesforce
        }
        return all(t["details"] == "echo probe from Salesforce" for t in tasks.values())

    wait_until(arrived, timeout=120, interval=0.5, what="the probe edits to reach Sales Connect")
    quiet = queues_quiet(system, settle=settle, timeout=120)
    records = bridge_salesforce_records(system) - records_before
    entries = system.users_api.all_changes(head)
    by_bridge = [e for e in entries if e["origin"] == "salesforce" and e["task_id"]]
    probed_sc = {str(model.salesconnect_id) for model in on_salesconnect}
    probed_sf = {str(model.salesconnect_id) for model in on_salesforce}
    back = [e for e in by_bridge if e["task_id"] in probed_sc]
    across = [e for e in by_bridge if e["task_id"] in probed_sf]
    figures = {
        "salesconnect_edits": PROBE_TASKS,
        "salesforce_edits": PROBE_TASKS,
        "salesforce_records_by_bridge": records,
        "salesconnect_writes_by_bridge": len(by_bridge),
        "quiet": quiet,
    }
    violations = []
    if records != PROBE_TASKS:
        violations.append(
            Violation(
                "echo",
                f"{PROBE_TASKS} Sales Connect edits made {records} Salesforce writes by the "
                f"bridge (the 5 Salesforce edits must make none)",
            )
        )
    if back:
        violations.append(
            Violation("echo", f"Sales Connect edits came back to Sales Connect: {back[:3]}")
        )
    if len(across) != PROBE_TASKS or len(by_bridge) != PROBE_TASKS:
        violations.append(
            Violation(
                "echo",
                f"{PROBE_TASKS} Salesforce edits made {len(across)} Sales Connect writes on "
                f"their tasks and {len(by_bridge)} in all",
            )
        )
    return violations, figures
