"""Whether Sales Connect and Salesforce agree: every difference the mapping does not explain.

`compare(snapshot)` is pure: it pairs each Sales Connect task with the Salesforce Tasks that
belong to it and reports what is missing, extra, duplicated, deleted on one side only, or
different after mapping. `SnapshotReader` reads the snapshot from both sides over their APIs.
`tasksync verify` (workers/verify_command.py) prints the report; the tests use it to prove
convergence.

Pairing. A Sales Connect task and a Salesforce Task belong together when the task's
`salesforce_task_id` names the Task, or the Task's `Sales_Connect_Id__c` names the task (the
bridge creates Tasks by upsert on that external id; imported tasks carry the link on the Sales
Connect side only). Salesforce ids compare on their case-sensitive 15-character form.

Scope (docs/sync.md "Who is in scope"). Only users with sync on and a Salesforce user are
compared. A Sales Connect task counts when it was created after sync was last turned on, or is
paired; older unpaired tasks are never pushed, so they are no difference. A Salesforce Task
counts when its owner is such a user's Salesforce user, it is a plain to-do (`TaskSubtype` Task,
not a recurring master) and it was modified after the import window began (24 hours before sync
was last turned on); older unpaired Tasks are never imported. Deleted on both sides is agreement.

Fields of a live pair compare after mapping: status and priority through the tables, where a
Salesforce value outside them (`In Progress`, `Low`, `Deferred`, custom values) is not synced and
so is never a difference (it is listed as explained); due dates as `YYYY-MM-DD` strings; details
and `Description` with empty text equal to null. The Subject is compared only when the user's
template uses the name, and a Subject that differs from the rendering is explained, not a
difference: a rename in Salesforce does not flow back, and a template changed later re-renders
nothing, so verify cannot tell those apart from a lost Sales Connect rename (pass
`strict_subjects=True` where no one renames in Salesforce).

Verify reads two systems that keep changing: run it on a quiet system, or wait for it to come
back clean (changes in flight show up as differences until they land).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bridge.errors import SalesConnectApiError
from bridge.mapping import (
    PRIORITY_FROM_SALESFORCE,
    STATUS_FROM_SALESFORCE,
    is_syncable_salesforce_task,
    render_subject,
    template_uses_name,
)
from bridge.salesconnect.client import SalesConnectClient, SalesConnectTask
from bridge.salesforce.session import CALL_OPTIONS_HEADER, SalesforceSession
from bridge.salesforce.tasks import (
    COLLECTION_LIMIT,
    EXTERNAL_ID_FIELD,
    SalesforceTask,
    SalesforceTaskGateway,
    soql_datetime,
    soql_id_list,
)

IMPORT_WINDOW: Final = timedelta(hours=24)
VERIFY_CLIENT: Final = "tasksync-verify"
SALESFORCE_ID_KEY_LENGTH: Final = 15
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class FindingKind(enum.StrEnum):
    """What verify found. The first group are differences; the last three are explained."""

    MISSING_IN_SALESFORCE = "missing_in_salesforce"
    MISSING_IN_SALESCONNECT = "missing_in_salesconnect"
    LINK_TO_MISSING_SALESFORCE_TASK = "link_to_missing_salesforce_task"
    EXTRA_IN_SALESFORCE = "extra_in_salesforce"
    DELETED_IN_SALESFORCE_ONLY = "deleted_in_salesforce_only"
    DELETED_IN_SALESCONNECT_ONLY = "deleted_in_salesconnect_only"
    DUPLICATE_IN_SALESFORCE = "duplicate_in_salesforce"
    DUPLICATE_IN_SALESCONNECT = "duplicate_in_salesconnect"
    FIELD_MISMATCH = "field_mismatch"
    SUBJECT_DIFFERS = "subject_differs"
    VALUE_NOT_SYNCED = "value_not_synced"
    LEFT_SCOPE = "left_scope"

    @property
    def is_difference(self) -> bool:
        return self not in EXPLAINED_KINDS


EXPLAINED_KINDS: Final = frozenset(
    {FindingKind.SUBJECT_DIFFERS, FindingKind.VALUE_NOT_SYNCED, FindingKind.LEFT_SCOPE}
)
_KIND_ORDER: Final = {kind: index for index, kind in enumerate(FindingKind)}


@dataclass(frozen=True)
class Finding:
    """One thing verify found, with the ids on both sides and, for fields, both values."""

    kind: FindingKind
    user_id: str
    message: str
    salesconnect_task_ids: tuple[str, ...] = ()
    salesforce_task_ids: tuple[str, ...] = ()
    field: str | None = None
    salesconnect_value: object = None
    salesforce_value: object = None

    @property
    def is_difference(self) -> bool:
        return self.kind.is_difference

    def sort_key(self) -> tuple[str, int, tuple[str, ...], tuple[str, ...], str]:
        return (
            self.user_id,
            _KIND_ORDER[self.kind],
            self.salesconnect_task_ids,
            self.salesforce_task_ids,
            self.field or "",
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind.value,
            "user_id": self.user_id,
            "message": self.message,
            "salesconnect_task_ids": list(self.salesconnect_task_ids),
            "salesforce_task_ids": list(self.salesforce_task_ids),
        }
        if self.field is not None:
            body.update(
                field=self.field,
                salesconnect_value=self.salesconnect_value,
                salesforce_value=self.salesforce_value,
            )
        return body


@dataclass(frozen=True)
class SyncedUser:
    """A Sales Connect user with sync on and a Salesforce user: what scoping needs."""

    user_id: str
    salesforce_user_id: str
    last_enabled_at: datetime
    subject_template: str
    first_sync_state: str = "done"


@dataclass(frozen=True)
class SkippedUser:
    user_id: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """Both sides as read: the compared users, their tasks (tombstones included) and any other
    Sales Connect task a Salesforce Task names; the Salesforce Tasks their users own, the Tasks
    their tasks link to and the Tasks carrying their ids, deleted ones included."""

    users: tuple[SyncedUser, ...]
    salesconnect_tasks: tuple[SalesConnectTask, ...]
    salesforce_tasks: tuple[SalesforceTask, ...]
    skipped_users: tuple[SkippedUser, ...] = ()


@dataclass(frozen=True)
class UserTally:
    user_id: str
    salesforce_user_id: str
    first_sync_state: str
    pairs: int = 0
    salesconnect_out_of_scope: int = 0
    salesforce_out_of_scope: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "salesforce_user_id": self.salesforce_user_id,
            "first_sync_state": self.first_sync_state,
            "pairs_compared": self.pairs,
            "salesconnect_tasks_out_of_scope": self.salesconnect_out_of_scope,
            "salesforce_tasks_out_of_scope": self.salesforce_out_of_scope,
        }


@dataclass(frozen=True)
class VerifyReport:
    differences: tuple[Finding, ...]
    explained: tuple[Finding, ...]
    users: tuple[UserTally, ...]
    skipped_users: tuple[SkippedUser, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "differences": [finding.to_json() for finding in self.differences],
            "explained": [finding.to_json() for finding in self.explained],
            "users": [user.to_json() for user in self.users],
            "skipped_users": [
                {"user_id": user.user_id, "reason": user.reason} for user in self.skipped_users
            ],
        }


def salesforce_id_key(salesforce_id: str) -> str:
    """The case-sensitive 15-character form: an 18-character id is it plus a checksum."""
    return salesforce_id[:SALESFORCE_ID_KEY_LENGTH]


# -- the comparison ------------------------------------------------------------------------


@dataclass
class _Tally:
    pairs: int = 0
    salesconnect_out_of_scope: int = 0
    salesforce_out_of_scope: int = 0


@dataclass
class _Pairing:
    """Both directions of every link, by Sales Connect id and by Salesforce id key."""

    salesconnect: Mapping[str, SalesConnectTask]
    salesforce: Mapping[str, SalesforceTask]
    salesforce_for: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    salesconnect_for: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def link(self, salesconnect_id: str, salesforce_key: str) -> None:
        self.salesforce_for[salesconnect_id].add(salesforce_key)
        self.salesconnect_for[salesforce_key].add(salesconnect_id)


def compare(
    snapshot: Snapshot,
    *,
    import_window: timedelta = IMPORT_WINDOW,
    strict_subjects: bool = False,
) -> VerifyReport:
    """Every difference between the two sides that the mapping and the scope rules do not
    explain, and (separately) what they do explain."""
    users = {user.user_id: user for user in snapshot.users}
    owners = {salesforce_id_key(user.salesforce_user_id): user for user in snapshot.users}
    pairing = _Pairing(
        salesconnect={task.id: task for task in snapshot.salesconnect_tasks},
        salesforce={salesforce_id_key(task.id): task for task in snapshot.salesforce_tasks},
    )
    for task in pairing.salesconnect.values():
        if task.salesforce_task_id:
            pairing.link(task.id, salesforce_id_key(task.salesforce_task_id))
    for sf_key, sf_task in pairing.salesforce.items():
        if sf_task.sales_connect_id:
            pairing.link(sf_task.sales_connect_id, sf_key)

    tallies = {user_id: _Tally() for user_id in users}
    findings: list[Finding] = []
    for task in pairing.salesconnect.values():
        user = users.get(task.user_id)
        if user is not None:
            findings.extend(
                _check_salesconnect_task(
                    task, user, pairing, tallies[user.user_id], strict_subjects=strict_subjects
                )
            )
    for sf_key, sf_task in pairing.salesforce.items():
        owner = owners.get(salesforce_id_key(sf_task.owner_id))
        findings.extend(
            _check_salesforce_task(
                sf_key=sf_key,
                sf_task=sf_task,
                owner=owner,
                users=users,
                pairing=pairing,
                tallies=tallies,
                import_window=import_window,
            )
        )
    findings.sort(key=Finding.sort_key)
    return VerifyReport(
        differences=tuple(f for f in findings if f.is_difference),
        explained=tuple(f for f in findings if not f.is_difference),
        users=tuple(
            UserTally(
                user_id=user.user_id,
                salesforce_user_id=user.salesforce_user_id,
                first_sync_state=user.first_sync_state,
                pairs=tallies[user.user_id].pairs,
                salesconnect_out_of_scope=tallies[user.user_id].salesconnect_out_of_scope,
                salesforce_out_of_scope=tallies[user.user_id].salesforce_out_of_scope,
            )
            for user in sorted(snapshot.users, key=lambda u: u.user_id)
        ),
        skipped_users=snapshot.skipped_users,
    )


def _check_salesconnect_task(
    task: SalesConnectTask,
    user: SyncedUser,
    pairing: _Pairing,
    tally: _Tally,
    *,
    strict_subjects: bool,
) -> Iterator[Finding]:
    keys = pairing.salesforce_for.get(task.id, set())
    partners = sorted(
        (pairing.salesforce[key] for key in keys if key in pairing.salesforce),
        key=lambda sf_task: sf_task.id,
    )
    live = [sf_task for sf_task in partners if not sf_task.is_deleted]
    ids = (task.id,)
    if task.is_deleted:
        for sf_task in live:
            yield Finding(
                FindingKind.DELETED_IN_SALESCONNECT_ONLY,
                user.user_id,
                f"Sales Connect task {task.id} ({task.name!r}) is deleted, its Salesforce Task "
                f"{sf_task.id} is not",
                ids,
                (sf_task.id,),
            )
        return
    if not keys:
        if task.created_at >= user.last_enabled_at:
            yield Finding(
                FindingKind.MISSING_IN_SALESFORCE,
                user.user_id,
                f"Sales Connect task {task.id} ({task.name!r}), created after sync was turned "
                "on, has no Salesforce Task",
                ids,
            )
        else:
            tally.salesconnect_out_of_scope += 1
        return
    link = task.salesforce_task_id
    if link and salesforce_id_key(link) not in pairing.salesforce:
        yield Finding(
            FindingKind.LINK_TO_MISSING_SALESFORCE_TASK,
            user.user_id,
            f"Sales Connect task {task.id} ({task.name!r}) links to Salesforce Task {link}, "
            "which does not exist (not even in the recycle bin)",
            ids,
            (link,),
        )
    if not live:
        for sf_task in partners:
            yield Finding(
                FindingKind.DELETED_IN_SALESFORCE_ONLY,
                user.user_id,
                f"Salesforce Task {sf_task.id} is deleted, its Sales Connect task {task.id} "
                f"({task.name!r}) is not",
                ids,
                (sf_task.id,),
            )
        return
    if len(live) > 1:
        yield Finding(
            FindingKind.DUPLICATE_IN_SALESFORCE,
            user.user_id,
            f"Sales Connect task {task.id} ({task.name!r}) has {len(live)} live Salesforce "
            f"Tasks: {', '.join(sf_task.id for sf_task in live)}",
            ids,
            tuple(sf_task.id for sf_task in live),
        )
    linked = [
        sf_task
        for sf_task in live
        if link and salesforce_id_key(sf_task.id) == salesforce_id_key(link)
    ]
    counterpart = (linked or live)[0]
    tally.pairs += 1
    if salesforce_id_key(counterpart.owner_id) != salesforce_id_key(user.salesforce_user_id):
        yield Finding(
            FindingKind.LEFT_SCOPE,
            user.user_id,
            f"Salesforce Task {counterpart.id} now belongs to {counterpart.owner_id}, not to "
            f"{user.salesforce_user_id}: its changes no longer sync, fields not compared",
            ids,
            (counterpart.id,),
        )
        return
    yield from compare_fields(user, task, counterpart, strict_subjects=strict_subjects)


def _check_salesforce_task(
    *,
    sf_key: str,
    sf_task: SalesforceTask,
    owner: SyncedUser | None,
    users: Mapping[str, SyncedUser],
    pairing: _Pairing,
    tallies: Mapping[str, _Tally],
    import_window: timedelta,
) -> Iterator[Finding]:
    if sf_task.is_deleted:
        return  # deletions are judged from the Sales Connect side, which has tombstones
    named = pairing.salesconnect_for.get(sf_key, set())
    known = sorted(
        (pairing.salesconnect[task_id] for task_id in named if task_id in pairing.salesconnect),
        key=lambda task: task.id,
    )
    unknown = sorted(task_id for task_id in named if task_id not in pairing.salesconnect)
    if owner is not None:
        for task_id in unknown:
            yield Finding(
                FindingKind.EXTRA_IN_SALESFORCE,
                owner.user_id,
                f"Salesforce Task {sf_task.id} ({sf_task.subject!r}) names Sales Connect task "
                f"{task_id}, which does not exist",
                (task_id,),
                (sf_task.id,),
            )
    ours = [task for task in known if task.user_id in users]
    live = [task for task in ours if not task.is_deleted]
    if len(live) > 1:
        yield Finding(
            FindingKind.DUPLICATE_IN_SALESCONNECT,
            live[0].user_id,
            f"Salesforce Task {sf_task.id} ({sf_task.subject!r}) belongs to {len(live)} live "
            f"Sales Connect tasks: {', '.join(task.id for task in live)}",
            tuple(task.id for task in live),
            (sf_task.id,),
        )
    if named or owner is None:
        return
    tally = tallies[owner.user_id]
    if not is_syncable_salesforce_task(sf_task.values()):
        tally.salesforce_out_of_scope += 1
        return
    if sf_task.last_modified_date < owner.last_enabled_at - import_window:
        tally.salesforce_out_of_scope += 1
        return
    yield Finding(
        FindingKind.MISSING_IN_SALESCONNECT,
        owner.user_id,
        f"Salesforce Task {sf_task.id} ({sf_task.subject!r}), modified "
        f"{sf_task.last_modified_date.isoformat()} (after the import window began), has no "
        "Sales Connect task",
        (),
        (sf_task.id,),
    )


def compare_fields(
    user: SyncedUser,
    task: SalesConnectTask,
    sf_task: SalesforceTask,
    *,
    strict_subjects: bool = False,
) -> Iterator[Finding]:
    """The findings for one live pair's mapped fields."""
    ids = ((task.id,), (sf_task.id,))

    def mismatch(name: str, ours: object, theirs: object, note: str = "") -> Finding:
        return Finding(
            FindingKind.FIELD_MISMATCH,
            user.user_id,
            f"{name}: Sales Connect {ours!r}, Salesforce {theirs!r}{note} "
            f"(task {task.id}, Task {sf_task.id})",
            *ids,
            field=name,
            salesconnect_value=ours,
            salesforce_value=theirs,
        )

    def not_synced(name: str, theirs: object, kept: object) -> Finding:
        return Finding(
            FindingKind.VALUE_NOT_SYNCED,
            user.user_id,
            f"{name}: Salesforce {theirs!r} is not synced; Sales Connect keeps {kept!r} "
            f"(task {task.id}, Task {sf_task.id})",
            *ids,
            field=name,
            salesconnect_value=kept,
            salesforce_value=theirs,
        )

    for name, table, ours, theirs in (
        ("status", STATUS_FROM_SALESFORCE, task.status, sf_task.status),
        ("priority", PRIORITY_FROM_SALESFORCE, task.priority, sf_task.priority),
    ):
        mapped = table.get(theirs or "")
        if mapped is None:
            yield not_synced(name, theirs, ours)
        elif mapped.value != ours:
            yield mismatch(name, ours, theirs, f" (maps to {mapped.value!r})")
    if (task.due_date or None) != (sf_task.activity_date or None):
        yield mismatch("due_date", task.due_date, sf_task.activity_date)
    if (task.details or None) != (sf_task.description or None):
        yield mismatch("details", task.details, sf_task.description)
    if template_uses_name(user.subject_template):
        expected = render_subject(user.subject_template, task.name) or None
        if expected != sf_task.subject:
            yield Finding(
                FindingKind.FIELD_MISMATCH if strict_subjects else FindingKind.SUBJECT_DIFFERS,
                user.user_id,
                f"name: Sales Connect {task.name!r} renders as Subject {expected!r}, Salesforce "
                f"has {sf_task.subject!r} (a rename in Salesforce does not flow back) "
                f"(task {task.id}, Task {sf_task.id})",
                *ids,
                field="name",
                salesconnect_value=task.name,
                salesforce_value=sf_task.subject,
            )


