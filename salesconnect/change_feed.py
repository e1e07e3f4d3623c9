"""The change feed: the outbox every committed change is written to, and how it is read.

Writing: `append_change` runs inside the change's own write transaction. It takes the next
sequence number by updating the single `change_sequence` row, as the transaction's last step;
the row lock is held until commit, so a transaction can only take sequence n+1 after the one
holding n has committed or rolled back. Sequence order is therefore commit order, and a reader
that has seen n has seen everything below it. (A plain SQL sequence or autoincrement would
not do: on PostgreSQL a transaction holding 41 may commit after one holding 42 is visible, and
a reader that moved its cursor to 42 would skip 41 for ever.) A rolled-back transaction
releases its number, so no committed change leaves a hole either.

Reading: `read_changes` returns entries after a cursor, in order. `ChangeNotifier` wakes
long-polling readers in this process as soon as a change commits; readers still re-check the
database every `RECHECK_INTERVAL` so commits made by other processes are seen promptly too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesconnect import tables
from salesconnect.database import WriteTransaction
from salesconnect.model import Change, ChangeOp, ChangeOrigin, Task, TaskSync, Writer
from salesconnect.stamps import Millis

RECHECK_INTERVAL: Final = 0.05
_SEQUENCE_ROW_ID: Final = 1


def append_change(
    transaction: WriteTransaction,
    *,
    user_id: str,
    task_id: str | None,
    op: ChangeOp,
    changed: Mapping[str, Any],
    version: int | None,
    occurred_at: Millis,
    writer: Writer,
    task_sync: TaskSync | None = None,
    salesforce_task_id: str | None = None,
    task_created_at: Millis | None = None,
    first_enabled_at: Millis | None = None,
    last_enabled_at: Millis | None = None,
) -> int:
    """Write one outbox entry in `transaction`; call it last, just before the commit.

    `task_sync` defaults to the user's setting read *after* taking the sequence number: every
    settings change that committed before holds a lower number and is visible by then, every
    later one will hold a higher number, so the entry agrees with the feed's own order.
    """
    connection = transaction.connection
    seq = connection.execute(
        sa.update(tables.change_sequence)
        .where(tables.change_sequence.c.id == _SEQUENCE_ROW_ID)
        .values(last_seq=tables.change_sequence.c.last_seq + 1)
        .returning(tables.change_sequence.c.last_seq)
    ).scalar_one()
    if task_sync is None:
        task_sync = TaskSync(
            connection.execute(
                sa.select(tables.user_settings.c.task_sync).where(
                    tables.user_settings.c.user_id == user_id
                )
            ).scalar_one()
        )
    connection.execute(
        sa.insert(tables.change_outbox).values(
            seq=seq,
            user_id=user_id,
            task_id=task_id,
            op=op.value,
            changed=json.dumps(changed, ensure_ascii=False, separators=(",", ":")),
            version=version,
            occurred_at=occurred_at,
            actor=writer.actor,
            origin=writer.origin.value,
            task_sync=task_sync.value,
            salesforce_task_id=salesforce_task_id,
            task_created_at=task_created_at,
            first_enabled_at=first_enabled_at,
            last_enabled_at=last_enabled_at,
        )
    )
    transaction.changes_appended += 1
    return int(seq)


def append_task_updates(
    transaction: WriteTransaction,
    entries: Sequence[tuple[Task, Mapping[str, Any]]],
    writer: Writer,
) -> None:
    """`append_change` for many task updates by one writer, in their order: the sequence
    numbers are taken together (one update of the sequence row, still the transaction's last
    step), each owner's sync setting is read once after that, and the rows go in as one
    statement."""
    if not entries:
        return
    connection = transaction.connection
    last = connection.execute(
        sa.update(tables.change_sequence)
        .where(tables.change_sequence.c.id == _SEQUENCE_ROW_ID)
        .values(last_seq=tables.change_sequence.c.last_seq + len(entries))
        .returning(tables.change_sequence.c.last_seq)
    ).scalar_one()
    owners = {task.user_id for task, _ in entries}
    task_sync = dict(
        connection.execute(
            sa.select(tables.user_settings.c.user_id, tables.user_settings.c.task_sync).where(
                tables.user_settings.c.user_id.in_(owners)
            )
        ).all()
    )
    first = int(last) - len(entries) + 1
    connection.execute(
        sa.insert(tables.change_outbox),
        [
            {
                "seq": first + position,
                "user_id": task.user_id,
                "task_id": task.id,
                "op": ChangeOp.TASK_UPDATED.value,
                "changed": json.dumps(changed, ensure_ascii=False, separators=(",", ":")),
                "version": task.version,
                "occurred_at": task.updated_at,
                "actor": writer.actor,
                "origin": writer.origin.value,
                "task_sync": task_sync[task.user_id],
                "salesforce_task_id": task.salesforce_task_id,
                "task_created_at": task.created_at,
                "first_enabled_at": None,
                "last_enabled_at": None,
            }
            for position, (task, changed) in enumerate(entries)
        ],
    )
    transaction.changes_appended += len(entries)


def _change(row: sa.Row[Any]) -> Change:
    return Change(
        seq=row.seq,
        user_id=row.user_id,
        task_id=row.task_id,
        op=ChangeOp(row.op),
        changed=json.loads(row.changed),
        version=row.version,
        occurred_at=row.occurred_at,
        actor=row.actor,
        origin=ChangeOrigin(row.origin),
        task_sync=TaskSync(row.task_sync),
        salesforce_task_id=row.salesforce_task_id,
        task_created_at=row.task_created_at,
        first_enabled_at=row.first_enabled_at,
        last_enabled_at=row.last_enabled_at,
    )


def read_changes(connection: Connection, *, after: int, limit: int) -> tuple[list[Change], int]:
    """Entries with seq > `after`, oldest first, at most `limit`; and the newest seq committed."""
    head = connection.execute(
        sa.select(tables.change_sequence.c.last_seq).where(
            tables.change_sequence.c.id == _SEQUENCE_ROW_ID
        )
    ).scalar_one()
    rows = connection.execute(
        sa.select(tables.change_outbox)
        .where(tables.change_outbox.c.seq > after)
        .order_by(tables.change_outbox.c.seq)
        .limit(limit)
    )
    changes = [_change(row) for row in rows]
    # The head is read first; entries committed between the two statements may be newer.
    head_seq = max([int(head), *(change.seq for change in changes)])
    return changes, head_seq


class ChangeNotifier:
    """Wakes long-polling feed readers on the event loop when a change commits in this process.

    `notify` may be called from any thread (writes run in the thread pool). A reader takes the
    current `generation()` event *before* it queries, then waits on it, so a commit that lands
    between its query and its wait still wakes it.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def generation(self) -> asyncio.Event:
        return self._event

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake()
        else:
            loop.call_soon_threadsafe(self._wake)
