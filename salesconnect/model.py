"""The service's records: users, their settings, reminder tasks and change-feed entries.

Frozen dataclasses, loaded from rows by the stores and dumped to JSON by the API; instants
are integer milliseconds (`stamps.Millis`), due dates `datetime.date`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from salesconnect.stamps import Millis
from schemas.task_change import TaskPriority, TaskStatus

DEFAULT_SUBJECT_TEMPLATE: Final = "{{activity_subject}}"
BRIDGE_ACTOR: Final = "salesforce-bridge"


class TaskSync(enum.StrEnum):
    OFF = "off"
    ON = "on"


class FirstSyncState(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ChangeOp(enum.StrEnum):
    TASK_CREATED = "task_created"
    TASK_UPDATED = "task_updated"
    TASK_DELETED = "task_deleted"
    TASK_RESTORED = "task_restored"
    SYNC_ENABLED = "sync_enabled"
    SYNC_DISABLED = "sync_disabled"


class ChangeOrigin(enum.StrEnum):
    """Who wrote a change: the user (API or pages) or the bridge bringing a Salesforce change."""

    USER = "user"
    SALESFORCE = "salesforce"


@dataclass(frozen=True)
class Writer:
    """The author of a write, recorded on the change-feed entry it produces."""

    origin: ChangeOrigin
    actor: str

    @classmethod
    def of(cls, origin: ChangeOrigin, owner_id: str) -> Writer:
        """The user's own writes name the user; the bridge's name the bridge."""
        return cls(origin, owner_id if origin is ChangeOrigin.USER else BRIDGE_ACTOR)

    @property
    def is_bridge(self) -> bool:
        return self.origin is ChangeOrigin.SALESFORCE


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str
    time_zone: str
    salesforce_user_id: str | None
    created_at: Millis
    updated_at: Millis


@dataclass(frozen=True)
class FirstSync:
    state: FirstSyncState
    error: str | None
    started_at: Millis | None
    finished_at: Millis | None


@dataclass(frozen=True)
class SyncError:
    message: str
    occurred_at: Millis


@dataclass(frozen=True)
class Settings:
    user_id: str
    task_sync: TaskSync
    activity_subject_template: str
    first_enabled_at: Millis | None
    last_enabled_at: Millis | None
    first_sync: FirstSync
    last_sync_error: SyncError | None
    updated_at: Millis


@dataclass(frozen=True)
class UserSummary:
    """A user with the settings the Salesforce poller needs to route its queries."""

    user: User
    task_sync: TaskSync
    first_enabled_at: Millis | None
    last_enabled_at: Millis | None


@dataclass(frozen=True)
class Task:
    id: str
    user_id: str
    name: str
    status: TaskStatus
    priority: TaskPriority
    due_date: date | None
    details: str
    salesforce_task_id: str | None
    version: int
    created_at: Millis
    updated_at: Millis
    deleted_at: Millis | None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@dataclass(frozen=True)
class Change:
    """One committed change as the feed serves it."""

    seq: int
    user_id: str
    task_id: str | None
    op: ChangeOp
    changed: dict[str, Any]
    version: int | None
    occurred_at: Millis
    actor: str
    origin: ChangeOrigin
    task_sync: TaskSync
    salesforce_task_id: str | None
    task_created_at: Millis | None
    first_enabled_at: Millis | None
    last_enabled_at: Millis | None
