"""Reminder tasks: reading them, and every change to them together with its change-feed entry.

A write that changes nothing (the same values again, deleting a deleted task, restoring a live
one) commits nothing and feeds nothing, so the bridge's retries cannot make noise. Every real
change raises the version by one and moves `updated_at` forward by at least a millisecond,
so the feed's `occurred_at` strictly rises per task even when two edits land in the same
millisecond; conflict resolution downstream compares these stamps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesconnect import tables
from salesconnect.change_feed import append_change, append_task_updates
from salesconnect.database import WriteTransaction
from salesconnect.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
)
from salesconnect.ids import new_task_id
from salesconnect.model import BRIDGE_ACTOR, ChangeOp, ChangeOrigin, Task, Writer
from salesconnect.stamps import Millis, now_ms
from salesconnect.user_store import get_user
from schemas.fields import format_calendar_date
from schemas.task_change import NEUTRAL_FIELDS, UNSET, TaskPriority, TaskStatus, Unset

EDITABLE_FIELDS: Final = (*NEUTRAL_FIELDS, "salesforce_task_id")
READ_ONLY_LINK_RULE: Final = (
    "Read-only: set only by the Salesforce bridge (requests sent with X-Sync-Origin: salesforce)."
)


@dataclass(frozen=True)
class TaskDraft:
    name: str
    due_date: date | None
    status: TaskStatus = TaskStatus.OPEN
    priority: TaskPriority = TaskPriority.NORMAL
    details: str = ""
    salesforce_task_id: str | None = None


@dataclass(frozen=True)
class TaskEdit:
    name: str | Unset = UNSET
    status: TaskStatus | Unset = UNSET
    priority: TaskPriority | Unset = UNSET
    due_date: date | Unset | None = UNSET
    details: str | Unset = UNSET
    salesforce_task_id: str | Unset | None = UNSET


@dataclass(frozen=True)
class VersionPrecondition:
    """An `If-Match` header: the versions the client last saw, or `*` for any version."""

    versions: frozenset[int] = frozenset()
    any_version: bool = False

    def allows(self, version: int) -> bool:
        return self.any_version or version in self.versions

    @classmethod
    def parse(cls, header: str) -> VersionPrecondition:
        """`"3"`, `W/"3"`, `3` or a comma-separated list of them; `*` matches any version.

        Anything unreadable matches no version, so it fails as a stale precondition (412)
        rather than writing over a version the client never saw.
        """
        versions: set[int] = set()
        for part in header.split(","):
            tag = part.strip()
            if tag == "*":
                return cls(any_version=True)
            tag = tag.removeprefix("W/").strip('"')
            if tag.isascii() and tag.isdigit() and len(tag) <= 12:
                versions.add(int(tag))
        return cls(versions=frozenset(versions))


@dataclass(frozen=True)
class TaskFilter:
    due_from: date | None = None
    due_to: date | None = None
    status: TaskStatus | None = None
    include_deleted: bool = False
    salesforce_task_id: str | None = None
    after: str | None = None
    limit: int = 100


def _task(row: sa.Row[Any]) -> Task:
    return Task(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        status=TaskStatus(row.status),
        priority=TaskPriority(row.priority),
        due_date=row.due_date,
        details=row.details,
        salesforce_task_id=row.salesforce_task_id,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def wire_value(value: object) -> object:
    """A field value as the change feed carries it (dates as YYYY-MM-DD, enums as values)."""
    if isinstance(value, date):
        return format_calendar_date(value)
    if isinstance(value, TaskStatus | TaskPriority):
        return value.value
    return value


def neutral_fields(task: Task) -> dict[str, object]:
    return {name: wire_value(getattr(task, name)) for name in NEUTRAL_FIELDS}


def _check_link_free(connection: Connection, salesforce_task_id: str, task_id: str | None) -> None:
    query = sa.select(tables.tasks.c.id).where(
        tables.tasks.c.salesforce_task_id == salesforce_task_id
    )
    if task_id is not None:
        query = query.where(tables.tasks.c.id != task_id)
    linked = connection.execute(query).scalar()
    if linked is not None:
        raise ConflictError(
            "salesforce_task_linked",
            f"Salesforce task {salesforce_task_id} is already linked to task {linked}.",
            fields={"salesforce_task_id": ["Must be unique: already linked to another task."]},
            extra={"task_id": linked},
        )


def _locked_task(connection: Connection, task_id: str) -> Task:
    row = connection.execute(
        sa.select(tables.tasks).where(tables.tasks.c.id == task_id).with_for_update()
    ).first()
    if row is None:
        raise NotFoundError("task_not_found", f"No task with id {task_id!r}.")
    return _task(row)


def _check_precondition(task: Task, precondition: VersionPrecondition | None) -> None:
    if precondition is not None and not precondition.allows(task.version):
        raise PreconditionFailedError(
            "version_mismatch",
            f"Task {task.id} is at version {task.version}, not the version in If-Match: "
            "read it again and reapply the change.",
            extra={"current_version": task.version},
            headers={"ETag": task.etag},
        )


def _next_stamp(previous: Millis) -> Millis:
    return max(now_ms(), previous + 1)


def create_task(
    transaction: WriteTransaction, user_id: str, draft: TaskDraft, origin: ChangeOrigin
) -> Task:
    connection = transaction.connection
    writer = Writer.of(origin, user_id)
    get_user(connection, user_id)
    if draft.salesforce_task_id is not None:
        if not writer.is_bridge:
            raise InvalidInputError({"salesforce_task_id": [READ_ONLY_LINK_RULE]})
        _check_link_free(connection, draft.salesforce_task_id, None)
    stamp = now_ms()
    task = Task(
        id=new_task_id(),
        user_id=user_id,
        name=draft.name,
        status=draft.status,
        priority=draft.priority,
        due_date=draft.due_date,
        details=draft.details,
        salesforce_task_id=draft.salesforce_task_id,
        version=1,
        created_at=stamp,
        updated_at=stamp,
        deleted_at=None,
    )
    connection.execute(
        sa.insert(tables.tasks).values(
            id=task.id,
            user_id=task.user_id,
            name=task.name,
            status=task.status.value,
            priority=task.priority.value,
            due_date=task.due_date,
            details=task.details,
            salesforce_task_id=task.salesforce_task_id,
            version=task.version,
            created_at=task.created_at,
            updated_at=task.updated_at,
            deleted_at=None,
        )
    )
    _feed(transaction, task, ChangeOp.TASK_CREATED, neutral_fields(task), writer)
    return task


def _feed(
    transaction: WriteTransaction,
    task: Task,
    op: ChangeOp,
    changed: dict[str, object],
    writer: Writer,
) -> None:
    append_change(
        transaction,
        user_id=task.user_id,
        task_id=task.id,
        op=op,
        changed=changed,
        version=task.version,
        occurred_at=task.updated_at,
        writer=writer,
        salesforce_task_id=task.salesforce_task_id,
        task_created_at=task.created_at,
    )


def task_owner(connection: Connection, task_id: str) -> str | None:
    """The id of the user whose task this is (deleted or not); None when there is no such task."""
    owner = connection.execute(
        sa.select(tables.tasks.c.user_id).where(tables.tasks.c.id == task_id)
    ).scalar_one_or_none()
    return None if owner is None else str(owner)


def get_task(connection: Connection, task_id: str, *, include_deleted: bool = False) -> Task:
    row = connection.execute(sa.select(tables.tasks).where(tables.tasks.c.id == task_id)).first()
    if row is None:
        raise NotFoundError("task_not_found", f"No task with id {task_id!r}.")
    task = _task(row)
    if task.is_deleted and not include_deleted:
        raise NotFoundError(
            "task_deleted",
            f"Task {task_id} was deleted; ask with include_deleted=true to read its tombstone.",
        )
    return task


def update_task(
    transaction: WriteTransaction,
    task_id: str,
    edit: TaskEdit,
    origin: ChangeOrigin,
    precondition: VersionPrecondition | None = None,
) -> Task:
    connection = transaction.connection
    current = _locked_task(connection, task_id)
    writer = Writer.of(origin, current.user_id)
    if current.is_deleted:
        raise ConflictError(
            "task_deleted",
            f"Task {task_id} is deleted; restore it before changing it.",
            extra={"current_version": current.version},
        )
    _check_precondition(current, precondition)
    changed: dict[str, object] = {}
    for name in EDITABLE_FIELDS:
        value = getattr(edit, name)
        if value is not UNSET and value != getattr(current, name):
            changed[name] = value
    if "salesforce_task_id" in changed:
        if not writer.is_bridge:
            raise InvalidInputError({"salesforce_task_id": [READ_ONLY_LINK_RULE]})
        if changed["salesforce_task_id"] is not None:
            _check_link_free(connection, str(changed["salesforce_task_id"]), task_id)
    if not changed:
        return current
    stamp = _next_stamp(current.updated_at)
    version = current.version + 1
    row_values: dict[str, object] = {
        name: value.value if isinstance(value, TaskStatus | TaskPriority) else value
        for name, value in changed.items()
    }
    row_values.update(version=version, updated_at=stamp)
    connection.execute(
        sa.update(tables.tasks).where(tables.tasks.c.id == task_id).values(row_values)
    )
    task = get_task(connection, task_id)
    _feed(
        transaction,
        task,
        ChangeOp.TASK_UPDATED,
        {name: wire_value(value) for name, value in changed.items()},
        writer,
    )
    return task


def link_tasks(
    transaction: WriteTransaction, links: Sequence[tuple[str, str | None]]
) -> list[tuple[str, str, int | None]]:
    """The bridge links (or, with None, unlinks) many tasks to Salesforce Tasks in one go:
    the same outcome as `update_task` of each link in order, with the reads, the updates and
    the feed entries each done as one statement. (task id, status, version) per link; status
    `linked`, `unchanged`, `not_found`, `deleted` or `conflict` (the Salesforce Task is linked
    to another task)."""
    connection = transaction.connection
    task_ids = list(dict.fromkeys(task_id for task_id, _ in links))
    current = {
        row.id: _task(row)
        for row in connection.execute(
            sa.select(tables.tasks).where(tables.tasks.c.id.in_(task_ids)).with_for_update()
        )
    }
    targets = {target for _, target in links if target is not None}
    holders = {
        target: task_id
        for task_id, target in connection.execute(
            sa.select(tables.tasks.c.id, tables.tasks.c.salesforce_task_id).where(
                tables.tasks.c.salesforce_task_id.in_(targets)
            )
        )
    }
    results: list[tuple[str, str, int | None]] = []
    changed: dict[str, Task] = {}
    entries: list[tuple[Task, Mapping[str, object]]] = []
    for task_id, target in links:
        task = current.get(task_id)
        if task is None:
            results.append((task_id, "not_found", None))
            continue
        if task.is_deleted:
            results.append((task_id, "deleted", None))
            continue
        if task.salesforce_task_id == target:
            results.append((task_id, "unchanged", task.version))
            continue
        if target is not None and holders.get(target, task_id) != task_id:
            results.append((task_id, "conflict", None))
            continue
        if task.salesforce_task_id is not None:
            holders.pop(task.salesforce_task_id, None)
        if target is not None:
            holders[target] = task_id
        task = replace(
            task,
            salesforce_task_id=target,
            version=task.version + 1,
            updated_at=_next_stamp(task.updated_at),
        )
        current[task_id] = changed[task_id] = task
        entries.append((task, {"salesforce_task_id": target}))  # one per link made, in order
        results.append((task_id, "linked", task.version))
    if changed:
        connection.execute(
            sa.update(tables.tasks)
            .where(tables.tasks.c.id == sa.bindparam("task_id"))
            .values(
                salesforce_task_id=sa.bindparam("link"),
                version=sa.bindparam("new_version"),
                updated_at=sa.bindparam("stamp"),
            ),
            [
                {
                    "task_id": task.id,
                    "link": task.salesforce_task_id,
                    "new_version": task.version,
                    "stamp": task.updated_at,
                }
                for task in changed.values()
            ],
        )
        append_task_updates(transaction, entries, Writer(ChangeOrigin.SALESFORCE, BRIDGE_ACTOR))
    return results


def delete_task(
    transaction: WriteTransaction,
    task_id: str,
    origin: ChangeOrigin,
    precondition: VersionPrecondition | None = None,
) -> Task:
    """Leave a tombstone; deleting a deleted task changes nothing and succeeds."""
    connection = transaction.connection
    current = _locked_task(connection, task_id)
    writer = Writer.of(origin, current.user_id)
    _check_precondition(current, precondition)
    if current.is_deleted:
        return current
    stamp = _next_stamp(current.updated_at)
    connection.execute(
        sa.update(tables.tasks)
        .where(tables.tasks.c.id == task_id)
        .values(version=current.version + 1, updated_at=stamp, deleted_at=stamp)
    )
    task = get_task(connection, task_id, include_deleted=True)
    _feed(transaction, task, ChangeOp.TASK_DELETED, {}, writer)
    return task


def restore_task(
    transaction: WriteTransaction,
    task_id: str,
    origin: ChangeOrigin,
    precondition: VersionPrecondition | None = None,
) -> Task:
    """Bring a deleted task back (a Salesforce undelete); a live task is left as it is.

    The feed entry carries every field, as a creation does, so a consumer that forgot the
    task can recreate it.
    """
    connection = transaction.connection
    current = _locked_task(connection, task_id)
    writer = Writer.of(origin, current.user_id)
    _check_precondition(current, precondition)
    if not current.is_deleted:
        return current
    stamp = _next_stamp(current.updated_at)
    connection.execute(
        sa.update(tables.tasks)
        .where(tables.tasks.c.id == task_id)
        .values(version=current.version + 1, updated_at=stamp, deleted_at=None)
    )
    task = get_task(connection, task_id)
    _feed(transaction, task, ChangeOp.TASK_RESTORED, neutral_fields(task), writer)
    return task


def list_tasks(connection: Connection, user_id: str, task_filter: TaskFilter) -> list[Task]:
    """A user's tasks ordered by id (roughly creation order), one page after `after`."""
    get_user(connection, user_id)
    tasks = tables.tasks
    query = sa.select(tasks).where(tasks.c.user_id == user_id)
    if task_filter.due_from is not None:
        query = query.where(tasks.c.due_date >= task_filter.due_from)
    if task_filter.due_to is not None:
        query = query.where(tasks.c.due_date <= task_filter.due_to)
    if task_filter.status is not None:
        query = query.where(tasks.c.status == task_filter.status.value)
    if not task_filter.include_deleted:
        query = query.where(tasks.c.deleted_at.is_(None))
    if task_filter.salesforce_task_id is not None:
        query = query.where(tasks.c.salesforce_task_id == task_filter.salesforce_task_id)
    if task_filter.after is not None:
        query = query.where(tasks.c.id > task_filter.after)
    query = query.order_by(tasks.c.id).limit(task_filter.limit)
    return [_task(row) for row in connection.execute(query)]


def tasks_due_between(connection: Connection, user_id: str, first: date, last: date) -> list[Task]:
    """Live tasks due from `first` to `last`: open before completed, then by due date,
    high priority first, oldest first; the order the Command Center shows."""
    tasks = tables.tasks
    completed_last = sa.case((tasks.c.status == TaskStatus.OPEN.value, 0), else_=1)
    high_first = sa.case((tasks.c.priority == TaskPriority.HIGH.value, 0), else_=1)
    query = (
        sa.select(tasks)
        .where(
            tasks.c.user_id == user_id,
            tasks.c.deleted_at.is_(None),
            tasks.c.due_date >= first,
            tasks.c.due_date <= last,
        )
        .order_by(completed_last, tasks.c.due_date, high_first, tasks.c.created_at, tasks.c.id)
    )
    return [_task(row) for row in connection.execute(query)]
