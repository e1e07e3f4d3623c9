"""What the consumer, the producers and the ingress report as they work: each call counts the
event in the metrics and, for changes, logs one line per change (logger `tasksync.changes`)
with its message id, task ids, direction, outcome and duration as fields, so a JSON log can be
searched for one message's whole journey: published by a producer, then applied, retried or
parked by a worker.

These are hooks, called where the work happens; none of them raises or changes what the
caller does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from bridge.observability import metrics
from schemas.task_change import TaskChange

log = logging.getLogger("tasksync.changes")

RETRIED: Final = "retried"
DEFERRED: Final = "deferred"
PARKED: Final = "parked"


@dataclass(frozen=True)
class HandledChange:
    """One message a worker finished with in a batch, and what became of it."""

    message_id: str
    outcome: str  # applied, duplicate, echo-skipped, skipped, retried, deferred, parked
    task_key: str | None = None
    salesconnect_task_id: str | None = None
    salesforce_task_id: str | None = None
    op: str | None = None
    occurred_at: datetime | None = None
    attempts: int = 0
    tier: str | None = None
    error_kind: str | None = None
    error: str | None = None


def record_received(direction: str, count: int) -> None:
    metrics.CHANGES_RECEIVED.labels(direction).inc(count)


def record_batch(direction: str, changes: Sequence[HandledChange], duration: float) -> None:
    """A worker's batch is settled (recorded, retries and parked copies confirmed)."""
    try:
        _record_batch(direction, changes, duration)
    except Exception:  # counting must never fail the batch it counts
        log.warning("could not record a batch of %d", len(changes), exc_info=True)


def _record_batch(direction: str, changes: Sequence[HandledChange], duration: float) -> None:
    if not changes:
        return
    metrics.BATCH_DURATION.labels(direction).observe(duration)
    outcomes = Counter(change.outcome for change in changes)
    for outcome, count in outcomes.items():
        metrics.CHANGES.labels(direction, outcome).inc(count)
    now = datetime.now(UTC)
    delays = metrics.SYNC_DELAY.labels(direction)
    for change in changes:
        if change.outcome in (RETRIED, DEFERRED):
            metrics.RETRIES.labels(direction, change.tier or "", change.error_kind or "").inc()
        elif change.outcome == PARKED:
            metrics.PARKED.labels(direction, change.error_kind or "").inc()
        elif change.outcome == "applied" and change.occurred_at is not None:
            delays.observe(max(0.0, (now - change.occurred_at).total_seconds()))
    if not log.isEnabledFor(logging.INFO):
        return
    duration_ms = round(duration * 1000, 1)
    for change in changes:
        _log_handled(direction, change, duration_ms, len(changes))


def _log_handled(direction: str, change: HandledChange, duration_ms: float, batch: int) -> None:
    fields: dict[str, object] = {
        "event": "change_handled",
        "message_id": change.message_id,
        "direction": direction,
        "outcome": change.outcome,
        "duration_ms": duration_ms,
        "batch_size": batch,
        "task_key": change.task_key,
        "salesconnect_task_id": change.salesconnect_task_id,
        "salesforce_task_id": change.salesforce_task_id,
        "op": change.op,
        "attempts": change.attempts,
    }
    detail = ""
    if change.tier is not None:
        fields["tier"] = change.tier
        detail += f" (next try in {change.tier})"
    if change.error_kind:
        fields["error_kind"] = change.error_kind
    if change.error:
        fields["error"] = change.error
        detail += f": {change.error}"
    log.info(
        "%s %s %s (%s) in a batch of %d, %.1f ms%s",
        direction,
        change.outcome,
        change.message_id,
        change.task_key or "unreadable message",
        batch,
        duration_ms,
        detail,
        extra=fields,
    )


def record_published(changes: Sequence[TaskChange], duration: float) -> None:
    """A producer's (or the ingress's) messages were confirmed by RabbitMQ."""
    try:
        _record_published(changes, duration)
    except Exception:  # counting must never fail the publish it counts
        log.warning("could not record %d published messages", len(changes), exc_info=True)


def _record_published(changes: Sequence[TaskChange], duration: float) -> None:
    if not changes:
        return
    with _progress_lock:
        PROGRESS.last_activity = time.monotonic()
    for (origin, op), count in Counter((c.origin.value, c.op.value) for c in changes).items():
        metrics.PUBLISHED.labels(origin, op).inc(count)
    if not log.isEnabledFor(logging.INFO):
        return
    duration_ms = round(duration * 1000, 1)
    for change in changes:
        direction = "to-salesforce" if change.origin.value == "salesconnect" else "to-salesconnect"
        log.info(
            "published %s %s (%s task %s), confirmed in a batch of %d in %.1f ms",
            change.op.value,
            change.message_id,
            change.origin.value,
            change.record.salesconnect_task_id or change.record.salesforce_task_id,
            len(changes),
            duration_ms,
            extra={
                "event": "change_published",
                "message_id": str(change.message_id),
                "direction": direction,
                "outcome": "published",
                "duration_ms": duration_ms,
                "batch_size": len(changes),
                "origin": change.origin.value,
                "op": change.op.value,
                "salesconnect_task_id": change.record.salesconnect_task_id,
                "salesforce_task_id": change.record.salesforce_task_id,
                "salesconnect_user_id": change.owner.salesconnect_user_id,
                "occurred_at": change.occurred_at.isoformat(),
            },
        )


def record_producer_skipped(origin: str, reason: str, count: int = 1) -> None:
    metrics.PRODUCER_SKIPPED.labels(origin, reason).inc(count)


@dataclass
class ProducerProgress:
    """When this process's producer last completed a cycle, for its health checks."""

    started: float
    last_success: float | None = None
    last_activity: float | None = None  # a completed cycle or a confirmed publish
    last_failure: float | None = None
    failure: str | None = None


_progress_lock = threading.Lock()
PROGRESS: Final = ProducerProgress(started=time.monotonic())


def record_producer_cycle(ok: bool, failure: str | None = None) -> None:
    """A poll or feed read ended; `ok` when it completed (published what it found)."""
    metrics.PRODUCER_CYCLES.labels("ok" if ok else "failed").inc()
    with _progress_lock:
        if ok:
            PROGRESS.last_success = PROGRESS.last_activity = time.monotonic()
            metrics.PRODUCER_LAST_SUCCESS.set_to_current_time()
        else:
            PROGRESS.last_failure = time.monotonic()
            PROGRESS.failure = failure


def record_cursor(name: str, position_at: datetime | None) -> None:
    """A producer cursor moved (or was confirmed caught up) to `position_at`."""
    if position_at is not None:
        metrics.CURSORS.record(name, position_at)


def record_ingress_answer(status: int) -> None:
    metrics.INGRESS_REQUESTS.labels(str(status)).inc()


def record_notifications(count: int) -> None:
    metrics.INGRESS_NOTIFICATIONS.inc(count)


def record_ingress_rate_limited(scope: str) -> None:
    metrics.INGRESS_RATE_LIMITED.labels(scope).inc()
