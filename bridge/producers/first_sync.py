"""A user's first sync after turning sync on (SPEC "Turning sync on", docs/sync.md).

1. Settings shows "running".
2. Import: the owner's Tasks in scope modified in the 24 hours before sync was turned on, or
   since, published as Salesforce upserts (imports, unless the ledger links them already).
3. If sync had been on before: the owner's linked Tasks deleted in the last 15 days (the
   recycle bin through `queryAll`, purged ones through `getDeleted`) are published as deletes.
4. Settings shows "done" (or "failed" with the reason), and the ledger cursor
   `first-sync:<user id>` moves to `last_enabled_at`, so it runs once per enabling.

Messages go out in chunks with confirms, each chunk remembered as known before the next, so a
crash midway repeats only message ids already published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from bridge.ledger import Ledger
from bridge.messaging import Publisher
from bridge.producers.deleted import deleted_since
from bridge.producers.observer import IMPORT_WINDOW, Observation, SalesforceTaskObserver
from bridge.producers.running import ProcessControl, describe_failure, publish_until_confirmed
from bridge.salesconnect.client import SalesConnectClient, SyncUser
from bridge.salesforce.tasks import SalesforceTask, SalesforceTaskGateway, soql_datetime, soql_quote
from bridge.sync.directory import salesforce_id_key
from schemas.fields import format_utc_stamp

log = logging.getLogger(__name__)

CURSOR_PREFIX: Final = "first-sync:"
RECYCLE_BIN_REACH: Final = timedelta(days=15)
CHUNK_SIZE: Final = 500
SCOPE_FILTER: Final = "TaskSubtype = 'Task' AND IsRecurrence = false"
SYNC_ERROR_MAX_LENGTH: Final = 2000


def cursor_name(user_id: str) -> str:
    return f"{CURSOR_PREFIX}{user_id}"


def enabled_mark(user: SyncUser) -> str | None:
    return format_utc_stamp(user.last_enabled_at) if user.last_enabled_at else None


def needs_first_sync(ledger: Ledger, user: SyncUser) -> bool:
    """Sync was turned on since the last first sync this ledger remembers for the user."""
    mark = enabled_mark(user)
    if mark is None:
        return False
    cursor = ledger.cursor(cursor_name(user.id))
    return cursor is None or cursor.value != mark


@dataclass(frozen=True)
class FirstSyncResult:
    imported: int
    deleted: int


def chunks(
    tasks: Iterable[SalesforceTask], size: int = CHUNK_SIZE
) -> Iterator[list[SalesforceTask]]:
    chunk: list[SalesforceTask] = []
    for task in tasks:
        chunk.append(task)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class FirstSync:
    """Runs first syncs; the poller calls `run(user)` for each user that `needs_first_sync`."""

    def __init__(
        self,
        *,
        gateway: SalesforceTaskGateway,
        salesconnect: SalesConnectClient,
        publisher: Publisher,
        ledger: Ledger,
        observer: SalesforceTaskObserver,
        control: ProcessControl,
    ) -> None:
        self.gateway = gateway
        self.salesconnect = salesconnect
        self.publisher = publisher
        self.ledger = ledger
        self.observer = observer
        self.control = control

    def run(self, user: SyncUser) -> FirstSyncResult | None:
        """The whole first sync of `user`; on failure Settings shows why and None is returned
        (the poller tries again later)."""
        mark = enabled_mark(user)
        if mark is None or user.salesforce_user_id is None or user.last_enabled_at is None:
            return None
        name = cursor_name(user.id)
        stored = self.ledger.cursor(name)
        started = datetime.now(UTC)
        clock = time.monotonic()
        self._report(user, {"state": "running", "started_at": format_utc_stamp(started)})
        try:
            imported = self._import(user)
            deleted = self._apply_deletes(user) if self._re_enabled(user) else 0
            # Not done until Settings says so: a failed report repeats the first sync later,
            # which republishes nothing (everything is known by then).
            self._report(
                user,
                {
                    "state": "done",
                    "error": None,
                    "started_at": format_utc_stamp(started),
                    "finished_at": format_utc_stamp(datetime.now(UTC)),
                },
                required=True,
            )
        except Exception as exc:
            reason = describe_failure(exc)
            log.warning("first sync of user %s failed: %s", user.id, reason)
            self._report(
                user,
                {
                    "state": "failed",
                    "error": reason[:SYNC_ERROR_MAX_LENGTH],
                    "started_at": format_utc_stamp(started),
                    "finished_at": format_utc_stamp(datetime.now(UTC)),
                },
            )
            return None
        self.ledger.advance_cursor(
            name,
            expected=stored.value if stored is not None else None,
            value=mark,
            position_at=user.last_enabled_at,
        )
        log.info(
            "first sync of user %s (Salesforce user %s) done in %.0f ms: %d imported or "
            "updated, %d deleted",
            user.id,
            user.salesforce_user_id,
            (time.monotonic() - clock) * 1000,
            imported,
            deleted,
        )
        return FirstSyncResult(imported=imported, deleted=deleted)

    @staticmethod
    def _re_enabled(user: SyncUser) -> bool:
        return (
            user.first_enabled_at is not None
            and user.last_enabled_at is not None
            and user.first_enabled_at < user.last_enabled_at
        )

    def _owners(self, user: SyncUser) -> dict[str, SyncUser]:
        return {salesforce_id_key(user.salesforce_user_id or ""): user}

    def _import(self, user: SyncUser) -> int:
        assert user.last_enabled_at is not None and user.salesforce_user_id is not None
        since = user.last_enabled_at - IMPORT_WINDOW
        where = (
            f"OwnerId = {soql_quote(user.salesforce_user_id)} AND {SCOPE_FILTER} "
            f"AND LastModifiedDate >= {soql_datetime(since)} ORDER BY SystemModstamp, Id"
        )
        published = 0
        for chunk in chunks(self.gateway.tasks(where)):
            published += self._publish(
                self.observer.observe(chunk, owners=self._owners(user), imports=True)
            )
        return published

    def _apply_deletes(self, user: SyncUser) -> int:
        assert user.salesforce_user_id is not None
        since = datetime.now(UTC) - RECYCLE_BIN_REACH
        where = (
            f"OwnerId = {soql_quote(user.salesforce_user_id)} AND {SCOPE_FILTER} "
            f"AND IsDeleted = true AND SystemModstamp >= {soql_datetime(since)} "
            "ORDER BY SystemModstamp, Id"
        )
        owners = self._owners(user)
        published = 0
        in_recycle_bin: set[str] = set()
        for chunk in chunks(self.gateway.tasks(where, include_deleted=True)):
            in_recycle_bin.update(task.id for task in chunk)
            published += self._publish(self.observer.observe(chunk, owners=owners))
        window = deleted_since(self.gateway, since)
        candidates = [entry for entry in window.deleted if entry[0] not in in_recycle_bin]
        links = self.observer.known.links_for_salesforce(task_id for task_id, _ in candidates)
        purged = [
            entry
            for entry in candidates
            if (link := links.get(entry[0])) is not None
            and (
                link.salesconnect_user_id == user.id
                or salesforce_id_key(link.salesforce_user_id or "")
                == salesforce_id_key(user.salesforce_user_id)
            )
        ]
        if purged:
            found = self.gateway.tasks_by_id([task_id for task_id, _ in purged])
            gone = [entry for entry in purged if entry[0] not in found]
            observation = self.observer.observe(found.values(), owners=owners)
            observation.extend(self.observer.purged_deletes(gone, owners=owners))
            published += self._publish(observation)
        return published

    def _publish(self, observation: Observation) -> int:
        publish_until_confirmed(self.publisher, observation.changes, self.control)
        self.observer.commit(observation)
        return len(observation.changes)

    def _report(
        self, user: SyncUser, first_sync: dict[str, object], *, required: bool = False
    ) -> None:
        try:
            self.salesconnect.report_sync_state(user.id, first_sync=first_sync)
        except Exception as exc:
            if required:
                raise
            log.warning(
                "could not show the first sync's state (%s) to user %s: %s",
                first_sync.get("state"),
                user.id,
                describe_failure(exc),
            )
