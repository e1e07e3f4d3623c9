"""Applies Sales Connect changes to Salesforce Tasks: the to-salesforce worker's handler.

Each message becomes a plan (`docs/sync.md`, "Applying"): a create (upsert on
`Sales_Connect_Id__c`, so a redelivered create never makes a second Task), an update of the
linked Task by `Id` with only the fields that changed and won their claims, or a delete. A
batch of one is written with single calls; a backlog goes out as sObject Collections of up to
200 records, five of them in one Composite call (one API call for up to 1,000 records), each
record's result deciding its message's outcome, so the org is called a few times per thousand
changes instead of once per change.

Before an update, the Task's current values are compared with the last known ones: a value
that differs is a change made in Salesforce that no message has brought yet, and the message
waits for it (a retry) so the two are ordered by their stamps. Single writes learn that from
`If-Unmodified-Since` (a 412 costs one read); collections read the batch's Tasks in one call.
Salesforce dates that check to the second, so a Task's stamp vouches for its values only once
read after that second has passed (`SalesforceTask.settled`): a Task changed within the last
second is read again once its second is over (single writes; a collection hands such Tasks to
the single path), so an edit made in Salesforce in the same second is never overwritten. After
writing, the applier looks at its claims again: if a newer Salesforce change claimed a field
meanwhile (a collection write is not conditional), the value just written may have overwritten
it, and the applier forgets that field's known value so the poller republishes what Salesforce
holds and the stamps settle it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

from simple_salesforce.exceptions import SalesforceResourceNotFound

from bridge.errors import ErrorKind, System, TaskSyncError, classify, classify_salesforce_errors
from bridge.ledger import KnownRecord, Ledger, SourceStamp, TaskLink, value_fingerprint
from bridge.mapping import SALESFORCE_FIELD, salesforce_values
from bridge.messaging import APPLIED, SKIPPED, Delivery, Outcome
from bridge.salesconnect.client import SalesConnectClient, SalesConnectTask, SyncUser
from bridge.salesforce.tasks import (
    BULK_LIMIT,
    EXTERNAL_ID_FIELD,
    RecordChangedError,
    RecordResult,
    SalesforceTask,
    SalesforceTaskGateway,
)
from bridge.sync.conventions import (
    DELETED_FIELD,
    EXISTENCE_FIELD,
    create_intent_key,
    created_too_late,
    existence_won,
    salesforce_known_values,
    stamp_key,
)
from bridge.sync.directory import SyncUserDirectory
from schemas.fields import parse_calendar_date
from schemas.task_change import (
    NEUTRAL_FIELDS,
    ChangedFields,
    Op,
    Origin,
    TaskChange,
    TaskPriority,
    TaskStatus,
)

log = logging.getLogger(__name__)

MAX_CONDITION_RETRIES: Final = 3
MAX_SETTLING_READS: Final = 3
GONE_CODES: Final = frozenset({"ENTITY_IS_DELETED", "NOT_FOUND", "INVALID_CROSS_REFERENCE_KEY"})


@dataclass
class _Plan:
    index: int
    change: TaskChange
    user: SyncUser
    salesconnect_task_id: str


@dataclass
class _Create(_Plan):
    body: dict[str, object]
    replaces: str | None = None


@dataclass
class _Update(_Plan):
    salesforce_task_id: str
    neutral: frozenset[str]
    body: dict[str, object] = field(default_factory=dict)


@dataclass
class _Delete(_Plan):
    salesforce_task_id: str


@dataclass
class _Pending:
    """A message between the ledger reads and its claim: what it will become."""

    index: int
    change: TaskChange
    user: SyncUser
    salesforce_task_id: str | None
    create_values: ChangedFields | None = None
    replaces: str | None = None


P = TypeVar("P", bound=_Plan)


class SalesforceTaskApplier:
    """The `BatchHandler` of the to-salesforce worker."""

    def __init__(
        self,
        gateway: SalesforceTaskGateway,
        salesconnect: SalesConnectClient,
        ledger: Ledger,
        directory: SyncUserDirectory,
    ) -> None:
        self.gateway = gateway
        self.salesconnect = salesconnect
        self.ledger = ledger
        self.directory = directory

    def __call__(self, batch: Sequence[Delivery]) -> list[Outcome]:
        changes = [delivery.change for delivery in batch]
        outcomes: list[Outcome | None] = [None] * len(changes)
        bulk = len(changes) > 1
        for round_ in _rounds(changes):
            plans = self._plan_round(round_, changes, outcomes)
            self._execute(plans, outcomes, bulk=bulk)
        return [outcome if outcome is not None else SKIPPED for outcome in outcomes]

    # -- planning -----------------------------------------------------------------------------

    def _plan_round(
        self, round_: list[int], changes: Sequence[TaskChange], outcomes: list[Outcome | None]
    ) -> list[_Plan]:
        """Plans for one message per task, with the ledger read and claimed for all at once."""
        synced = self._owners_who_sync(round_, changes, outcomes)
        links = self.ledger.links_for_salesconnect_many(
            str(changes[index].record.salesconnect_task_id) for index, _ in synced
        )
        plans: list[_Plan] = []
        pending: list[_Pending] = []
        for index, user in synced:
            change = changes[index]
            try:
                planned = self._plan(index, change, user, links.get(_sc_id(change)))
            except Exception as exc:
                outcomes[index] = self._failed(change, exc)
                continue
            if isinstance(planned, Outcome):
                outcomes[index] = planned
            elif isinstance(planned, _Delete):
                plans.append(planned)
            else:
                pending.append(planned)
        claims = self.ledger.claim_fields_many(
            [
                (
                    stamp_key(_sc_id(item.change)),
                    SourceStamp.of(item.change),
                    [
                        *(item.create_values or item.change.changed).present(),
                        *([EXISTENCE_FIELD] if item.change.op is Op.UNDELETE else []),
                    ],
                )
                for item in pending
            ]
        )
        creating = [item for item in pending if _creates(item)]
        stamps = (
            self.ledger.field_stamps_many(stamp_key(_sc_id(item.change)) for item in creating)
            if creating
            else {}
        )
        for item, claim in zip(pending, claims, strict=True):
            if _creates(item) and created_too_late(
                stamps.get(stamp_key(_sc_id(item.change)), {}), item.change
            ):
                outcomes[item.index] = SKIPPED  # the task was deleted after this create
                continue
            try:
                planned_after = self._after_claim(item, claim.won)
            except Exception as exc:
                outcomes[item.index] = self._failed(item.change, exc)
                continue
            if isinstance(planned_after, Outcome):
                outcomes[item.index] = planned_after
            else:
                plans.append(planned_after)
        return plans

    def _owners_who_sync(
        self, round_: list[int], changes: Sequence[TaskChange], outcomes: list[Outcome | None]
    ) -> list[tuple[int, SyncUser]]:
        """The messages whose owner syncs, with the owner; the others are SKIPPED."""
        synced: list[tuple[int, SyncUser]] = []
        for index in round_:
            change = changes[index]
            try:
                user = self.directory.synced_user(
                    change.owner.salesconnect_user_id,
                    change.owner.salesforce_user_id,
                    as_of=change.occurred_at,
                )
            except Exception as exc:
                outcomes[index] = self._failed(change, exc)
                continue
            if user is None or change.origin is not Origin.SALESCONNECT:
                outcomes[index] = SKIPPED
            else:
                synced.append((index, user))
        return synced

    def _plan(
        self, index: int, change: TaskChange, user: SyncUser, link: TaskLink | None
    ) -> _Delete | _Pending | Outcome:
        salesconnect_id = _sc_id(change)
        salesforce_id = link.salesforce_task_id if link else change.record.salesforce_task_id
        if salesforce_id and link is None:
            self._link(user, salesconnect_id, salesforce_id)
        if change.op is Op.DELETE:
            # Claimed even when there is no Task yet, so its create, if still waiting in a
            # retry tier, loses when it comes.
            if not existence_won(self.ledger, stamp_key(salesconnect_id), change):
                return SKIPPED  # a later undelete of this task won
            if not salesforce_id:
                return SKIPPED
            return _Delete(index, change, user, salesconnect_id, salesforce_id)
        if salesforce_id and not self._recreate(change, salesforce_id):
            return _Pending(index, change, user, salesforce_id)
        values = self._create_values(change)
        if values is None:
            return SKIPPED
        return _Pending(index, change, user, None, values, replaces=salesforce_id)

    def _recreate(self, change: TaskChange, salesforce_id: str) -> bool:
        """A restored Sales Connect task whose Task is in the recycle bin gets a new Task: the
        REST API cannot undelete."""
        if change.op is not Op.UNDELETE:
            return False
        current = self.gateway.tasks_by_id([salesforce_id]).get(salesforce_id)
        return current is None or current.is_deleted

    def _create_values(self, change: TaskChange) -> ChangedFields | None:
        """Every field of the task: from the message when it carries them all (a create does),
        else read from Sales Connect. None when the task is gone."""
        if change.op is Op.UPSERT and set(change.changed.present()) == set(NEUTRAL_FIELDS):
            return change.changed
        task = self.salesconnect.task(_sc_id(change))
        if task is None or task.is_deleted:
            return None
        return all_fields_of(task)

    def _after_claim(self, item: _Pending, won: frozenset[str]) -> _Plan | Outcome:
        salesconnect_id = _sc_id(item.change)
        if item.change.op is Op.UNDELETE and EXISTENCE_FIELD not in won:
            return SKIPPED  # a later delete of this task won
        won = won - {EXISTENCE_FIELD}
        if item.create_values is not None:
            template = self.directory.settings(item.user.id).activity_subject_template
            body: dict[str, object] = dict(
                salesforce_values(item.create_values, subject_template=template, creating=True)
            )
            body["OwnerId"] = item.user.salesforce_user_id
            return _Create(item.index, item.change, item.user, salesconnect_id, body, item.replaces)
        if not won or item.salesforce_task_id is None:
            return SKIPPED
        plan = _Update(
            item.index, item.change, item.user, salesconnect_id, item.salesforce_task_id, won
        )
        plan.body = self._body(plan)
        return plan if plan.body else SKIPPED

    def _body(self, plan: _Update) -> dict[str, object]:
        changed = plan.change.changed
        won = ChangedFields(**{name: getattr(changed, name) for name in plan.neutral})
        template = self.directory.settings(plan.user.id).activity_subject_template
        return dict(salesforce_values(won, subject_template=template, creating=False))

    # -- writing ------------------------------------------------------------------------------

    def _execute(self, plans: list[_Plan], outcomes: list[Outcome | None], *, bulk: bool) -> None:
        creates = [plan for plan in plans if isinstance(plan, _Create)]
        updates = [plan for plan in plans if isinstance(plan, _Update)]
        deletes = [plan for plan in plans if isinstance(plan, _Delete)]
        try:
            if creates:
                self._create(creates, outcomes, bulk=bulk and len(creates) > 1)
            if updates:
                if bulk and len(updates) > 1:
                    self._update_many(updates, outcomes)
                else:
                    self._update_each(updates, outcomes)
            if deletes:
                self._delete(deletes, outcomes, bulk=bulk and len(deletes) > 1)
        except Exception as exc:
            # A whole call failed (network, session, limits, the ledger): every plan not yet
            # settled shares its fate.
            for plan in plans:
                if outcomes[plan.index] is None:
                    outcomes[plan.index] = self._failed(plan.change, exc)

    def _create(self, plans: list[_Create], outcomes: list[Outcome | None], *, bulk: bool) -> None:
        self.ledger.record_known(
            [
                KnownRecord(
                    Origin.SALESFORCE,
                    create_intent_key(plan.salesconnect_task_id),
                    _created_values(plan),
                )
                for plan in plans
            ]
        )
        created: list[tuple[_Create, str]] = []
        for chunk in _chunks(plans) if bulk else [[plan] for plan in plans]:
            if bulk:
                records = [
                    {EXTERNAL_ID_FIELD: plan.salesconnect_task_id, **plan.body} for plan in chunk
                ]
                results = self.gateway.upsert_many(records)
            else:
                plan = chunk[0]
                try:
                    results = [self.gateway.upsert(plan.salesconnect_task_id, plan.body)]
                except Exception as exc:
                    outcomes[plan.index] = self._failed(plan.change, exc)
                    continue
            for plan, result in zip(chunk, results, strict=True):
                if result.success and result.id:
                    created.append((plan, result.id))
                else:
                    outcomes[plan.index] = self._record_failed(plan, result)
        if not created:
            return
        for plan, salesforce_id in created:
            if plan.replaces and plan.replaces != salesforce_id:
                self.ledger.unlink(plan.salesconnect_task_id)
        self.ledger.record_known(
            [
                KnownRecord(Origin.SALESFORCE, salesforce_id, _created_values(plan))
                for plan, salesforce_id in created
            ]
        )
        # The Command Center marks linked tasks as synced: one request for the whole batch.
        # Before the ledger's link: a redelivered create without that link is a create again
        # and links Sales Connect again; with it, it would be an update and never link.
        self.salesconnect.set_salesforce_links(
            [(plan.salesconnect_task_id, salesforce_id) for plan, salesforce_id in created],
            idempotency_key=f"{created[0][0].change.message_id}:links",
        )
        self.ledger.link_many(
            [
                TaskLink(
                    salesconnect_task_id=plan.salesconnect_task_id,
                    salesforce_task_id=salesforce_id,
                    salesconnect_user_id=plan.user.id,
                    salesforce_user_id=plan.user.salesforce_user_id,
                )
                for plan, salesforce_id in created
            ]
        )
        self.ledger.forget_records(
            Origin.SALESFORCE,
            [create_intent_key(plan.salesconnect_task_id) for plan, _ in created],
        )
        # One line per create when they come one at a time; a backlog's are summed up (each
        # message still has its line in the change log, and the ledger holds every link).
        each = log.info if len(created) == 1 else log.debug
        for plan, salesforce_id in created:
            each("created Salesforce Task %s for %s", salesforce_id, plan.salesconnect_task_id)
            outcomes[plan.index] = APPLIED
        if len(created) > 1:
            log.info("created %d Salesforce Tasks in one batch", len(created))

    def _update_each(self, plans: list[_Update], outcomes: list[Outcome | None]) -> None:
        for plan in plans:
            try:
                outcomes[plan.index] = self._update_one(plan)
            except Exception as exc:
                outcomes[plan.index] = self._failed(plan.change, exc)

    def _update_one(self, plan: _Update) -> Outcome:
        since = self.ledger.known_version(Origin.SALESFORCE, plan.salesforce_task_id)
        for _ in range(MAX_CONDITION_RETRIES):
            if since is None:
                try:
                    current = self._read_settled(plan.salesforce_task_id)
                except SalesforceResourceNotFound:
                    return SKIPPED
                outcome = self._check_current(
                    plan,
                    current,
                    self.ledger.field_stamps(stamp_key(plan.salesconnect_task_id)),
                    self.ledger.fingerprints(Origin.SALESFORCE, [current.id]).get(current.id, {}),
                )
                # Only a version whose values were found known may vouch for them later: one
                # with a change in flight (raised above) must be read and checked again.
                self.ledger.remember_version(
                    Origin.SALESFORCE, current.id, current.last_modified_date
                )
                if outcome is not None:
                    return outcome
                since = current.last_modified_date
            try:
                self.gateway.update(plan.salesforce_task_id, plan.body, if_unmodified_since=since)
            except RecordChangedError:
                since = None
                continue
            except SalesforceResourceNotFound:
                return SKIPPED
            self._updated([plan])
            return APPLIED
        raise TaskSyncError(
            ErrorKind.TRANSIENT,
            "RECORD_KEEPS_CHANGING",
            f"Salesforce Task {plan.salesforce_task_id} kept changing while it was written",
            system=System.SALESFORCE,
        )

    def _read_settled(self, task_id: str) -> SalesforceTask:
        """The Task as read once the second of its last change is over (see the module
        docstring); a Task that keeps changing is a transient failure."""
        for _ in range(MAX_SETTLING_READS):
            current = self.gateway.get(task_id)
            if current.settled:
                return current
            wait = (current.settles_at - datetime.now(UTC)).total_seconds()
            time.sleep(max(wait, 0.0))
        raise TaskSyncError(
            ErrorKind.TRANSIENT,
            "RECORD_KEEPS_CHANGING",
            f"Salesforce Task {task_id} kept changing while it was read",
            system=System.SALESFORCE,
        )

    def _update_many(self, plans: list[_Update], outcomes: list[Outcome | None]) -> None:
        for chunk in _chunks(plans):
            ids = [plan.salesforce_task_id for plan in chunk]
            current = self.gateway.tasks_by_id(ids)
            stamps = self.ledger.field_stamps_many(
                stamp_key(plan.salesconnect_task_id) for plan in chunk
            )
            known = self.ledger.fingerprints(Origin.SALESFORCE, ids)
            ready: list[_Update] = []
            checked: list[SalesforceTask] = []
            unsettled: list[_Update] = []
            for plan in chunk:
                task = current.get(plan.salesforce_task_id)
                if task is None:
                    outcomes[plan.index] = SKIPPED
                    continue
                if not task.settled and not task.is_deleted:
                    unsettled.append(plan)
                    continue
                try:
                    outcome = self._check_current(
                        plan,
                        task,
                        stamps.get(stamp_key(plan.salesconnect_task_id), {}),
                        known.get(task.id, {}),
                    )
                except Exception as exc:
                    outcomes[plan.index] = self._failed(plan.change, exc)
                    continue
                checked.append(task)
                if outcome is not None:
                    outcomes[plan.index] = outcome
                else:
                    ready.append(plan)
            # As in `_update_one`: a Task with a change in flight keeps no vouching version.
            self.ledger.record_known(
                [KnownRecord(Origin.SALESFORCE, t.id, {}, t.last_modified_date) for t in checked]
            )
            # Changed within the last second: written one by one, each once its second is over.
            self._update_each(unsettled, outcomes)
            if not ready:
                continue
            records = [{"Id": plan.salesforce_task_id, **plan.body} for plan in ready]
            written: list[_Update] = []
            for plan, result in zip(ready, self.gateway.update_many(records), strict=True):
                if result.success:
                    written.append(plan)
                    outcomes[plan.index] = APPLIED
                elif _gone(result):
                    outcomes[plan.index] = SKIPPED
                else:
                    outcomes[plan.index] = self._record_failed(plan, result)
            self._updated(written)

    def _check_current(
        self,
        plan: _Update,
        task: SalesforceTask,
        stamps: Mapping[str, SourceStamp],
        known: Mapping[str, str],
    ) -> Outcome | None:
        """Settle the plan against the Task as it is now: SKIPPED when there is nothing left to
        write, a retry when Salesforce holds a change not synced yet, None to go ahead."""
        if task.is_deleted:
            return SKIPPED  # a delete wins over concurrent edits
        plan.neutral = frozenset(
            name
            for name in plan.neutral
            if name in stamps and stamps[name].message_id == plan.change.message_id
        )
        plan.body = self._body(plan) if plan.neutral else {}
        present = salesforce_known_values(task.values())
        plan.body = {name: value for name, value in plan.body.items() if present.get(name) != value}
        if not plan.body:
            return APPLIED if plan.neutral else SKIPPED
        in_flight = sorted(
            name
            for name in plan.body
            if name in known and known[name] != value_fingerprint(present.get(name))
        )
        if in_flight:
            raise TaskSyncError(
                ErrorKind.TRANSIENT,
                "CHANGE_IN_FLIGHT",
                f"Salesforce Task {task.id} has a change to {', '.join(in_flight)} that is not "
                "synced yet; applying after it",
                system=System.SALESFORCE,
            )
        return None

    def _updated(self, plans: Sequence[_Update]) -> None:
        """Record what was written as known; then look at the claims again (see the module
        docstring): a field a newer Salesforce change claimed meanwhile is forgotten."""
        if not plans:
            return
        self.ledger.record_known(
            [
                KnownRecord(
                    Origin.SALESFORCE, plan.salesforce_task_id, salesforce_known_values(plan.body)
                )
                for plan in plans
            ]
        )
        stamps = self.ledger.field_stamps_many(
            stamp_key(plan.salesconnect_task_id) for plan in plans
        )
        for plan in plans:
            claimed = stamps.get(stamp_key(plan.salesconnect_task_id), {})
            overtaken = [
                SALESFORCE_FIELD[name]
                for name in plan.neutral
                if name in claimed
                and claimed[name].message_id != plan.change.message_id
                and claimed[name].origin is Origin.SALESFORCE
            ]
            if overtaken:
                log.info(
                    "a newer Salesforce change to %s of Task %s arrived while writing; its "
                    "known values are forgotten so the poller brings Salesforce's value back",
                    ", ".join(overtaken),
                    plan.salesforce_task_id,
                )
                self.ledger.forget_known(Origin.SALESFORCE, plan.salesforce_task_id, overtaken)

    def _delete(self, plans: list[_Delete], outcomes: list[Outcome | None], *, bulk: bool) -> None:
        done: list[_Delete] = []
        if bulk:
            for chunk in _chunks(plans):
                ids = [plan.salesforce_task_id for plan in chunk]
                for plan, result in zip(chunk, self.gateway.delete_many(ids), strict=True):
                    if result.success or _gone(result):
                        outcomes[plan.index] = APPLIED if result.success else SKIPPED
                        done.append(plan)
                    else:
                        outcomes[plan.index] = self._record_failed(plan, result)
        else:
            for plan in plans:
                try:
                    self.gateway.delete(plan.salesforce_task_id)
                    outcomes[plan.index] = APPLIED
                except SalesforceResourceNotFound:
                    outcomes[plan.index] = SKIPPED
                except Exception as exc:
                    outcomes[plan.index] = self._failed(plan.change, exc)
                    continue
                done.append(plan)
        # Known as deleted, so the producers do not send the delete back.
        self.ledger.record_known(
            [
                KnownRecord(Origin.SALESFORCE, plan.salesforce_task_id, {DELETED_FIELD: True})
                for plan in done
            ]
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def _link(self, user: SyncUser, salesconnect_task_id: str, salesforce_task_id: str) -> None:
        self.ledger.link(
            TaskLink(
                salesconnect_task_id=salesconnect_task_id,
                salesforce_task_id=salesforce_task_id,
                salesconnect_user_id=user.id,
                salesforce_user_id=user.salesforce_user_id,
            )
        )

    def _record_failed(self, plan: _Plan, result: RecordResult) -> Outcome:
        failure = classify_salesforce_errors(
            [
                {"errorCode": error.status_code, "message": error.message, "fields": error.fields}
                for error in result.errors
            ],
            400,
        )
        error = TaskSyncError(
            failure.kind, failure.code, failure.message, system=System.SALESFORCE, status=400
        )
        return self._failed(plan.change, error)

    def _failed(self, change: TaskChange, exc: BaseException) -> Outcome:
        failure = classify(exc)
        if failure.kind.parks_at_once and change.owner.salesconnect_user_id:
            try:
                self.directory.report_sync_error(
                    change.owner.salesconnect_user_id,
                    f"Salesforce did not accept a change of task "
                    f"{change.record.salesconnect_task_id}: {failure.describe()}",
                )
            except Exception:
                log.exception("could not show the sync error on the Settings page")
        return Outcome.failed(exc)


def _created_values(plan: _Create) -> dict[str, object]:
    """What Salesforce holds of a Task once this create made it."""
    return {**salesforce_known_values(plan.body), DELETED_FIELD: False}


def _creates(item: _Pending) -> bool:
    """A create that is not an undelete's (undeletes claim the task's existence instead)."""
    return item.change.op is not Op.UNDELETE and item.create_values is not None


def _sc_id(change: TaskChange) -> str:
    return str(change.record.salesconnect_task_id)


def all_fields_of(task: SalesConnectTask) -> ChangedFields:
    """A Sales Connect task's values as changes of every field (what a create writes)."""
    return ChangedFields(
        name=task.name,
        status=TaskStatus(task.status),
        priority=TaskPriority(task.priority),
        due_date=parse_calendar_date(task.due_date) if task.due_date else None,
        details=task.details,
    )


def _rounds(changes: Sequence[TaskChange]) -> list[list[int]]:
    """Split a batch so each round has at most one message per task, in order: a task's second
    message is planned only after its first was written."""
    seen: dict[str, int] = defaultdict(int)
    rounds: list[list[int]] = []
    for index, change in enumerate(changes):
        key = str(change.record.salesconnect_task_id)
        position = seen[key]
        seen[key] += 1
        while len(rounds) <= position:
            rounds.append([])
        rounds[position].append(index)
    return rounds


def _chunks(plans: Sequence[P]) -> Iterable[Sequence[P]]:
    for start in range(0, len(plans), BULK_LIMIT):
        yield plans[start : start + BULK_LIMIT]


def _gone(result: RecordResult) -> bool:
    return any(error.status_code in GONE_CODES for error in result.errors)
