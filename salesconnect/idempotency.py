"""`Idempotency-Key`: a retried write returns the first result instead of writing again.

The key is claimed as the first statement of the write's own transaction and the response is
stored in that transaction, so the stored response exists exactly when the write committed.
A concurrent twin blocks on the claim until the first commits (PostgreSQL) or waits for the
write lock (SQLite), then finds the stored response and replays it. The claim comes before the
change-feed sequence row is taken, so waiting on it never holds the sequence lock.

A key names one request: the same key with a different request (method, path, body, origin
or If-Match, compared by a fingerprint) is refused with 422 rather than replaying an answer
to a different question. Errors are not stored (their transaction rolled back), so a retry
after one runs again. Keys are kept for `RETENTION_MS`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesconnect import tables
from salesconnect.stamps import now_ms

RETENTION_MS: Final = 24 * 60 * 60 * 1000
_CLAIMED: Final = 0


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    headers: dict[str, str]
    body: str


def request_fingerprint(
    *, method: str, path: str, body: Any, origin: str, if_match: str | None
) -> str:
    canonical = json.dumps(
        {"method": method, "path": path, "body": body, "origin": origin, "if_match": if_match},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def find(connection: Connection, key: str) -> tuple[str, StoredResponse] | None:
    row = connection.execute(
        sa.select(tables.idempotency_keys).where(tables.idempotency_keys.c.key == key)
    ).first()
    if row is None or row.status_code == _CLAIMED:
        return None
    return row.fingerprint, StoredResponse(row.status_code, json.loads(row.headers), row.body)


def claim(connection: Connection, key: str, fingerprint: str) -> None:
    """Insert the key; raises `IntegrityError` when a concurrent twin holds it."""
    connection.execute(
        sa.insert(tables.idempotency_keys).values(
            key=key,
            fingerprint=fingerprint,
            status_code=_CLAIMED,
            headers="{}",
            body="",
            created_at=now_ms(),
        )
    )


def store(connection: Connection, key: str, response: StoredResponse) -> None:
    connection.execute(
        sa.update(tables.idempotency_keys)
        .where(tables.idempotency_keys.c.key == key)
        .values(
            status_code=response.status_code,
            headers=json.dumps(response.headers),
            body=response.body,
        )
    )


def forget_expired(connection: Connection, *, now: int | None = None) -> int:
    cutoff = (now_ms() if now is None else now) - RETENTION_MS
    result = connection.execute(
        sa.delete(tables.idempotency_keys).where(tables.idempotency_keys.c.created_at < cutoff)
    )
    return int(result.rowcount)
