"""The Sales Connect producer: the change feed, from the ledger cursor, onto
`tasksync.salesconnect.changes`.

Each step reads one page of the feed after the cursor (long-polling when there is nothing
new), maps the entries to messages, publishes the whole page with confirms, remembers the
published values as known, and only then moves the cursor to the page's last sequence number.
A crash anywhere before the cursor moved republishes the page with the same message ids
(`salesconnect_message_id(seq)`, trace id included), which the workers' ledger drops.

What is not published (docs/sync.md): the bridge's own writes (`origin: salesforce`), settings
events, entries of a user whose sync was off at that point of the feed or who is not connected
to a Salesforce user, and tasks created before sync was last turned on that are not linked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bridge.ledger import Ledger
from bridge.messaging import Publisher
from bridge.messaging.connection import Backoff
from bridge.observability.events import (
    record_cursor,
    record_producer_cycle,
    record_producer_skipped,
)
from bridge.producers.known_values import KnownValues, Observed
from bridge.producers.running import (
    ProcessControl,
    Stopping,
    describe_failure,
    publish_until_confirmed,
)
from bridge.salesconnect.client import FeedEntry, SalesConnectClient, SyncUser
from bridge.sync.conventions import salesconnect_known_values, salesconnect_message_id, stamp_claims
from bridge.sync.directory import SyncUserDirectory
from schemas.fields import JsonScalar, parse_calendar_date, utc_millis
from schemas.task_change import (
    NEUTRAL_FIELDS,
    ChangedFields,
    Op,
    Origin,
    Owner,
    RecordRef,
    TaskChange,
    TaskPriority,
    TaskStatus,
)

log = logging.getLogger(__name__)

CURSOR_NAME: Final = "salesconnect-feed"
FEED_OPS: Final[Mapping[str, Op]] = {
    "task_created": Op.UPSERT,
    "task_updated": Op.UPSERT,
    "task_deleted": Op.DELETE,
    "task_restored": Op.UNDELETE,
}
SETTINGS_OPS: Final = frozenset({"sync_enabled", "sync_disabled"})


@dataclass(frozen=True)
class FeedProducerSettings:
    page_size: int = 500
    wait_seconds: float = 10.0
    cursor_name: str = CURSOR_NAME


@dataclass(frozen=True)
class PageResult:
    """One step's work: entries read, messages published, where the cursor stands."""

    entries: int
    published: int
    cursor: int


def changed_fields(changed: Mapping[str, Any]) -> ChangedFields:
    """A feed entry's neutral values as the message's typed fields."""
    values: dict[str, Any] = {}
    for name in NEUTRAL_FIELDS:
        if name not in changed:
            continue
        value = changed[name]
        if name == "status":
            value = TaskStatus(value)
        elif name == "priority":
            value = TaskPriority(value)
        elif name == "due_date":
            value = None if value is None else parse_calendar_date(str(value))
        elif name == "details":
            value = value or ""
        values[name] = value
    return ChangedFields(**values)


def change_for_entry(
    entry: FeedEntry, user: SyncUser, salesforce_task_id: str | None
) -> TaskChange | None:
    """The message for one task entry of a synced, connected user; None when there is no
    change to carry (an entry that only moved the Salesforce link)."""
    op = FEED_OPS[entry.op]
    changed = ChangedFields() if op is Op.DELETE else changed_fields(entry.changed)
    if op is Op.UPSERT and changed.is_empty():
        return None
    message_id = salesconnect_message_id(entry.seq)
    source: dict[str, JsonScalar] = {
        name: value
        for name, value in entry.changed.items()
        if value is None or isinstance(value, str | int | float | bool)
    }
    source["version"] = entry.version
    source["seq"] = entry.seq
    return TaskChange(
        message_id=message_id,
        origin=Origin.SALESCONNECT,
        op=op,
        occurred_at=utc_millis(entry.occurred_at),
        actor=entry.actor or entry.user_id,
        owner=Owner(salesconnect_user_id=entry.user_id, salesforce_user_id=user.salesforce_user_id),
        record=RecordRef(salesconnect_task_id=entry.task_id, salesforce_task_id=salesforce_task_id),
        trace_id=message_id.hex,
        changed=changed,
        source_values=source,
    )


