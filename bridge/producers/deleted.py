"""`getDeleted` within its rules: whole minutes, at most 15 days back from the start of today.

Salesforce's replication calls ignore seconds, need the end at least a minute after the start,
and refuse a start more than 15 days before the start of the current day (UTC) with
`INVALID_REPLICATION_DATE`. `latestDateCovered` says how far a call really looked (the start of
the current minute when the end is later): the next call starts there, so a delete made in the
current minute is listed by the next one, never lost between two.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Final

from bridge.salesforce.tasks import DeletedWindow, SalesforceTaskGateway

log = logging.getLogger(__name__)

REPLICATION_REACH: Final = timedelta(days=15)
MINUTE: Final = timedelta(minutes=1)
# Kept clear of the exact limit, so a call made as the day turns is never refused.
REACH_MARGIN: Final = timedelta(minutes=1)


def floor_minute(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(second=0, microsecond=0)


def earliest_start(now: datetime) -> datetime:
    start_of_today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start_of_today - REPLICATION_REACH + REACH_MARGIN


def can_list(start: datetime, now: datetime) -> bool:
    """Whether a call from `start` to `now` covers at least one whole minute."""
    return floor_minute(now) - floor_minute(start) >= MINUTE


def deleted_since(
    gateway: SalesforceTaskGateway, start: datetime, *, now: datetime | None = None
) -> DeletedWindow:
    """Deletes from `start` (moved forward to the reachable limit) until now."""
    now = now or datetime.now(UTC)
    earliest = earliest_start(now)
    if start < earliest:
        log.warning(
            "deletes before %s can no longer be listed by getDeleted (15 days); reading from there",
            earliest.isoformat(),
        )
        start = earliest
    if not can_list(start, now):
        return DeletedWindow(deleted=(), earliest_date_available=None, latest_date_covered=start)
    window = gateway.deleted_between(start, now)
    if window.earliest_date_available is not None and window.earliest_date_available > start:
        log.warning(
            "Salesforce purged deletes up to %s before they could be read; Tasks deleted "
            "before then may still exist in Sales Connect",
            window.earliest_date_available.isoformat(),
        )
    return window
