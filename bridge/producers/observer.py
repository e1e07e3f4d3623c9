"""Turning observed Salesforce Task rows into `TaskChange` messages (docs/sync.md, "Messages").

The ingress, the poller and the first sync all see Tasks as rows of current values (read with
`queryAll`, so deleted Tasks come too) and decide here, against what the ledger knows:

* a row whose owner is not a synced user, or that is not a plain to-do Task
  (`is_syncable_salesforce_task`), is not the bridge's business;
* a live row the bridge has never seen, not linked and not created by the bridge (no
  `Sales_Connect_Id__c`), is an import: all mapped fields, the Subject as the name; only if it
  was modified since 24 hours before its owner last turned sync on;
* a live row the bridge knows: only the mapped fields whose raw value differs from the known
  one; nothing at all when none differ (the bridge's own write, a re-read, a change another
  observer already published) or only unsynced values changed (`In Progress`, `Low`);
* a deleted row: a delete, once, for a Task that is linked or known;
* a live row known as deleted: an undelete with all mapped fields.

Message ids come from `(Task id, op, SystemModstamp)`, so the ingress and the poller seeing one
modification publish one id. What was seen is returned as `Observed` records, to be remembered
only after RabbitMQ confirmed the messages (`SalesforceTaskObserver.commit`).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from bridge.ledger import TaskLink, value_fingerprint
from bridge.mapping import MappingError, is_syncable_salesforce_task, neutral_from_salesforce
from bridge.observability.events import record_producer_skipped
from bridge.producers.known_values import DELETED_FIELD, DELETED_HASH, KnownValues, Observed
from bridge.salesconnect.client import SyncUser
from bridge.salesforce.tasks import SalesforceTask
from bridge.sync.conventions import (
    create_intent_key,
    salesforce_known_values,
    salesforce_message_id,
    stamp_claims,
)
from bridge.sync.directory import SyncUserDirectory, salesforce_id_key
from schemas.fields import SALESCONNECT_ID_PATTERN, JsonScalar, format_utc_stamp, utc_millis
from schemas.task_change import (
    ChangedFields,
    Op,
    Origin,
    Owner,
    RecordRef,
    TaskChange,
)

log = logging.getLogger(__name__)

IMPORT_WINDOW: Final = timedelta(hours=24)
SEEN_CACHE_SIZE: Final = 100_000


@dataclass
class Observation:
    """The messages a set of rows calls for, and what to remember once they are confirmed."""

    changes: list[TaskChange] = field(default_factory=list)
    observed: list[Observed] = field(default_factory=list)
    seen: dict[str, datetime] = field(default_factory=dict)
    ignored: int = 0

    def extend(self, other: Observation) -> None:
        self.changes.extend(other.changes)
        self.observed.extend(other.observed)
        self.seen.update(other.seen)
        self.ignored += other.ignored


def source_values(task: SalesforceTask) -> dict[str, JsonScalar]:
    """The raw Task values a message carries for audit."""
    values: dict[str, JsonScalar] = {
        "Subject": task.subject,
        "Status": task.status,
        "Priority": task.priority,
        "ActivityDate": task.activity_date,
        "Description": task.description,
        "TaskSubtype": task.task_subtype,
        "IsRecurrence": task.is_recurrence,
        "IsDeleted": task.is_deleted,
        "LastModifiedDate": format_utc_stamp(task.last_modified_date),
        "SystemModstamp": format_utc_stamp(task.system_modstamp),
    }
    return values


def _bridge_task_id(task: SalesforceTask) -> str | None:
    """The Sales Connect task id the bridge created this Task for, when it looks like one."""
    value = task.sales_connect_id
    if value and SALESCONNECT_ID_PATTERN.fullmatch(value):
        return value
    return None


class SalesforceTaskObserver:
    """Decides what observed Task rows mean; see the module docstring for the rules."""

    def __init__(
        self,
        known: KnownValues,
        directory: SyncUserDirectory,
        *,
        import_window: timedelta = IMPORT_WINDOW,
        seen_cache_size: int = SEEN_CACHE_SIZE,
    ) -> None:
        self.known = known
        self.directory = directory
        self.import_window = import_window
        # Rows re-read in the poller's overlap window with the stamp already handled: skipped
        # without a ledger read. Only filled after the observation was recorded.
        self._seen: collections.OrderedDict[str, datetime] = collections.OrderedDict()
        self._seen_cache_size = seen_cache_size
        self._seen_lock = threading.Lock()  # the ingress observes from several threads

    # -- observing ----------------------------------------------------------------------------

    def observe(
        self,
        tasks: Iterable[SalesforceTask],
        *,
        owners: Mapping[str, SyncUser] | None = None,
        imports: bool = False,
    ) -> Observation:
        """Messages for these rows. `owners` (keyed by `salesforce_id_key`) overrides the
        directory, for a first sync of one user. With `imports` (a first sync's import) a row
        that is not linked is imported even when its values are known: they were seen while
        the owner did not sync (an observer whose list of synced users was a moment old), so
        nothing was applied; such a re-import gets a message id of its own, since the earlier
        one was recorded as processed (skipped)."""
        result = Observation()
        relevant: list[tuple[SalesforceTask, SyncUser]] = []
        for task in tasks:
            with self._seen_lock:
                seen = self._seen.get(task.id)
            if seen == task.system_modstamp and not imports:
                result.ignored += 1
                continue
            user = (
                owners.get(salesforce_id_key(task.owner_id))
                if owners is not None
                else self.directory.by_salesforce_id(task.owner_id)
            )
            if user is None or not is_syncable_salesforce_task(task.values()):
                result.ignored += 1
                continue
            relevant.append((task, user))
        if not relevant:
            return result
        ids = [task.id for task, _ in relevant]
        links = self.known.links_for_salesforce(ids)
        fingerprints = self.known.fingerprints(Origin.SALESFORCE, ids)
        self._add_create_intents(relevant, fingerprints)
        for task, user in relevant:
            try:
                self._observe_one(
                    task,
                    user,
                    links.get(task.id),
                    fingerprints.get(task.id, {}),
                    result,
                    imports=imports,
                )
            except MappingError as exc:
                log.warning("Task %s cannot be carried to Sales Connect: %s", task.id, exc)
                result.ignored += 1
        self.known.ledger.claim_fields_many(stamp_claims(result.changes))
        return result

    def _add_create_intents(
        self,
        relevant: Sequence[tuple[SalesforceTask, SyncUser]],
        fingerprints: dict[str, dict[str, str]],
    ) -> None:
        """A Task the bridge created whose values it never recorded (the applier was stopped
        between the create and recording it) is known by the values it meant to create."""
        intents = {
            task.id: create_intent_key(salesconnect_task_id)
            for task, _ in relevant
            if task.id not in fingerprints
            and (salesconnect_task_id := _bridge_task_id(task)) is not None
        }
        if not intents:
            return
        found = self.known.fingerprints(Origin.SALESFORCE, intents.values())
        for task_id, key in intents.items():
            if key in found:
                fingerprints[task_id] = found[key]

    def _observe_one(
        self,
        task: SalesforceTask,
        user: SyncUser,
        link: TaskLink | None,
        known: Mapping[str, str],
        result: Observation,
        *,
        imports: bool = False,
    ) -> None:
        salesconnect_task_id = link.salesconnect_task_id if link else _bridge_task_id(task)
        known_deleted = known.get(DELETED_FIELD) == DELETED_HASH
        known_fields = {name for name in known if name != DELETED_FIELD}
        if task.is_deleted:
            if known_deleted or not (link or known_fields or salesconnect_task_id):
                result.ignored += 1
                result.seen[task.id] = task.system_modstamp
                return
            result.changes.append(
                self._change(task, user, Op.DELETE, ChangedFields(), salesconnect_task_id)
            )
            result.observed.append(
                Observed(Origin.SALESFORCE, task.id, {DELETED_FIELD: True}, _version(task))
            )
            result.seen[task.id] = task.system_modstamp
            return
        values = salesforce_known_values(task.values())
        remembered = Observed(
            Origin.SALESFORCE,
            task.id,
            {**values, DELETED_FIELD: False},
            _version(task),
        )
        importing = salesconnect_task_id is None and (not known_fields or imports)
        reimport = importing and bool(known_fields)
        if known_deleted:
            op, changed = Op.UNDELETE, neutral_from_salesforce(task.values(), importing=importing)
        elif importing:
            if not self._within_import_window(task, user):
                result.ignored += 1
                result.seen[task.id] = task.system_modstamp
                return
            op, changed = Op.UPSERT, neutral_from_salesforce(task.values(), importing=True)
        else:
            differing = [
                name
                for name, value in values.items()
                if known.get(name) != value_fingerprint(value)
            ]
            changed = neutral_from_salesforce(
                task.values(), importing=False, changed_fields=differing
            )
            op = Op.UPSERT
            if changed.is_empty():
                record_producer_skipped("salesforce", "unchanged")
                result.ignored += 1
                result.observed.append(remembered)
                result.seen[task.id] = task.system_modstamp
                return
        result.changes.append(
            self._change(task, user, op, changed, salesconnect_task_id, reimport=reimport)
        )
        result.observed.append(remembered)
        result.seen[task.id] = task.system_modstamp

    def _within_import_window(self, task: SalesforceTask, user: SyncUser) -> bool:
        if user.last_enabled_at is None:
            return True
        return task.last_modified_date >= user.last_enabled_at - self.import_window

    def _change(
        self,
        task: SalesforceTask,
        user: SyncUser,
        op: Op,
        changed: ChangedFields,
        salesconnect_task_id: str | None,
        *,
        reimport: bool = False,
    ) -> TaskChange:
        kind = f"{op.value}:reimport" if reimport else op.value
        message_id = salesforce_message_id(task.id, kind, task.system_modstamp)
        return TaskChange(
            message_id=message_id,
            origin=Origin.SALESFORCE,
            op=op,
            occurred_at=utc_millis(task.system_modstamp),
            actor=task.last_modified_by_id or task.owner_id,
            owner=Owner(salesconnect_user_id=user.id, salesforce_user_id=task.owner_id),
            record=RecordRef(salesconnect_task_id=salesconnect_task_id, salesforce_task_id=task.id),
            trace_id=message_id.hex,
            changed=changed,
            source_values=source_values(task),
        )

    def purged_deletes(
        self,
        deleted: Sequence[tuple[str, datetime]],
        *,
        owners: Mapping[str, SyncUser] | None = None,
    ) -> Observation:
        """Deletes of Tasks no query can return any more (purged from the recycle bin), as
        `getDeleted` lists them: published for linked Tasks of synced users not yet known
        as deleted. The owner comes from the link."""
        result = Observation()
        if not deleted:
            return result
        ids = [task_id for task_id, _ in deleted]
        links = self.known.links_for_salesforce(ids)
        fingerprints = self.known.fingerprints(Origin.SALESFORCE, ids)
        for task_id, deleted_at in deleted:
            link = links.get(task_id)
            if link is None or fingerprints.get(task_id, {}).get(DELETED_FIELD) == DELETED_HASH:
                result.ignored += 1
                continue
            user = self._link_owner(link, owners)
            if user is None or user.salesforce_user_id is None:
                result.ignored += 1
                continue
            message_id = salesforce_message_id(task_id, Op.DELETE.value, deleted_at)
            result.changes.append(
                TaskChange(
                    message_id=message_id,
                    origin=Origin.SALESFORCE,
                    op=Op.DELETE,
                    occurred_at=utc_millis(deleted_at),
                    actor=link.salesforce_user_id or user.salesforce_user_id,
                    owner=Owner(
                        salesconnect_user_id=user.id,
                        salesforce_user_id=link.salesforce_user_id or user.salesforce_user_id,
                    ),
                    record=RecordRef(
                        salesconnect_task_id=link.salesconnect_task_id,
                        salesforce_task_id=task_id,
                    ),
                    trace_id=message_id.hex,
                    source_values={"IsDeleted": True, "DeletedDate": format_utc_stamp(deleted_at)},
                )
            )
            result.observed.append(Observed(Origin.SALESFORCE, task_id, {DELETED_FIELD: True}))
        return result

    def _link_owner(self, link: TaskLink, owners: Mapping[str, SyncUser] | None) -> SyncUser | None:
        if owners is not None:
            key = salesforce_id_key(link.salesforce_user_id or "")
            if key in owners:
                return owners[key]
            return next(
                (user for user in owners.values() if user.id == link.salesconnect_user_id), None
            )
        if link.salesforce_user_id:
            user = self.directory.by_salesforce_id(link.salesforce_user_id)
            if user is not None:
                return user
        if link.salesconnect_user_id:
            return self.directory.by_salesconnect_id(link.salesconnect_user_id)
        return None

    # -- after the confirms -------------------------------------------------------------------

    def commit(self, observation: Observation) -> None:
        """Remember what was observed; call only after RabbitMQ confirmed its messages."""
        self.known.record(observation.observed)
        with self._seen_lock:
            for task_id, stamp in observation.seen.items():
                self._seen[task_id] = stamp
                self._seen.move_to_end(task_id)
            while len(self._seen) > self._seen_cache_size:
                self._seen.popitem(last=False)


def _version(task: SalesforceTask) -> datetime | None:
    """The stamp that vouches for the values read, if settled (`SalesforceTask.settled`): an
    applier writes with `If-Unmodified-Since` of it without reading the Task again."""
    return task.last_modified_date if task.settled else None
