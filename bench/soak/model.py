"""What the soak's simulated users did, and what that lets the end state be.

Pure: no I/O. The users record every write they made (which side, which field, the value in
Sales Connect's terms, and when: an exact stamp from Sales Connect's answer, or the interval
around a Salesforce call, whose `SystemModstamp` the answer does not carry). From those the
checks derive, per task and field, the values the final state may hold under the documented
rule (field by field, the latest source modification wins; docs/sync.md): every write that
could be the latest one. Writes before a task's last delete or undelete are left to
`tasksync verify` (a delete wins over concurrent edits, an undelete restores the undeleting
side's values), so the model never has to guess which edits a delete swallowed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

FIELDS: Final = ("name", "status", "priority", "due_date", "details")
STATUS_FROM_SALESFORCE: Final = {"Not Started": "open", "Completed": "completed"}
STATUS_TO_SALESFORCE: Final = {value: key for key, value in STATUS_FROM_SALESFORCE.items()}
PRIORITY_FROM_SALESFORCE: Final = {"Normal": "normal", "High": "high"}
PRIORITY_TO_SALESFORCE: Final = {value: key for key, value in PRIORITY_FROM_SALESFORCE.items()}
SALESFORCE_FIELDS: Final = {
    "Subject": "name",
    "Status": "status",
    "Priority": "priority",
    "ActivityDate": "due_date",
    "Description": "details",
}


class Side(enum.Enum):
    SALESCONNECT = "salesconnect"
    SALESFORCE = "salesforce"


class Poison(enum.Enum):
    """A deliberately invalid change that reaches the bridge and must be parked."""

    DETAILS_TOO_LONG = "details_too_long"  # Sales Connect allows 100,000; Salesforce 32,000
    VALIDATION_RULE = "validation_rule"  # the org's rule refuses Subjects saying FORBIDDEN

    @property
    def reason_marker(self) -> str:
        """Text the parked message's reason must contain."""
        if self is Poison.VALIDATION_RULE:
            return "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        return "32,000"


def neutral_from_salesforce(values: Mapping[str, Any]) -> dict[str, Any]:
    """Salesforce Task values as Sales Connect holds them after a sync."""
    neutral: dict[str, Any] = {}
    for name, value in values.items():
        target = SALESFORCE_FIELDS.get(name)
        if target == "status":
            neutral[target] = STATUS_FROM_SALESFORCE[value]
        elif target == "priority":
            neutral[target] = PRIORITY_FROM_SALESFORCE[value]
        elif target == "details":
            neutral[target] = value or ""
        elif target is not None:
            neutral[target] = value
    return neutral


@dataclass(frozen=True)
class Write:
    """One field written by a user: the value (Sales Connect's terms) and when, as an interval
    of epoch milliseconds that holds the source's modification stamp."""

    field: str
    value: Any
    side: Side
    low_ms: int
    high_ms: int


@dataclass(frozen=True)
class Existence:
    """A delete (`deleted=True`) or an undelete/restore by a user."""

    deleted: bool
    side: Side
    low_ms: int
    high_ms: int


@dataclass
class TaskModel:
    """One task as the users know it: its ids on each side (when known), its writes, whether
    it is deleted and by whom, and whether it was poisoned (then nobody touches it again)."""

    key: int
    user_index: int
    created_on: Side
    salesconnect_id: str | None = None
    salesforce_id: str | None = None
    writes: list[Write] = field(default_factory=list)
    existence: list[Existence] = field(default_factory=list)
    poison: Poison | None = None
    poisoned_create: bool = False
    busy: bool = False
    quiet_until: float = 0.0

    @property
    def deleted(self) -> bool:
        return bool(self.existence) and self.existence[-1].deleted

    @property
    def deleted_by(self) -> Side | None:
        return self.existence[-1].side if self.deleted else None

    def record(self, side: Side, values: Mapping[str, Any], low_ms: int, high_ms: int) -> None:
        for name, value in values.items():
            if name in FIELDS:
                self.writes.append(Write(name, value, side, low_ms, high_ms))

    def writes_since_existence(self) -> list[Write]:
        """Writes after the last delete or undelete; all of them if there was none."""
        if not self.existence:
            return list(self.writes)
        last = self.existence[-1].high_ms
        return [write for write in self.writes if write.low_ms > last]

    def acceptable(self) -> dict[str, set[Any]]:
        """Per field written since the last delete or undelete: the values that may be the
        final one (each write that could have the latest stamp)."""
        by_field: dict[str, list[Write]] = {}
        for write in self._as_stamped(self.writes_since_existence()):
            by_field.setdefault(write.field, []).append(write)
        allowed: dict[str, set[Any]] = {}
        for name, writes in by_field.items():
            latest_low = max(write.low_ms for write in writes)
            allowed[name] = {write.value for write in writes if write.high_ms >= latest_low}
        return allowed

    def _as_stamped(self, writes: list[Write]) -> list[Write]:
        """`writes` with the stamps the bridge may give them. Salesforce has no stamp per field:
        a Task is observed with its `SystemModstamp`, so a write seen only after the Task's
        next modification (its notification lost or refused, the poller reading after both)
        carries that one's stamp. A Salesforce write's stamp may therefore be as late as the
        next Salesforce write to the task."""
        calls = sorted({(w.low_ms, w.high_ms) for w in self.writes if w.side is Side.SALESFORCE})
        stamped = []
        for write in writes:
            later = [high for low, high in calls if low > write.high_ms]
            if write.side is Side.SALESFORCE and later:
                stamped.append(replace(write, high_ms=max(write.high_ms, min(later))))
            else:
                stamped.append(write)
        return stamped

    def values_from(self, side: Side) -> dict[str, set[Any]]:
        """Every value any user wrote to each field on `side` (for tracing the bridge's
        writes back to where they came from)."""
        found: dict[str, set[Any]] = {}
        for write in self.writes:
            if write.side is side:
                found.setdefault(write.field, set()).add(_hashable(write.value))
        return found


