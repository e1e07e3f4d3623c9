"""Users and their settings: reading them, creating them, and every change to them.

Turning task sync on or off is a change the bridge must see in order with the user's task
changes, so it goes to the change feed in the same transaction (`sync_enabled` carries when
sync was first and last enabled: the bridge's first-sync rules depend on both). Sync state
reported by the bridge is not a change of the user's data and is not fed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesconnect import tables
from salesconnect.change_feed import append_change
from salesconnect.database import WriteTransaction
from salesconnect.errors import ConflictError, NotFoundError
from salesconnect.ids import new_user_id
from salesconnect.model import (
    DEFAULT_SUBJECT_TEMPLATE,
    ChangeOp,
    ChangeOrigin,
    FirstSync,
    FirstSyncState,
    Settings,
    SyncError,
    TaskSync,
    User,
    UserSummary,
    Writer,
)
from salesconnect.stamps import now_ms
from schemas.task_change import UNSET, Unset


@dataclass(frozen=True)
class UserDraft:
    email: str
    name: str
    time_zone: str
    salesforce_user_id: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class UserEdit:
    email: str | Unset = UNSET
    name: str | Unset = UNSET
    time_zone: str | Unset = UNSET
    salesforce_user_id: str | Unset | None = UNSET


@dataclass(frozen=True)
class SettingsEdit:
    task_sync: TaskSync | Unset = UNSET
    activity_subject_template: str | Unset = UNSET


@dataclass(frozen=True)
class SyncStateReport:
    """What the bridge reports; `UNSET` parts are left as they are, `None` clears the error."""

    first_sync: FirstSync | Unset = UNSET
    last_sync_error: SyncError | Unset | None = UNSET


def _user(row: sa.Row[Any]) -> User:
    return User(
        id=row.id,
        email=row.email,
        name=row.name,
        time_zone=row.time_zone,
        salesforce_user_id=row.salesforce_user_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _settings(row: sa.Row[Any]) -> Settings:
    last_error = (
        None
        if row.last_sync_error is None
        else SyncError(message=row.last_sync_error, occurred_at=row.last_sync_error_at)
    )
    return Settings(
        user_id=row.user_id,
        task_sync=TaskSync(row.task_sync),
        activity_subject_template=row.activity_subject_template,
        first_enabled_at=row.first_enabled_at,
        last_enabled_at=row.last_enabled_at,
        first_sync=FirstSync(
            state=FirstSyncState(row.first_sync_state),
            error=row.first_sync_error,
            started_at=row.first_sync_started_at,
            finished_at=row.first_sync_finished_at,
        ),
        last_sync_error=last_error,
        updated_at=row.updated_at,
    )


def _check_unique(
    connection: Connection,
    *,
    user_id: str | None,
    email: str | None,
    salesforce_user_id: str | None,
) -> None:
    """Name the taken value in a 409, rather than surfacing a bare integrity error."""
    users = tables.users
    others = sa.true() if user_id is None else users.c.id != user_id
    if email is not None:
        taken = connection.execute(
            sa.select(users.c.id).where(sa.func.lower(users.c.email) == email.lower(), others)
        ).first()
        if taken:
            raise ConflictError(
                "email_taken",
                f"Another user ({taken.id}) already has the email {email}.",
                fields={"email": ["Must be unique: another user has this email."]},
            )
    if salesforce_user_id is not None:
        taken = connection.execute(
            sa.select(users.c.id).where(users.c.salesforce_user_id == salesforce_user_id, others)
        ).first()
        if taken:
            raise ConflictError(
                "salesforce_user_taken",
                f"Another user ({taken.id}) is already connected to Salesforce user "
                f"{salesforce_user_id}.",
                fields={
                    "salesforce_user_id": [
                        "Must be unique: another user is connected to this Salesforce user."
                    ]
                },
            )


def create_user(transaction: WriteTransaction, draft: UserDraft) -> User:
    connection = transaction.connection
    user_id = draft.id or new_user_id()
    if (
        draft.id is not None
        and connection.execute(
            sa.select(tables.users.c.id).where(tables.users.c.id == draft.id)
        ).first()
    ):
        raise ConflictError(
            "user_exists",
            f"A user with id {draft.id} already exists.",
            fields={"id": ["Must be unique: a user with this id exists."]},
        )
    _check_unique(
        connection, user_id=None, email=draft.email, salesforce_user_id=draft.salesforce_user_id
    )
    stamp = now_ms()
    connection.execute(
        sa.insert(tables.users).values(
            id=user_id,
            email=draft.email,
            name=draft.name,
            time_zone=draft.time_zone,
            salesforce_user_id=draft.salesforce_user_id,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    connection.execute(
        sa.insert(tables.user_settings).values(
            user_id=user_id,
            task_sync=TaskSync.OFF.value,
            activity_subject_template=DEFAULT_SUBJECT_TEMPLATE,
            first_sync_state=FirstSyncState.IDLE.value,
            updated_at=stamp,
        )
    )
    return get_user(connection, user_id)


def get_user(connection: Connection, user_id: str) -> User:
    row = connection.execute(sa.select(tables.users).where(tables.users.c.id == user_id)).first()
    if row is None:
        raise NotFoundError("user_not_found", f"No user with id {user_id!r}.")
    return _user(row)


def update_user(transaction: WriteTransaction, user_id: str, edit: UserEdit) -> User:
    connection = transaction.connection
    current = get_user(connection, user_id)
    values: dict[str, Any] = {}
    for name in ("email", "name", "time_zone", "salesforce_user_id"):
        value = getattr(edit, name)
        if value is not UNSET and value != getattr(current, name):
            values[name] = value
    if not values:
        return current
    _check_unique(
        connection,
        user_id=user_id,
        email=values.get("email"),
        salesforce_user_id=values.get("salesforce_user_id"),
    )
    values["updated_at"] = max(now_ms(), current.updated_at + 1)
    connection.execute(sa.update(tables.users).where(tables.users.c.id == user_id).values(values))
    return get_user(connection, user_id)


def list_users(
    connection: Connection, *, task_sync: TaskSync | None, after: str | None, limit: int
) -> list[UserSummary]:
    """Users ordered by id, optionally only those with sync on or off (for the poller)."""
    users, settings = tables.users, tables.user_settings
    query = (
        sa.select(
            users,
            settings.c.task_sync,
            settings.c.first_enabled_at,
            settings.c.last_enabled_at,
        )
        .join(settings, settings.c.user_id == users.c.id)
        .order_by(users.c.id)
        .limit(limit)
    )
    if task_sync is not None:
        query = query.where(settings.c.task_sync == task_sync.value)
    if after is not None:
        query = query.where(users.c.id > after)
    return [
        UserSummary(
            user=_user(row),
            task_sync=TaskSync(row.task_sync),
            first_enabled_at=row.first_enabled_at,
            last_enabled_at=row.last_enabled_at,
        )
        for row in connection.execute(query)
    ]


def get_settings(connection: Connection, user_id: str, *, for_update: bool = False) -> Settings:
    query = sa.select(tables.user_settings).where(tables.user_settings.c.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    row = connection.execute(query).first()
    if row is None:
        raise NotFoundError("user_not_found", f"No user with id {user_id!r}.")
    return _settings(row)


def update_settings(
    transaction: WriteTransaction, user_id: str, edit: SettingsEdit, origin: ChangeOrigin
) -> Settings:
    """Apply the user's settings; turning sync on or off is announced on the change feed.

    Each time sync is turned on, the first sync for that enablement is due again: its state
    goes back to `idle` until the bridge reports it running.
    """
    connection = transaction.connection
    current = get_settings(connection, user_id, for_update=True)
    values: dict[str, Any] = {}
    if (
        edit.activity_subject_template is not UNSET
        and edit.activity_subject_template != current.activity_subject_template
    ):
        values["activity_subject_template"] = edit.activity_subject_template
    turning: ChangeOp | None = None
    if edit.task_sync is not UNSET and edit.task_sync is not current.task_sync:
        turning = ChangeOp.SYNC_ENABLED if edit.task_sync is TaskSync.ON else ChangeOp.SYNC_DISABLED
    if not values and turning is None:
        return current
    stamp = max(now_ms(), current.updated_at + 1)
    values["updated_at"] = stamp
    first_enabled_at, last_enabled_at = current.first_enabled_at, current.last_enabled_at
    if turning is ChangeOp.SYNC_ENABLED:
        first_enabled_at = first_enabled_at if first_enabled_at is not None else stamp
        last_enabled_at = stamp
        values.update(
            task_sync=TaskSync.ON.value,
            first_enabled_at=first_enabled_at,
            last_enabled_at=last_enabled_at,
            first_sync_state=FirstSyncState.IDLE.value,
            first_sync_error=None,
            first_sync_started_at=None,
            first_sync_finished_at=None,
        )
    elif turning is ChangeOp.SYNC_DISABLED:
        values["task_sync"] = TaskSync.OFF.value
    connection.execute(
        sa.update(tables.user_settings)
        .where(tables.user_settings.c.user_id == user_id)
        .values(values)
    )
    if turning is not None:
        new_state = TaskSync.ON if turning is ChangeOp.SYNC_ENABLED else TaskSync.OFF
        append_change(
            transaction,
            user_id=user_id,
            task_id=None,
            op=turning,
            changed={"task_sync": new_state.value},
            version=None,
            occurred_at=stamp,
            writer=Writer.of(origin, user_id),
            task_sync=new_state,
            first_enabled_at=first_enabled_at,
            last_enabled_at=last_enabled_at,
        )
    return get_settings(connection, user_id)


def report_sync_state(
    transaction: WriteTransaction, user_id: str, report: SyncStateReport
) -> Settings:
    connection = transaction.connection
    current = get_settings(connection, user_id, for_update=True)
    values: dict[str, Any] = {}
    if not isinstance(report.first_sync, Unset):
        values.update(
            first_sync_state=report.first_sync.state.value,
            first_sync_error=report.first_sync.error,
            first_sync_started_at=report.first_sync.started_at,
            first_sync_finished_at=report.first_sync.finished_at,
        )
    if report.last_sync_error is None:
        values.update(last_sync_error=None, last_sync_error_at=None)
    elif not isinstance(report.last_sync_error, Unset):
        values.update(
            last_sync_error=report.last_sync_error.message,
            last_sync_error_at=report.last_sync_error.occurred_at,
        )
    if values:
        values["updated_at"] = max(now_ms(), current.updated_at + 1)
        connection.execute(
            sa.update(tables.user_settings)
            .where(tables.user_settings.c.user_id == user_id)
            .values(values)
        )
    return get_settings(connection, user_id)
