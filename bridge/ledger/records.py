"""The typed records the ledger reads and writes; no I/O here."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from schemas.task_change import Origin, TaskChange

# On equal source stamps a Salesforce change beats a Sales Connect one (Salesforce is the
# system of record for a Task); on equal stamp and origin the larger message id wins, so two
# deliveries in any order pick the same winner.
ORIGIN_RANK: Final = {Origin.SALESCONNECT: 0, Origin.SALESFORCE: 1}


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_millis(value: datetime) -> int:
    """An aware datetime to whole milliseconds since the epoch (sub-millisecond dropped)."""
    if value.tzinfo is None:
        raise ValueError("a ledger time must carry a time zone")
    return (value - _EPOCH) // timedelta(milliseconds=1)


def from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


@dataclass(frozen=True)
class SourceStamp:
    """When a change happened at its source, and which message carried it.

    Changes of one field are ordered by `(at, origin rank, message id)`: the later source
    modification wins; see `ORIGIN_RANK` for ties."""

    at: datetime
    origin: Origin
    message_id: uuid.UUID

    @classmethod
    def of(cls, change: TaskChange) -> SourceStamp:
        return cls(change.occurred_at, change.origin, change.message_id)

    def order_key(self) -> tuple[int, int, str]:
        return (to_millis(self.at), ORIGIN_RANK[self.origin], self.message_id.hex)


@dataclass(frozen=True)
class FieldClaim:
    """The outcome of `Ledger.claim_fields`: fields this change may write, and stale ones."""

    won: frozenset[str]
    stale: frozenset[str]


@dataclass(frozen=True)
class TaskLink:
    """One task known in both systems."""

    salesconnect_task_id: str
    salesforce_task_id: str
    salesconnect_user_id: str | None = None
    salesforce_user_id: str | None = None
    linked_at: datetime | None = None


class LinkConflictError(Exception):
    """One of the two ids is already linked to a different task."""

    def __init__(self, requested: TaskLink, existing: TaskLink) -> None:
        self.requested = requested
        self.existing = existing
        super().__init__(
            f"cannot link Sales Connect task {requested.salesconnect_task_id} to Salesforce Task "
            f"{requested.salesforce_task_id}: already linked as "
            f"{existing.salesconnect_task_id} <-> {existing.salesforce_task_id}"
        )


@dataclass(frozen=True)
class ProducerCursor:
    """How far a producer has published: an opaque value, and the source time it stands for."""

    name: str
    value: str
    position_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class ProcessedMessage:
    """A message whose effect is durable, with the outcome its handler named."""

    message_id: str
    task_key: str
    outcome: str
    consumer: str


@dataclass(frozen=True)
class BatchClaim:
    """What `Ledger.begin_batch` found: messages already processed (skip them), tasks this
    consumer now holds (apply them), and tasks another consumer holds (defer them)."""

    already_processed: frozenset[str]
    leased: frozenset[str]
    held_elsewhere: frozenset[str]


@dataclass(frozen=True)
class DroppedMessage:
    """An operator's `tasksync parked drop`, kept with the message so nothing is lost unseen."""

    message_id: str
    reason: str
    dropped_by: str
    dropped_at: datetime
    exchange: str
    routing_key: str
    headers_json: str
    body: str


@dataclass(frozen=True)
class KnownRecord:
    """What the bridge knows of one record after writing or observing it: field values (kept
    as fingerprints) and, when known, the record's last modification stamp."""

    system: Origin
    record_id: str
    values: Mapping[str, object]
    version: datetime | None = None
