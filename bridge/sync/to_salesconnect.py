"""Applies Salesforce changes to Sales Connect tasks: the to-salesconnect worker's handler.

Per message, in delivery order (`docs/sync.md`, "Applying"):

1. the owner must sync (sync on, connected to the Task's owner); otherwise `SKIPPED`;
2. find the task: the ledger's link, the message's own id, or the Sales Connect task that holds
   the link (after a lost ledger); none means an import, which creates it;
3. claim the changed fields' stamps; fields a newer change already won are dropped;
4. read the task again, re-check the claims, and defer the message if the task holds a value
   for one of the fields that differs from the last known one: a user's change the producer
   has not published yet, which must be ordered by its stamp first;
5. write with `If-Match` (a 412 starts over from the read), `X-Sync-Origin: salesforce` and an
   `Idempotency-Key`, then record the written values as known.

Sales Connect calls are local and cheap, so each message is applied on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

from bridge.errors import ErrorKind, SalesConnectApiError, System, TaskSyncError, classify
from bridge.ledger import Ledger, SourceStamp, TaskLink
from bridge.mapping import UNTITLED_TASK_NAME, render_subject
from bridge.messaging import APPLIED, SKIPPED, Delivery, Outcome
from bridge.salesconnect.client import SalesConnectClient, SalesConnectTask, SyncUser
from bridge.sync.conventions import (
    created_too_late,
    existence_won,
    salesconnect_known_values,
    stamp_key,
    unpaired_stamp_key,
)
from bridge.sync.directory import SyncUserDirectory
from schemas.task_change import Op, Origin, TaskChange

log = logging.getLogger(__name__)

MAX_VERSION_RACES: Final = 3


class SalesConnectTaskApplier:
    """The `BatchHandler` of the to-salesconnect worker."""

    def __init__(
        self, client: SalesConnectClient, ledger: Ledger, directory: SyncUserDirectory
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.directory = directory

    def __call__(self, batch: Sequence[Delivery]) -> list[Outcome]:
        return [self.apply(delivery.change) for delivery in batch]

    def apply(self, change: TaskChange) -> Outcome:
        user: SyncUser | None = None
        try:
            user = self.directory.synced_user(
                change.owner.salesconnect_user_id,
                change.owner.salesforce_user_id,
                as_of=change.occurred_at,
            )
            if user is None or change.origin is not Origin.SALESFORCE:
                return SKIPPED
            return self._apply_for(user, change)
        except Exception as exc:
            failure = classify(exc)
            if failure.kind.parks_at_once and user is not None:
                self._report(user, change, failure.describe())
            return Outcome.failed(exc)

    def _apply_for(self, user: SyncUser, change: TaskChange) -> Outcome:
        task = self._find_task(user, change)
        if task is None:
            return self._apply_unpaired(user, change)
        lost_existence = change.op in (Op.DELETE, Op.UNDELETE) and not existence_won(
            self.ledger, stamp_key(task.id), change
        )
        if lost_existence:
            return SKIPPED  # a later delete or undelete of this task won
        if change.op is Op.DELETE:
            return self._delete(task, change)
        if task.is_deleted:
            if change.op is not Op.UNDELETE:
                return SKIPPED  # a delete wins over concurrent edits
            task = self._restore(task, change)
        # Also when the task is live: its delete may never have been applied here (the undelete
        # that followed it was published first and held the task's existence).
        extra = self._name_from_subject(user, task, change) if change.op is Op.UNDELETE else {}
        return self._update(task, change, extra)

    def _apply_unpaired(self, user: SyncUser, change: TaskChange) -> Outcome:
        """Nothing in Sales Connect: deletes and undeletes claim the Task's existence under its
        own id, and an import loses to a later one (in whatever order they come)."""
        key = unpaired_stamp_key(str(change.record.salesforce_task_id))
        if change.op is Op.UPSERT:
            if created_too_late(self.ledger.field_stamps(key), change):
                return SKIPPED
        elif not existence_won(self.ledger, key, change) or change.op is Op.DELETE:
            return SKIPPED
        return self._create(user, change)

    # -- finding the task -------------------------------------------------------------------

    def _find_task(self, user: SyncUser, change: TaskChange) -> SalesConnectTask | None:
        salesforce_id = str(change.record.salesforce_task_id)
        link = self.ledger.link_for_salesforce(salesforce_id)
        candidate = link.salesconnect_task_id if link else change.record.salesconnect_task_id
        if candidate:
            task = self.client.task(candidate)
            if task is not None:
                return task
        task = self.client.task_linked_to(user.id, salesforce_id)
        if task is not None:
            self._link(user, task.id, salesforce_id)
        return task

    def _link(self, user: SyncUser, salesconnect_task_id: str, salesforce_task_id: str) -> None:
        self.ledger.link(
            TaskLink(
                salesconnect_task_id=salesconnect_task_id,
                salesforce_task_id=salesforce_task_id,
                salesconnect_user_id=user.id,
                salesforce_user_id=user.salesforce_user_id,
            )
        )

    # -- the operations ---------------------------------------------------------------------

    def _create(self, user: SyncUser, change: TaskChange) -> Outcome:
        """An import (or a Salesforce undelete of a task Sales Connect never had)."""
        salesforce_id = str(change.record.salesforce_task_id)
        fields = salesconnect_known_values(change.changed)
        fields.setdefault("name", UNTITLED_TASK_NAME)
        try:
            task = self.client.create_task(
                user.id,
                fields,
                salesforce_task_id=salesforce_id,
                idempotency_key=f"{change.message_id}:create",
            )
        except SalesConnectApiError as exc:
            if exc.code != "salesforce_task_linked":
                raise
            existing = self.client.task_linked_to(user.id, salesforce_id)
            if existing is None:
                raise
            self._link(user, existing.id, salesforce_id)
            return self._update(existing, change)
        self._link(user, task.id, salesforce_id)
        self.ledger.remember_writes(Origin.SALESCONNECT, task.id, _json_values(task))
        self.ledger.claim_fields(stamp_key(task.id), SourceStamp.of(change), fields)
        log.info("created Sales Connect task %s for Salesforce Task %s", task.id, salesforce_id)
        return APPLIED

    def _restore(self, task: SalesConnectTask, change: TaskChange) -> SalesConnectTask:
        for _ in range(MAX_VERSION_RACES):
            try:
                return self.client.restore_task(
                    task.id,
                    if_match=task.version,
                    idempotency_key=f"{change.message_id}:restore:{task.version}",
                )
            except SalesConnectApiError as exc:
                if exc.status != 412:
                    raise
            fresh = self.client.task(task.id)
            if fresh is None:
                raise TaskSyncError(
                    ErrorKind.PERMANENT,
                    "TASK_VANISHED",
                    f"Sales Connect task {task.id} no longer exists",
                    system=System.SALESCONNECT,
                )
            if not fresh.is_deleted:
                return fresh
            task = fresh
        raise _version_race(task.id)

    def _name_from_subject(
        self, user: SyncUser, task: SalesConnectTask, change: TaskChange
    ) -> dict[str, object]:
        """A Task undeleted in Salesforce comes back as it is there: edits that lost to its
        delete stay lost on both sides, so the name follows the Subject too, where the user's
        template renders a name as itself (a rename in Salesforce still never flows back)."""
        subject = change.source_values.get("Subject")
        if not isinstance(subject, str) or not subject.strip() or subject == task.name:
            return {}
        template = self.directory.settings(user.id).activity_subject_template
        if render_subject(template, subject) != subject:
            return {}
        return {"name": subject}

    def _update(
        self,
        task: SalesConnectTask,
        change: TaskChange,
        extra: Mapping[str, object] | None = None,
    ) -> Outcome:
        incoming = {**salesconnect_known_values(change.changed), **(extra or {})}
        if not incoming:
            return SKIPPED
        key = stamp_key(task.id)
        claim = self.ledger.claim_fields(key, SourceStamp.of(change), incoming)
        if not claim.won:
            return SKIPPED
        for _ in range(MAX_VERSION_RACES):
            current = self.client.task(task.id)
            if current is None or current.is_deleted:
                return SKIPPED
            won = self._still_won(key, change, claim.won)
            present = _json_values(current)
            to_write = {name: incoming[name] for name in won if present[name] != incoming[name]}
            if not to_write:
                return APPLIED if won else SKIPPED
            self._defer_if_changed_in_flight(current, present, to_write)
            try:
                self.client.update_task(
                    current.id,
                    to_write,
                    if_match=current.version,
                    idempotency_key=f"{change.message_id}:v{current.version}",
                )
            except SalesConnectApiError as exc:
                if exc.status == 412:
                    continue
                if exc.code == "task_deleted":
                    return SKIPPED
                raise
            self.ledger.remember_writes(Origin.SALESCONNECT, current.id, to_write)
            return APPLIED
        raise _version_race(task.id)

    def _delete(self, task: SalesConnectTask | None, change: TaskChange) -> Outcome:
        for _ in range(MAX_VERSION_RACES):
            if task is None or task.is_deleted:
                return SKIPPED
            try:
                self.client.delete_task(
                    task.id,
                    if_match=task.version,
                    idempotency_key=f"{change.message_id}:delete:{task.version}",
                )
            except SalesConnectApiError as exc:
                if exc.status != 412:
                    raise
                task = self.client.task(task.id)
                continue
            return APPLIED
        raise _version_race(str(change.record.salesconnect_task_id))

    # -- conflicts ----------------------------------------------------------------------------

    def _still_won(self, key: str, change: TaskChange, fields: frozenset[str]) -> set[str]:
        stamps = self.ledger.field_stamps(key)
        return {
            name
            for name in fields
            if name in stamps and stamps[name].message_id == change.message_id
        }

    def _defer_if_changed_in_flight(
        self,
        task: SalesConnectTask,
        present: Mapping[str, object],
        to_write: Mapping[str, object],
    ) -> None:
        known = self.ledger.known_fields(Origin.SALESCONNECT, task.id)
        current = {name: present[name] for name in to_write if name in known}
        unchanged = self.ledger.unchanged_fields(Origin.SALESCONNECT, task.id, current)
        in_flight = sorted(set(current) - unchanged)
        if in_flight:
            raise TaskSyncError(
                ErrorKind.TRANSIENT,
                "CHANGE_IN_FLIGHT",
                f"Sales Connect task {task.id} has a change to {', '.join(in_flight)} that is "
                "not synced yet; applying after it",
                system=System.SALESCONNECT,
            )

    def _report(self, user: SyncUser, change: TaskChange, reason: str) -> None:
        try:
            self.directory.report_sync_error(
                user.id,
                f"A change from Salesforce Task {change.record.salesforce_task_id} could not "
                f"be applied: {reason}",
            )
        except Exception:
            log.exception("could not show the sync error on the Settings page of %s", user.id)


def _json_values(task: SalesConnectTask) -> dict[str, object]:
    return salesconnect_known_values(task.values())


def _version_race(task_id: str) -> TaskSyncError:
    return TaskSyncError(
        ErrorKind.TRANSIENT,
        "VERSION_RACE",
        f"Sales Connect task {task_id} kept changing while it was being written",
        system=System.SALESCONNECT,
    )