def _hashable(value: Any) -> Any:
    return value if not isinstance(value, (list, dict)) else repr(value)


@dataclass(frozen=True)
class Violation:
    """What the soak must fail on: `kind` is one of lost, doubled, divergent, echo, parking."""

    kind: str
    message: str
    task: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "task": self.task}


def field_violations(model: TaskModel, final: Mapping[str, Any] | None) -> list[Violation]:
    """The final Sales Connect task (None: there is none) against what the users did."""
    label = model.salesconnect_id or f"salesforce {model.salesforce_id}"
    if final is None or final.get("deleted_at"):
        if model.deleted:
            return []
        return [Violation("lost", f"task {label} should exist but is gone", label)]
    if model.deleted:
        return [Violation("lost", f"task {label} should be deleted but is live", label)]
    if model.poison is not None:
        return []
    found = []
    for name, allowed in sorted(model.acceptable().items()):
        value = final.get(name)
        if value not in allowed:
            found.append(
                Violation(
                    "lost",
                    f"task {label}: {name} is {_short(value)}, but the last write was "
                    f"{' or '.join(_short(v) for v in sorted(allowed, key=repr))}",
                    label,
                )
            )
    return found


def echo_violations(
    models: Iterable[TaskModel], bridge_writes: Iterable[Mapping[str, Any]]
) -> tuple[list[Violation], int]:
    """Sales Connect feed entries the bridge wrote (`origin: salesforce`), traced back: a write
    whose every changed value was written only by Sales Connect users, and never by a
    Salesforce user, came back from where it started: an echo. Returns the violations and how
    many writes were traced to a Salesforce user."""
    by_id = {model.salesconnect_id: model for model in models if model.salesconnect_id}
    violations: list[Violation] = []
    traced = 0
    previous_op: dict[str, str] = {}
    for entry in sorted(bridge_writes, key=lambda e: int(e.get("seq", 0))):
        task_id = str(entry.get("task_id"))
        restoring = previous_op.get(task_id) == "task_restored"
        previous_op[task_id] = str(entry.get("op"))
        model = by_id.get(task_id)
        changed = {
            name: value for name, value in entry.get("changed", {}).items() if name in FIELDS
        }
        if model is None or entry.get("op") != "task_updated" or not changed:
            continue
        if restoring:
            # Applying an undelete: the Task comes back as it is in Salesforce, which may hold
            # values Sales Connect once sent it (edits that lost to the delete stay lost).
            continue
        from_salesforce = model.values_from(Side.SALESFORCE)
        from_salesconnect = model.values_from(Side.SALESCONNECT)
        if any(_hashable(v) in from_salesforce.get(n, set()) for n, v in changed.items()):
            traced += 1
            continue
        if all(_hashable(v) in from_salesconnect.get(n, set()) for n, v in changed.items()):
            violations.append(
                Violation(
                    "echo",
                    f"the bridge wrote {sorted(changed)} of task {model.salesconnect_id} back "
                    f"to Sales Connect with values only its Sales Connect user wrote "
                    f"(feed seq {entry.get('seq')})",
                    model.salesconnect_id,
                )
            )
    return violations, traced


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"