# -- reading both sides --------------------------------------------------------------------


class UserNotFoundError(LookupError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"no Sales Connect user {user_id}")
        self.user_id = user_id


class VerifierSalesforceSession(SalesforceSession):
    """The bridge's login, but its calls are counted under their own client name, so a test
    counting the bridge's API calls (client=tasksync) never counts verify's reads."""

    @property
    def call_headers(self) -> dict[str, str]:
        return {CALL_OPTIONS_HEADER: f"client={VERIFY_CLIENT}"}


def _chunks(items: Sequence[str], size: int = COLLECTION_LIMIT) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SnapshotReader:
    """Reads a `Snapshot` with the bridge's own clients; every error of either side propagates
    (the command turns them into its exit codes)."""

    def __init__(self, salesconnect: SalesConnectClient, salesforce: SalesforceTaskGateway):
        self.salesconnect = salesconnect
        self.salesforce = salesforce

    def read(self, user_id: str | None = None) -> Snapshot:
        users, skipped = self._users(user_id)
        salesconnect_tasks: dict[str, SalesConnectTask] = {}
        for user in users:
            for task in self.salesconnect.tasks(user.user_id, include_deleted=True):
                salesconnect_tasks[task.id] = task
        salesforce_tasks = self._salesforce_tasks(users, salesconnect_tasks)
        for task_id in sorted(
            {t.sales_connect_id for t in salesforce_tasks.values() if t.sales_connect_id}
            - set(salesconnect_tasks)
        ):
            found = self.salesconnect.task(task_id, include_deleted=True)
            if found is not None:
                salesconnect_tasks[found.id] = found
        return Snapshot(
            users=tuple(users),
            salesconnect_tasks=tuple(salesconnect_tasks.values()),
            salesforce_tasks=tuple(salesforce_tasks.values()),
            skipped_users=tuple(skipped),
        )

    def _users(self, user_id: str | None) -> tuple[list[SyncedUser], list[SkippedUser]]:
        listed = self.salesconnect.users_with_sync_on()
        if user_id is not None:
            listed = [user for user in listed if user.id == user_id]
            if not listed:
                try:
                    self.salesconnect.settings(user_id)
                except SalesConnectApiError as exc:
                    if exc.status == 404:
                        raise UserNotFoundError(user_id) from None
                    raise
                return [], [SkippedUser(user_id, "sync is off")]
        users: list[SyncedUser] = []
        skipped: list[SkippedUser] = []
        for listed_user in listed:
            if not listed_user.salesforce_user_id:
                skipped.append(SkippedUser(listed_user.id, "not connected to a Salesforce user"))
                continue
            settings = self.salesconnect.settings(listed_user.id)
            users.append(
                SyncedUser(
                    user_id=listed_user.id,
                    salesforce_user_id=listed_user.salesforce_user_id,
                    last_enabled_at=listed_user.last_enabled_at
                    or listed_user.first_enabled_at
                    or _EPOCH,
                    subject_template=settings.activity_subject_template,
                    first_sync_state=settings.first_sync_state,
                )
            )
        return users, skipped

    def _salesforce_tasks(
        self, users: Sequence[SyncedUser], salesconnect_tasks: Mapping[str, SalesConnectTask]
    ) -> dict[str, SalesforceTask]:
        found: dict[str, SalesforceTask] = {}
        if not users:
            return found

        def add(tasks: Iterable[SalesforceTask]) -> None:
            for sf_task in tasks:
                found[salesforce_id_key(sf_task.id)] = sf_task

        since = min(user.last_enabled_at for user in users) - IMPORT_WINDOW
        owners = sorted({user.salesforce_user_id for user in users})
        for chunk in _chunks(owners):
            add(
                self.salesforce.tasks(
                    f"OwnerId IN {soql_id_list(chunk)} AND (LastModifiedDate >= "
                    f"{soql_datetime(since)} OR {EXTERNAL_ID_FIELD} != null)",
                    include_deleted=True,
                )
            )
        links = sorted(
            {
                task.salesforce_task_id
                for task in salesconnect_tasks.values()
                if task.salesforce_task_id
                and salesforce_id_key(task.salesforce_task_id) not in found
            }
        )
        if links:
            add(self.salesforce.tasks_by_id(links).values())
        named = {sf_task.sales_connect_id for sf_task in found.values()}
        unpaired = sorted(
            task.id
            for task in salesconnect_tasks.values()
            if task.id not in named and not task.salesforce_task_id
        )
        for chunk in _chunks(unpaired):
            add(
                sf_task
                for sf_task in self.salesforce.tasks(
                    f"{EXTERNAL_ID_FIELD} IN {soql_id_list(chunk)}", include_deleted=True
                )
                if sf_task.sales_connect_id in chunk
            )
        return found
