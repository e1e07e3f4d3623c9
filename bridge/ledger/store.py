"""`Ledger`: the bridge's durable memory, on SQLite (one machine) or PostgreSQL (several).

Every write that decides something is a compare-and-set in one transaction, so two workers
racing on the same row get one winner:

* processed messages and task leases (`begin_batch` / `finish_batch`): a message recorded as
  processed is never handed to a handler again; a task is leased by one consumer at a time.
* per-field source stamps (`claim_fields`): a change may write a field only if it is newer
  than what was last applied there, so any delivery order converges.
* echo fingerprints (`remember_writes` / `echoed_fields`): what the bridge itself last wrote.
* id links (`link`): one Sales Connect task id to one Salesforce Task id, never two.
* producer cursors (`advance_cursor`): moved only from the value the producer last read.

SQLite runs in WAL mode with `synchronous=FULL` and takes its write lock at `BEGIN` (`BEGIN
IMMEDIATE`), so concurrent processes wait instead of failing mid-transaction.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bridge.ledger import schema as t
from bridge.ledger.records import (
    BatchClaim,
    DroppedMessage,
    FieldClaim,
    KnownRecord,
    LinkConflictError,
    ProcessedMessage,
    ProducerCursor,
    SourceStamp,
    TaskLink,
    from_millis,
    to_millis,
)
from schemas.task_change import Origin

LEDGER_FILE: Final = "ledger.sqlite3"
DEFAULT_LEASE_SECONDS: Final = 30.0
DEFAULT_PROCESSED_RETENTION: Final = timedelta(days=30)


def default_ledger_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / LEDGER_FILE).resolve()}"


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` for the psycopg 3 driver tasksync ships."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def value_fingerprint(value: object) -> str:
    """A stable hash of one field value as written (dates as ISO text, enums by value)."""
    return hashlib.sha256(
        json.dumps(
            _plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    ).hexdigest()


def _plain(value: object) -> object:
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class Ledger:
    """Typed access to the ledger tables; thread-safe (one SQLAlchemy engine, pooled)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, create_schema: bool = True) -> Ledger:
        """Connect to `url` (`sqlite:///path` or `postgresql://...`) and create missing tables."""
        url = normalize_url(url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        ledger = cls(engine)
        if create_schema:
            ledger.create_schema()
        return ledger

    def create_schema(self) -> None:
        try:
            t.metadata.create_all(self.engine)
        except DBAPIError:
            # Two processes creating the tables at once on PostgreSQL: one loses the race.
            t.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _insert(self, table: Any) -> Any:
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)

    # -- processed messages and task leases ----------------------------------------------------

    def begin_batch(
        self,
        *,
        holder: str,
        messages: Sequence[tuple[str, str]],
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        now: datetime | None = None,
    ) -> BatchClaim:
        """For `(message id, task key)` pairs: which messages are already processed, and lease
        the tasks of the others to `holder` unless another holder's lease is still running."""
        now_ms = to_millis(now or datetime.now(UTC))
        ids = sorted({message_id for message_id, _ in messages})
        with self.engine.begin() as conn:
            done = (
                set(
                    conn.scalars(
                        select(t.processed_messages.c.message_id).where(
                            t.processed_messages.c.message_id.in_(ids)
                        )
                    )
                )
                if ids
                else set()
            )
            tasks = sorted({task for message_id, task in messages if message_id not in done})
            held: set[str] = set()
            if tasks:
                leases = t.task_leases
                # One statement run per row (executemany): compiled once and cached, where a
                # multi-row VALUES would be compiled again for every batch size.
                insert = self._insert(leases)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[leases.c.task_key],
                        set_={
                            "holder": insert.excluded.holder,
                            "expires_at": insert.excluded.expires_at,
                        },
                        where=or_(
                            leases.c.holder == insert.excluded.holder, leases.c.expires_at < now_ms
                        ),
                    ),
                    [
                        {
                            "task_key": task,
                            "holder": holder,
                            "expires_at": now_ms + int(lease_seconds * 1000),
                        }
                        for task in tasks
                    ],
                )
                held = set(
                    conn.scalars(
                        select(leases.c.task_key).where(
                            leases.c.task_key.in_(tasks), leases.c.holder == holder
                        )
                    )
                )
        return BatchClaim(frozenset(done), frozenset(held), frozenset(set(tasks) - held))

    def finish_batch(
        self,
        *,
        holder: str,
        processed: Sequence[ProcessedMessage],
        release: Iterable[str],
        now: datetime | None = None,
    ) -> None:
        """Record `processed` messages and release `holder`'s leases on `release` tasks."""
        now_ms = to_millis(now or datetime.now(UTC))
        release = sorted(set(release))
        with self.engine.begin() as conn:
            if processed:
                conn.execute(
                    self._insert(t.processed_messages).on_conflict_do_nothing(),
                    [
                        {
                            "message_id": p.message_id,
                            "task_key": p.task_key,
                            "consumer": p.consumer,
                            "outcome": p.outcome,
                            "processed_at": now_ms,
                        }
                        for p in processed
                    ],
                )
            if release:
                conn.execute(
                    delete(t.task_leases).where(
                        t.task_leases.c.task_key.in_(release), t.task_leases.c.holder == holder
                    )
                )

    def renew_leases(
        self, holder: str, lease_seconds: float = DEFAULT_LEASE_SECONDS, now: datetime | None = None
    ) -> int:
        now_ms = to_millis(now or datetime.now(UTC))
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t.task_leases)
                .where(t.task_leases.c.holder == holder)
                .values(expires_at=now_ms + int(lease_seconds * 1000))
            )
            return int(result.rowcount)

    def release_leases(self, holder: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(delete(t.task_leases).where(t.task_leases.c.holder == holder))
            return int(result.rowcount)

    def is_processed(self, message_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.scalar(
                select(t.processed_messages.c.message_id).where(
                    t.processed_messages.c.message_id == message_id
                )
            )
        return found is not None

    def forget_processed(self, before: datetime) -> int:
        """Drop processed-message ids older than `before` (the retention period)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(t.processed_messages).where(
                    t.processed_messages.c.processed_at < to_millis(before)
                )
            )
            return int(result.rowcount)

    # -- per-field source stamps ----------------------------------------------------------------

    def claim_fields(
        self,
        record_key: str,
        stamp: SourceStamp,
        fields: Iterable[str],
        *,
        now: datetime | None = None,
    ) -> FieldClaim:
        """Compare-and-set: record `stamp` on each field where it is newer than the stamp last
        applied there, and say which fields this change won.

        A field already carrying this very message's stamp counts as won, so a redelivery after
        a crash between this claim and the write re-applies it (the write is idempotent); an
        older or tie-losing stamp is stale and must not be written."""
        return self.claim_fields_many([(record_key, stamp, fields)], now=now)[0]

    def claim_fields_many(
        self,
        claims: Sequence[tuple[str, SourceStamp, Iterable[str]]],
        *,
        now: datetime | None = None,
    ) -> list[FieldClaim]:
        """`claim_fields` for many changes in one transaction, in order (a later claim in the
        list sees the earlier ones), one `FieldClaim` each."""
        wanted = [(key, stamp, sorted(set(fields))) for key, stamp, fields in claims]
        rows: list[dict[str, object]] = []
        now_ms = to_millis(now or datetime.now(UTC))
        for key, stamp, names in wanted:
            stamp_ms, rank, message_hex = stamp.order_key()
            rows.extend(
                {
                    "record_key": key,
                    "field": name,
                    "stamp_ms": stamp_ms,
                    "origin": stamp.origin.value,
                    "origin_rank": rank,
                    "message_id": message_hex,
                    "applied_at": now_ms,
                }
                for name in names
            )
        if not rows:
            return [FieldClaim(frozenset(), frozenset()) for _ in wanted]
        stamps = t.field_stamps
        insert = self._insert(stamps)
        new = insert.excluded
        newer = or_(
            stamps.c.stamp_ms < new.stamp_ms,
            and_(
                stamps.c.stamp_ms == new.stamp_ms,
                or_(
                    stamps.c.origin_rank < new.origin_rank,
                    and_(
                        stamps.c.origin_rank == new.origin_rank,
                        stamps.c.message_id < new.message_id,
                    ),
                ),
            ),
        )
        keys = sorted({key for key, _, names in wanted if names})
        with self.engine.begin() as conn:
            statement = insert.on_conflict_do_update(
                index_elements=[stamps.c.record_key, stamps.c.field],
                set_={
                    "stamp_ms": new.stamp_ms,
                    "origin": new.origin,
                    "origin_rank": new.origin_rank,
                    "message_id": new.message_id,
                    "applied_at": new.applied_at,
                },
                where=newer,
            )
            # executemany runs the rows in order: two claims of one field here see each other.
            conn.execute(statement, rows)
            holders: dict[tuple[str, str], str] = {}
            for chunk_start in range(0, len(keys), 500):
                chunk = keys[chunk_start : chunk_start + 500]
                for found in conn.execute(
                    select(stamps.c.record_key, stamps.c.field, stamps.c.message_id).where(
                        stamps.c.record_key.in_(chunk)
                    )
                ):
                    holders[(found.record_key, found.field)] = found.message_id
        results = []
        for key, stamp, names in wanted:
            message_hex = stamp.order_key()[2]
            won = frozenset(name for name in names if holders.get((key, name)) == message_hex)
            results.append(FieldClaim(won, frozenset(names) - won))
        return results

    def field_stamps(self, record_key: str) -> dict[str, SourceStamp]:
        """The stamp last applied to each field of `record_key`."""
        stamps = t.field_stamps
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    stamps.c.field, stamps.c.stamp_ms, stamps.c.origin, stamps.c.message_id
                ).where(stamps.c.record_key == record_key)
            ).all()
        return {
            row.field: SourceStamp(
                from_millis(row.stamp_ms), Origin(row.origin), uuid.UUID(hex=row.message_id)
            )
            for row in rows
        }

    # -- echo fingerprints --------------------------------------------------------------------

    def remember_writes(
        self,
        target: Origin,
        record_id: str,
        values: Mapping[str, object],
        *,
        now: datetime | None = None,
    ) -> None:
        """Fingerprint the values the bridge just wrote to `target`'s record `record_id`."""
        if not values:
            return
        now_ms = to_millis(now or datetime.now(UTC))
        insert = self._insert(t.echo_fingerprints)
        rows = [
            {
                "system": target.value,
                "record_id": record_id,
                "field": name,
                "value_hash": value_fingerprint(value),
                "written_at": now_ms,
            }
            for name, value in sorted(values.items())
        ]
        with self.engine.begin() as conn:
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[
                        t.echo_fingerprints.c.system,
                        t.echo_fingerprints.c.record_id,
                        t.echo_fingerprints.c.field,
                    ],
                    set_={
                        "value_hash": insert.excluded.value_hash,
                        "written_at": insert.excluded.written_at,
                    },
                ),
                rows,
            )

    def echoed_fields(
        self, origin: Origin, record_id: str, values: Mapping[str, object]
    ) -> frozenset[str]:
        """The fields of an incoming change from `origin` whose value is exactly what the bridge
        last wrote there: echoes of its own writes. A field whose value differs shows the
        record moved on, so its fingerprint is forgotten and a later change back to the old
        value is not mistaken for an echo."""
        if not values:
            return frozenset()
        fp = t.echo_fingerprints
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(fp.c.field, fp.c.value_hash).where(
                    fp.c.system == origin.value,
                    fp.c.record_id == record_id,
                    fp.c.field.in_(sorted(values)),
                )
            ).all()
            known: dict[str, str] = {row.field: row.value_hash for row in rows}
            echoed = {
                name
                for name, value in values.items()
                if known.get(name) == value_fingerprint(value)
            }
            moved_on = sorted(set(known) - echoed)
            if moved_on:
                conn.execute(
                    delete(fp).where(
                        fp.c.system == origin.value,
                        fp.c.record_id == record_id,
                        fp.c.field.in_(moved_on),
                    )
                )
        return frozenset(echoed)

    def unchanged_fields(
        self, system: Origin, record_id: str, values: Mapping[str, object]
    ) -> frozenset[str]:
        """The fields whose value equals the one last known for that record: written by the
        bridge or observed by a producer (`remember_writes`). Read-only, unlike
        `echoed_fields`: producers use it to publish only what changed, appliers to spot a
        concurrent change at the target that no message has brought yet."""
        if not values:
            return frozenset()
        fp = t.echo_fingerprints
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(fp.c.field, fp.c.value_hash).where(
                    fp.c.system == system.value,
                    fp.c.record_id == record_id,
                    fp.c.field.in_(sorted(values)),
                )
            ).all()
        known = {row.field: row.value_hash for row in rows}
        return frozenset(
            name for name, value in values.items() if known.get(name) == value_fingerprint(value)
        )

    def known_fields(self, system: Origin, record_id: str) -> frozenset[str]:
        """The fields of a record whose last value the ledger knows."""
        fp = t.echo_fingerprints
        with self.engine.connect() as conn:
            names = conn.scalars(
                select(fp.c.field).where(fp.c.system == system.value, fp.c.record_id == record_id)
            )
            return frozenset(names)

    def forget_known(self, system: Origin, record_id: str, fields: Iterable[str]) -> None:
        """Drop the last known value of these fields, so the next observation of the record
        counts them as changed (used when a write may have overwritten a newer value)."""
        names = sorted(set(fields))
        if not names:
            return
        fp = t.echo_fingerprints
        with self.engine.begin() as conn:
            conn.execute(
                delete(fp).where(
                    fp.c.system == system.value,
                    fp.c.record_id == record_id,
                    fp.c.field.in_(names),
                )
            )

    def forget_records(self, system: Origin, record_ids: Iterable[str]) -> None:
        """Drop every known value of these records."""
        fp = t.echo_fingerprints
        with self.engine.begin() as conn:
            for chunk in _chunks(sorted(set(record_ids))):
                conn.execute(
                    delete(fp).where(fp.c.system == system.value, fp.c.record_id.in_(chunk))
                )

    def remember_version(
        self, system: Origin, record_id: str, modified_at: datetime, *, now: datetime | None = None
    ) -> None:
        """The record's last modification stamp as last seen (newer stamps only replace older)."""
        versions = t.record_versions
        insert = self._insert(versions)
        with self.engine.begin() as conn:
            conn.execute(
                insert.values(
                    system=system.value,
                    record_id=record_id,
                    modified_ms=to_millis(modified_at),
                    seen_at=to_millis(now or datetime.now(UTC)),
                ).on_conflict_do_update(
                    index_elements=[versions.c.system, versions.c.record_id],
                    set_={
                        "modified_ms": insert.excluded.modified_ms,
                        "seen_at": insert.excluded.seen_at,
                    },
                    where=versions.c.modified_ms < insert.excluded.modified_ms,
                )
            )

    def known_version(self, system: Origin, record_id: str) -> datetime | None:
        versions = t.record_versions
        with self.engine.connect() as conn:
            found = conn.scalar(
                select(versions.c.modified_ms).where(
                    versions.c.system == system.value, versions.c.record_id == record_id
                )
            )
        return from_millis(found) if found is not None else None

    # -- many records at once ------------------------------------------------------------------
    #
    # A backlog is handled hundreds of messages at a time; one transaction per record (about
    # 1.6 ms each on SQLite with synchronous=FULL) would cost more than the work itself.

    def fingerprints(self, system: Origin, record_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """Per record, the hash of each field's last known value (`value_fingerprint`)."""
        fp = t.echo_fingerprints
        found: dict[str, dict[str, str]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(record_ids))):
                rows = conn.execute(
                    select(fp.c.record_id, fp.c.field, fp.c.value_hash).where(
                        fp.c.system == system.value, fp.c.record_id.in_(chunk)
                    )
                )
                for row in rows:
                    found.setdefault(row.record_id, {})[row.field] = row.value_hash
        return found

    def known_versions(self, system: Origin, record_ids: Iterable[str]) -> dict[str, datetime]:
        versions = t.record_versions
        found: dict[str, datetime] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(record_ids))):
                rows = conn.execute(
                    select(versions.c.record_id, versions.c.modified_ms).where(
                        versions.c.system == system.value, versions.c.record_id.in_(chunk)
                    )
                )
                found.update({row.record_id: from_millis(row.modified_ms) for row in rows})
        return found

    def record_known(self, records: Sequence[KnownRecord], *, now: datetime | None = None) -> None:
        """`remember_writes` and `remember_version` for many records in one transaction."""
        if not records:
            return
        now_ms = to_millis(now or datetime.now(UTC))
        fingerprint_rows = {
            (item.system.value, item.record_id, name): {
                "system": item.system.value,
                "record_id": item.record_id,
                "field": name,
                "value_hash": value_fingerprint(value),
                "written_at": now_ms,
            }
            for item in records
            for name, value in item.values.items()
        }
        version_rows: dict[tuple[str, str], dict[str, Any]] = {}
        for item in records:
            if item.version is None:
                continue
            key = (item.system.value, item.record_id)
            modified = to_millis(item.version)
            if key not in version_rows or version_rows[key]["modified_ms"] < modified:
                version_rows[key] = {
                    "system": item.system.value,
                    "record_id": item.record_id,
                    "modified_ms": modified,
                    "seen_at": now_ms,
                }
        fp = t.echo_fingerprints
        versions = t.record_versions
        with self.engine.begin() as conn:
            if fingerprint_rows:
                insert = self._insert(fp)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[fp.c.system, fp.c.record_id, fp.c.field],
                        set_={
                            "value_hash": insert.excluded.value_hash,
                            "written_at": insert.excluded.written_at,
                        },
                    ),
                    list(fingerprint_rows.values()),
                )
            if version_rows:
                insert = self._insert(versions)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[versions.c.system, versions.c.record_id],
                        set_={
                            "modified_ms": insert.excluded.modified_ms,
                            "seen_at": insert.excluded.seen_at,
                        },
                        where=versions.c.modified_ms < insert.excluded.modified_ms,
                    ),
                    list(version_rows.values()),
                )

    def field_stamps_many(self, record_keys: Iterable[str]) -> dict[str, dict[str, SourceStamp]]:
        stamps = t.field_stamps
        found: dict[str, dict[str, SourceStamp]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(record_keys))):
                rows = conn.execute(
                    select(
                        stamps.c.record_key,
                        stamps.c.field,
                        stamps.c.stamp_ms,
                        stamps.c.origin,
                        stamps.c.message_id,
                    ).where(stamps.c.record_key.in_(chunk))
                )
                for row in rows:
                    found.setdefault(row.record_key, {})[row.field] = SourceStamp(
                        from_millis(row.stamp_ms),
                        Origin(row.origin),
                        uuid.UUID(hex=row.message_id),
                    )
        return found

    def links_for_salesconnect_many(self, task_ids: Iterable[str]) -> dict[str, TaskLink]:
        """Links by Sales Connect task id, for the ids that have one."""
        return {
            link.salesconnect_task_id: link
            for link in self._links_where(t.task_links.c.salesconnect_task_id, task_ids)
        }

    def links_for_salesforce_many(self, task_ids: Iterable[str]) -> dict[str, TaskLink]:
        """Links by Salesforce Task id, for the ids that have one."""
        return {
            link.salesforce_task_id: link
            for link in self._links_where(t.task_links.c.salesforce_task_id, task_ids)
        }

    def _links_where(self, column: Any, ids: Iterable[str]) -> list[TaskLink]:
        found: list[TaskLink] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(ids))):
                found.extend(
                    _link(row)
                    for row in conn.execute(select(t.task_links).where(column.in_(chunk)))
                )
        return found

    def link_many(self, links: Sequence[TaskLink], *, now: datetime | None = None) -> None:
        """`link` for many pairs in one transaction; `LinkConflictError` names the first pair
        whose ids are linked elsewhere (the others are linked all the same)."""
        if not links:
            return
        now_ms = to_millis(now or datetime.now(UTC))
        rows = [
            {
                "salesconnect_task_id": link.salesconnect_task_id,
                "salesforce_task_id": link.salesforce_task_id,
                "salesconnect_user_id": link.salesconnect_user_id,
                "salesforce_user_id": link.salesforce_user_id,
                "linked_at": now_ms,
            }
            for link in links
        ]
        with self.engine.begin() as conn:
            conn.execute(self._insert(t.task_links).on_conflict_do_nothing(), rows)
        stored = self.links_for_salesconnect_many(link.salesconnect_task_id for link in links)
        for link in links:
            found = stored.get(link.salesconnect_task_id)
            if found is None or found.salesforce_task_id != link.salesforce_task_id:
                existing = found or self.link_for_salesforce(link.salesforce_task_id)
                if existing is not None:
                    raise LinkConflictError(link, existing)

    # -- id links -------------------------------------------------------------------------------

    def link(self, link: TaskLink, *, now: datetime | None = None) -> TaskLink:
        """Link the two ids (idempotent); `LinkConflictError` if either is linked elsewhere."""
        links = t.task_links
        row = {
            "salesconnect_task_id": link.salesconnect_task_id,
            "salesforce_task_id": link.salesforce_task_id,
            "salesconnect_user_id": link.salesconnect_user_id,
            "salesforce_user_id": link.salesforce_user_id,
            "linked_at": to_millis(now or datetime.now(UTC)),
        }
        with self.engine.begin() as conn:
            conn.execute(self._insert(links).values(row).on_conflict_do_nothing())
            existing = [
                _link(found)
                for found in conn.execute(
                    select(links).where(
                        or_(
                            links.c.salesconnect_task_id == link.salesconnect_task_id,
                            links.c.salesforce_task_id == link.salesforce_task_id,
                        )
                    )
                )
            ]
        for found in existing:
            if (found.salesconnect_task_id, found.salesforce_task_id) != (
                link.salesconnect_task_id,
                link.salesforce_task_id,
            ):
                raise LinkConflictError(link, found)
        return existing[0]

    def link_for_salesconnect(self, salesconnect_task_id: str) -> TaskLink | None:
        return self._find_link(t.task_links.c.salesconnect_task_id == salesconnect_task_id)

    def link_for_salesforce(self, salesforce_task_id: str) -> TaskLink | None:
        return self._find_link(t.task_links.c.salesforce_task_id == salesforce_task_id)

    def unlink(self, salesconnect_task_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(t.task_links).where(
                    t.task_links.c.salesconnect_task_id == salesconnect_task_id
                )
            )
            return bool(result.rowcount)

    def _find_link(self, condition: Any) -> TaskLink | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(t.task_links).where(condition)).first()
        return _link(found) if found is not None else None

    # -- producer cursors -----------------------------------------------------------------------

    def cursor(self, name: str) -> ProducerCursor | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.producer_cursors).where(t.producer_cursors.c.name == name)
            ).first()
        return _cursor(row) if row is not None else None

    def cursors(self) -> list[ProducerCursor]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.producer_cursors).order_by(t.producer_cursors.c.name))
            return [_cursor(row) for row in rows]

    def advance_cursor(
        self,
        name: str,
        *,
        expected: str | None,
        value: str,
        position_at: datetime | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Compare-and-set: move cursor `name` to `value` only if it still holds `expected`
        (`None`: only if it does not exist yet). False when another producer moved it."""
        now_ms = to_millis(now or datetime.now(UTC))
        position = to_millis(position_at) if position_at is not None else None
        cursors = t.producer_cursors
        with self.engine.begin() as conn:
            if expected is None:
                created = conn.execute(
                    self._insert(cursors)
                    .values(name=name, value=value, position_at=position, updated_at=now_ms)
                    .on_conflict_do_nothing()
                    .returning(cursors.c.name)
                ).first()
                return created is not None
            else:
                result = conn.execute(
                    update(cursors)
                    .where(cursors.c.name == name, cursors.c.value == expected)
                    .values(value=value, position_at=position, updated_at=now_ms)
                )
            return result.rowcount == 1

    # -- operator audit ----------------------------------------------------------------------

    def record_drop(self, dropped: DroppedMessage) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.dropped_messages.insert().values(
                    message_id=dropped.message_id,
                    reason=dropped.reason,
                    dropped_by=dropped.dropped_by,
                    dropped_at=to_millis(dropped.dropped_at),
                    exchange=dropped.exchange,
                    routing_key=dropped.routing_key,
                    headers_json=dropped.headers_json,
                    body=dropped.body,
                )
            )

    def dropped(self, limit: int = 100) -> list[DroppedMessage]:
        table = t.dropped_messages
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.id.desc()).limit(limit)).all()
        return [
            DroppedMessage(
                message_id=row.message_id,
                reason=row.reason,
                dropped_by=row.dropped_by,
                dropped_at=from_millis(row.dropped_at),
                exchange=row.exchange,
                routing_key=row.routing_key,
                headers_json=row.headers_json,
                body=row.body,
            )
            for row in rows
        ]

    def sizes(self) -> dict[str, int]:
        """Rows per table, for `tasksync status`."""
        with self.engine.connect() as conn:
            return {
                table.name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
                for table in t.TABLES
            }


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _link(row: Any) -> TaskLink:
    return TaskLink(
        salesconnect_task_id=row.salesconnect_task_id,
        salesforce_task_id=row.salesforce_task_id,
        salesconnect_user_id=row.salesconnect_user_id,
        salesforce_user_id=row.salesforce_user_id,
        linked_at=from_millis(row.linked_at),
    )


def _cursor(row: Any) -> ProducerCursor:
    return ProducerCursor(
        name=row.name,
        value=row.value,
        position_at=from_millis(row.position_at) if row.position_at is not None else None,
        updated_at=from_millis(row.updated_at),
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below issue BEGIN IMMEDIATE instead of pysqlite's own BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