class SalesConnectFeedProducer:
    """Follows the feed and publishes; `run()` until stopped, or `step()` one page."""

    def __init__(
        self,
        client: SalesConnectClient,
        publisher: Publisher,
        ledger: Ledger,
        *,
        directory: SyncUserDirectory | None = None,
        control: ProcessControl | None = None,
        settings: FeedProducerSettings | None = None,
    ) -> None:
        self.client = client
        self.publisher = publisher
        self.ledger = ledger
        self.known = KnownValues(ledger)
        self.directory = directory or SyncUserDirectory(client)
        self.control = control or ProcessControl()
        self.settings = settings or FeedProducerSettings()
        # The last time sync was turned on per user, as of the feed position being read:
        # settings events in the feed update it in order; the directory fills it in otherwise.
        self._enabled_since: dict[str, datetime | None] = {}

    # -- the loop -----------------------------------------------------------------------------

    def run(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Publish until stopped; `on_ready(cursor)` once the first page was handled."""
        backoff = Backoff(initial=0.5, cap=30.0)
        ready = False
        wait = 0.0  # the first read answers at once, so readiness is not a long-poll away
        while not self.control.should_stop:
            try:
                result = self.step(wait=wait)
            except Stopping:
                break
            except Exception as exc:  # reported in one line and retried; never a crash loop
                delay = backoff.next_delay()
                record_producer_cycle(False, describe_failure(exc))
                log.warning("%s; trying again in %.1f s", describe_failure(exc), delay)
                try:
                    self.control.sleep(delay)
                except Stopping:
                    break
                continue
            backoff.reset()
            record_producer_cycle(True)
            if not ready:
                ready = True
                if on_ready is not None:
                    on_ready(result.cursor)
            wait = 0.0 if result.entries >= self.settings.page_size else self.settings.wait_seconds
        log.info("Sales Connect producer stopped")

    def current_cursor(self) -> int:
        cursor = self.ledger.cursor(self.settings.cursor_name)
        return int(cursor.value) if cursor is not None else 0

    def step(self, *, wait: float = 0.0) -> PageResult:
        """Read, publish and record one page; move the cursor after it."""
        stored = self.ledger.cursor(self.settings.cursor_name)
        after = int(stored.value) if stored is not None else 0
        with self.control.interruptible():
            page = self.client.changes(after, limit=self.settings.page_size, wait=wait)
        if not page.changes:
            if wait > 0 and stored is not None:
                # Caught up as of now: say so, so `tasksync status` shows no lag when idle.
                self.ledger.advance_cursor(
                    self.settings.cursor_name,
                    expected=stored.value,
                    value=stored.value,
                    position_at=datetime.now(UTC),
                )
                record_cursor(self.settings.cursor_name, datetime.now(UTC))
            return PageResult(entries=0, published=0, cursor=after)
        started = time.monotonic()
        changes, observed = self.messages_for(page.changes)
        publish_until_confirmed(self.publisher, changes, self.control)
        self.known.record(observed)
        last = page.changes[-1]
        value = str(max(page.next_after, last.seq))
        moved = self.ledger.advance_cursor(
            self.settings.cursor_name,
            expected=stored.value if stored is not None else None,
            value=value,
            position_at=last.occurred_at,
        )
        if not moved:
            log.warning(
                "cursor %s was moved by another producer; continuing from the stored value",
                self.settings.cursor_name,
            )
        record_cursor(self.settings.cursor_name, last.occurred_at)
        lag = (datetime.now(UTC) - last.occurred_at).total_seconds()
        log.info(
            "published %d of %d feed entries (seq %d-%d) in %.0f ms; cursor %s, lag %.1f s",
            len(changes),
            len(page.changes),
            page.changes[0].seq,
            last.seq,
            (time.monotonic() - started) * 1000,
            value,
            lag,
        )
        return PageResult(entries=len(page.changes), published=len(changes), cursor=int(value))

    # -- mapping a page -----------------------------------------------------------------------

    def messages_for(self, entries: Sequence[FeedEntry]) -> tuple[list[TaskChange], list[Observed]]:
        """The messages a page calls for, in feed order, and the values they make known."""
        if any(entry.op in SETTINGS_OPS for entry in entries):
            self.directory.refresh()
        else:
            self.directory.ensure_fresh()
        task_ids = [entry.task_id for entry in entries if entry.task_id]
        links = self.known.links_for_salesconnect(task_ids)
        changes: list[TaskChange] = []
        observed: list[Observed] = []
        for entry in entries:
            if entry.op in SETTINGS_OPS:
                self._enabled_since[entry.user_id] = (
                    entry.last_enabled_at if entry.op == "sync_enabled" else None
                )
                continue
            if entry.op not in FEED_OPS or entry.task_id is None:
                log.debug("feed entry %d: op %s is not a task change", entry.seq, entry.op)
                continue
            if entry.by_bridge or not entry.task_sync:
                record_producer_skipped("salesconnect", "echo" if entry.by_bridge else "sync_off")
                if entry.by_bridge and (written := salesconnect_known_values(entry.changed)):
                    # What the bridge wrote is what Sales Connect holds: known, even when the
                    # worker that wrote it was killed before recording it (else the field
                    # would look changed in flight to every later change, forever).
                    observed.append(Observed(Origin.SALESCONNECT, entry.task_id, written))
                continue
            user = self.directory.by_salesconnect_id(entry.user_id)
            if user is None:
                log.info(
                    "feed entry %d: user %s has sync on but is not connected to a Salesforce "
                    "user; not published",
                    entry.seq,
                    entry.user_id,
                )
                record_producer_skipped("salesconnect", "not_connected")
                continue
            link = links.get(entry.task_id)
            salesforce_task_id = entry.salesforce_task_id or (
                link.salesforce_task_id if link else None
            )
            if salesforce_task_id is None and self._created_before_sync(entry, user):
                record_producer_skipped("salesconnect", "existed_before_sync")
                continue
            change = change_for_entry(entry, user, salesforce_task_id)
            if change is None:
                continue
            changes.append(change)
            if not change.changed.is_empty():
                observed.append(
                    Observed(
                        Origin.SALESCONNECT,
                        entry.task_id,
                        salesconnect_known_values(change.changed),
                    )
                )
        self.ledger.claim_fields_many(stamp_claims(changes))
        return changes, observed

    def _created_before_sync(self, entry: FeedEntry, user: SyncUser) -> bool:
        """Existing tasks are never pushed: created before sync was last turned on."""
        enabled_since = self._enabled_since.get(entry.user_id, user.last_enabled_at)
        if enabled_since is None or entry.task_created_at is None:
            return False
        return entry.task_created_at < enabled_since
