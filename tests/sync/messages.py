"""Building the messages producers would publish, for applier tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.fields import utc_millis
from schemas.task_change import ChangedFields, Op, Origin, Owner, RecordRef, TaskChange


def now(offset_seconds: float = 0.0) -> datetime:
    return utc_millis(datetime.now(UTC) + timedelta(seconds=offset_seconds))


def from_salesconnect(
    user_id: str,
    salesforce_user_id: str,
    task_id: str,
    *,
    op: Op = Op.UPSERT,
    at: datetime | None = None,
    salesforce_task_id: str | None = None,
    **changed: Any,
) -> TaskChange:
    return TaskChange(
        message_id=uuid.uuid4(),
        origin=Origin.SALESCONNECT,
        op=op,
        occurred_at=at or now(),
        actor=user_id,
        owner=Owner(salesconnect_user_id=user_id, salesforce_user_id=salesforce_user_id),
        record=RecordRef(salesconnect_task_id=task_id, salesforce_task_id=salesforce_task_id),
        trace_id=uuid.uuid4().hex,
        changed=ChangedFields(**changed),
    )


def from_salesforce(
    salesforce_user_id: str,
    task_id: str,
    *,
    op: Op = Op.UPSERT,
    at: datetime | None = None,
    salesconnect_task_id: str | None = None,
    **changed: Any,
) -> TaskChange:
    return TaskChange(
        message_id=uuid.uuid4(),
        origin=Origin.SALESFORCE,
        op=op,
        occurred_at=at or now(),
        actor=salesforce_user_id,
        owner=Owner(salesforce_user_id=salesforce_user_id),
        record=RecordRef(salesforce_task_id=task_id, salesconnect_task_id=salesconnect_task_id),
        trace_id=uuid.uuid4().hex,
        changed=ChangedFields(**changed),
    )
