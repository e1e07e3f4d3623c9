"""The Salesforce poller: the backstop that catches whatever notifications miss.

Every interval (`cycle()`):

1. list the users with sync on (one Sales Connect request) and run the first sync of each
   user who turned sync on since their last one (`bridge.producers.first_sync`);
2. poll: ONE `queryAll` for every connected user whose first sync is done,

       SELECT ... FROM Task WHERE OwnerId IN (...) AND TaskSubtype = 'Task'
         AND IsRecurrence = false AND SystemModstamp >= <cursor - overlap>
         AND SystemModstamp <= <now - settle> ORDER BY SystemModstamp, Id

   all pages, handled in chunks: observe (`SalesforceTaskObserver`), publish with confirms,
   remember, then move the cursor `salesforce-poll` to the chunk's last `(SystemModstamp, Id)`;
3. every minute, `getDeleted` from the cursor `salesforce-deleted` (its `latestDateCovered`) for
   deletes no query can return any more (Tasks purged from the recycle bin).

Why the overlap: rows sharing a stamp with the cursor row, or committed after rows with later
stamps were already read (a long transaction), would be skipped by `SystemModstamp > cursor`.
Re-reading `overlap` seconds before the cursor catches them; rows read again publish nothing,
because their values equal the known ones (and within one process they are skipped before the
ledger is even asked). Why the settle time: the bridge's own writes are remembered just after
they commit; a row younger than a couple of seconds is left to the next poll so the poller
does not race the applier that wrote it.

More than `OWNERS_PER_QUERY` connected users are polled with one query per group of owners
(SOQL statements are limited to 100,000 characters).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from bridge.ledger import Ledger, ProducerCursor
from bridge.messaging import Publisher
from bridge.messaging.connection import Backoff
from bridge.observability.events import record_cursor, record_producer_cycle
from bridge.producers.deleted import can_list, deleted_since, floor_minute
from bridge.producers.first_sync import (
    SCOPE_FILTER,
    FirstSync,
    chunks,
    needs_first_sync,
)
from bridge.producers.known_values import KnownValues
from bridge.producers.observer import Observation, SalesforceTaskObserver
from bridge.producers.running import (
    ProcessControl,
    Stopping,
    describe_failure,
    publish_until_confirmed,
)
from bridge.salesconnect.client import SalesConnectClient, SyncUser
from bridge.salesforce.tasks import SalesforceTaskGateway, soql_datetime, soql_id_list
from bridge.sync.directory import SyncUserDirectory
from schemas.fields import format_utc_stamp, parse_utc_stamp

log = logging.getLogger(__name__)

POLL_CURSOR: Final = "salesforce-poll"
DELETED_CURSOR: Final = "salesforce-deleted"
OWNERS_PER_QUERY: Final = 1000
POLL_CHUNK: Final = 2000


@dataclass(frozen=True)
class PollerSettings:
    interval: float = 5.0
    overlap: timedelta = timedelta(seconds=15)
    settle: timedelta = timedelta(seconds=2)
    deleted_every: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class PollCursor:
    """`<SystemModstamp>|<Id>` of the last row handled, in the ledger."""

    stamp: datetime
    task_id: str

    def encode(self) -> str:
        return f"{format_utc_stamp(self.stamp)}|{self.task_id}"

    @classmethod
    def decode(cls, value: str) -> PollCursor:
        stamp, _, task_id = value.partition("|")
        return cls(parse_utc_stamp(stamp), task_id)


@dataclass(frozen=True)
class CycleResult:
    users: int
    first_syncs: int
    polled: int
    published: int


class SalesforcePoller:
    """One process's poller; `run()` until stopped or `cycle()` once."""

    def __init__(
        self,
        gateway: SalesforceTaskGateway,
        salesconnect: SalesConnectClient,
        publisher: Publisher,
        ledger: Ledger,
        *,
        control: ProcessControl | None = None,
        settings: PollerSettings | None = None,
        directory: SyncUserDirectory | None = None,
    ) -> None:
        self.gateway = gateway
        self.salesconnect = salesconnect
        self.publisher = publisher
        self.ledger = ledger
        self.control = control or ProcessControl()
        self.settings = settings or PollerSettings()
        self.directory = directory or SyncUserDirectory(salesconnect, max_age=0.0)
        self.observer = SalesforceTaskObserver(KnownValues(ledger), self.directory)
        self.first_sync = FirstSync(
            gateway=gateway,
            salesconnect=salesconnect,
            publisher=publisher,
            ledger=ledger,
            observer=self.observer,
            control=self.control,
        )
        self._first_sync_retry_at: dict[str, float] = {}
        self._first_sync_backoff: dict[str, Backoff] = {}

    # -- the loop -----------------------------------------------------------------------------

    def run(self, on_ready: Callable[[CycleResult], None] | None = None) -> None:
        backoff = Backoff(initial=1.0, cap=60.0)
        ready = False
        while not self.control.should_stop:
            started = time.monotonic()
            try:
                result = self.cycle()
            except Stopping:
                break
            except Exception as exc:
                delay = backoff.next_delay()
                record_producer_cycle(False, describe_failure(exc))
                log.warning("%s; polling again in %.1f s", describe_failure(exc), delay)
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
                    on_ready(result)
            try:
                self.control.sleep(self.settings.interval - (time.monotonic() - started))
            except Stopping:
                break
        log.info("Salesforce poller stopped")

    def cycle(self) -> CycleResult:
        cycle_started = datetime.now(UTC)
        # Log in (once) even with no one to poll, so wrong credentials show at start.
        _ = self.gateway.session.client
        try:
            self.directory.refresh()
            listed = True
        except Exception as exc:
            if not self.directory.loaded:
                raise
            # Salesforce changes still flow (workers retry the Sales Connect side); first
            # syncs wait, since their state could not be shown.
            log.warning("using the last list of synced users: %s", describe_failure(exc))
            listed = False
        users = self.directory.connected()
        first_syncs = 0
        for user in users if listed else ():
            self.control.check()
            if needs_first_sync(self.ledger, user) and self._first_sync_due(user):
                first_syncs += 1
                if self.first_sync.run(user) is None:
                    self._first_sync_failed(user)
                else:
                    self._first_sync_backoff.pop(user.id, None)
                    self._first_sync_retry_at.pop(user.id, None)
        polled_users = [user for user in users if not needs_first_sync(self.ledger, user)]
        polled, published = self.poll(polled_users, cycle_started=cycle_started)
        try:
            published += self.scan_deleted()
        except Exception as exc:  # a replication call refused must not stop the polls
            log.warning("getDeleted failed, trying again next cycle: %s", describe_failure(exc))
        return CycleResult(
            users=len(users), first_syncs=first_syncs, polled=polled, published=published
        )

    def _first_sync_due(self, user: SyncUser) -> bool:
        return time.monotonic() >= self._first_sync_retry_at.get(user.id, 0.0)

    def _first_sync_failed(self, user: SyncUser) -> None:
        backoff = self._first_sync_backoff.setdefault(user.id, Backoff(initial=5.0, cap=300.0))
        self._first_sync_retry_at[user.id] = time.monotonic() + backoff.next_delay()

    # -- polling ------------------------------------------------------------------------------

    def poll(self, users: Sequence[SyncUser], *, cycle_started: datetime) -> tuple[int, int]:
        """Read and publish every change since the cursor; returns (rows read, published)."""
        stored = self.ledger.cursor(POLL_CURSOR)
        cursor = PollCursor.decode(stored.value) if stored is not None else None
        upper = datetime.now(UTC) - self.settings.settle
        # Without a cursor nothing before this cycle matters: first syncs import what came
        # before, and they ran in this very cycle.
        lower = (cursor.stamp if cursor else cycle_started) - self.settings.overlap
        owners = sorted({user.salesforce_user_id for user in users if user.salesforce_user_id})
        groups = [
            owners[start : start + OWNERS_PER_QUERY]
            for start in range(0, len(owners), OWNERS_PER_QUERY)
        ]
        read = 0
        published = 0
        newest = cursor or PollCursor(min(upper, cycle_started), "")
        for group in groups:
            where = (
                f"OwnerId IN {soql_id_list(group)} AND {SCOPE_FILTER} "
                f"AND SystemModstamp >= {soql_datetime(lower)} "
                f"AND SystemModstamp <= {soql_datetime(upper)} ORDER BY SystemModstamp, Id"
            )
            for chunk in chunks(self.gateway.tasks(where, include_deleted=True), POLL_CHUNK):
                self.control.check()
                read += len(chunk)
                published += self._publish(self.observer.observe(chunk), "poll")
                last = PollCursor(chunk[-1].system_modstamp, chunk[-1].id)
                if (last.stamp, last.task_id) > (newest.stamp, newest.task_id):
                    newest = last
                    if len(groups) == 1:
                        # Rows come in cursor order: a crash after this chunk resumes here.
                        stored = self._move_cursor(stored, newest, newest.stamp)
        # Covered up to `upper` even when nothing changed, so `tasksync status` shows no lag.
        self._move_cursor(stored, newest, max(upper, newest.stamp))
        return read, published

    def _publish(self, observation: Observation, what: str) -> int:
        started = time.monotonic()
        publish_until_confirmed(self.publisher, observation.changes, self.control)
        self.observer.commit(observation)
        if observation.changes:
            newest = max(change.occurred_at for change in observation.changes)
            log.info(
                "%s: published %d changes (%d rows unchanged or out of scope) in %.0f ms; "
                "lag %.1f s",
                what,
                len(observation.changes),
                observation.ignored,
                (time.monotonic() - started) * 1000,
                (datetime.now(UTC) - newest).total_seconds(),
            )
        return len(observation.changes)

    def _move_cursor(
        self, stored: ProducerCursor | None, cursor: PollCursor, position_at: datetime
    ) -> ProducerCursor | None:
        if not self.ledger.advance_cursor(
            POLL_CURSOR,
            expected=stored.value if stored is not None else None,
            value=cursor.encode(),
            position_at=position_at,
        ):
            log.warning("cursor %s was moved by another poller; taking its value", POLL_CURSOR)
        current = self.ledger.cursor(POLL_CURSOR)
        record_cursor(POLL_CURSOR, current.position_at if current is not None else None)
        return current

    # -- getDeleted -----------------------------------------------------------------------------

    def scan_deleted(self) -> int:
        """Deletes of Tasks purged before the poll could see them deleted."""
        now = datetime.now(UTC)
        stored = self.ledger.cursor(DELETED_CURSOR)
        if stored is None:
            start = floor_minute(now)
            self.ledger.advance_cursor(
                DELETED_CURSOR, expected=None, value=format_utc_stamp(start), position_at=start
            )
            return 0
        start = parse_utc_stamp(stored.value)
        if now - start < self.settings.deleted_every or not can_list(start, now):
            return 0
        window = deleted_since(self.gateway, start, now=now)
        published = 0
        if window.deleted:
            known = self.observer.known
            links = known.links_for_salesforce(task_id for task_id, _ in window.deleted)
            ours = [entry for entry in window.deleted if entry[0] in links]
            if ours:
                found = self.gateway.tasks_by_id([task_id for task_id, _ in ours])
                observation = self.observer.observe(found.values())
                observation.extend(
                    self.observer.purged_deletes([entry for entry in ours if entry[0] not in found])
                )
                published = self._publish(observation, "getDeleted")
        covered = window.latest_date_covered or start
        if covered > start:
            self.ledger.advance_cursor(
                DELETED_CURSOR,
                expected=stored.value,
                value=format_utc_stamp(covered),
                position_at=covered,
            )
            record_cursor(DELETED_CURSOR, covered)
        return published
