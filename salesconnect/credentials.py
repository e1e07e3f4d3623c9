"""Users' credentials: API tokens, passwords (argon2id) and page sessions, in the database.

* API tokens: the row holds the token's SHA-256 digest, never the token; revoking stamps
  `revoked_at` (the row stays, so the list shows what was revoked when).
* Passwords: argon2id through argon2-cffi with OWASP's recommended parameters (19 MiB, two
  passes, one lane: about 40 ms here); a hash made with other parameters is replaced at the
  next successful sign-in. Hashing is slow and takes memory on purpose, so at most
  `HASHING_SLOTS` run at once and never inside a write transaction. Setting a password ends
  the user's page sessions.
* Sessions: the cookie's value is 256 random bits; the row holds its digest, the session's
  CSRF token, and when it expires.
"""

from __future__ import annotations

import functools
import secrets
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from salesconnect import tables, user_store
from salesconnect.auth import TOKEN_ID_PREFIX, new_user_token, token_digest
from salesconnect.database import WriteTransaction
from salesconnect.errors import NotFoundError
from salesconnect.ids import new_id
from salesconnect.stamps import Millis, now_ms

SESSION_LIFETIME_MS: Final = 12 * 60 * 60 * 1000
HASHING_SLOTS: Final = 2

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
_hasher: Final = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_hashing: Final = threading.BoundedSemaphore(HASHING_SLOTS)


@functools.cache
def _dummy_hash() -> str:
    """Checked when the email is unknown, so a wrong email costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class ApiToken:
    id: str
    user_id: str
    name: str
    created_at: Millis
    revoked_at: Millis | None


@dataclass(frozen=True)
class Session:
    user_id: str
    csrf_token: str
    expires_at: Millis


def _token(row: sa.Row[Any]) -> ApiToken:
    return ApiToken(row.id, row.user_id, row.name, row.created_at, row.revoked_at)


# -- API tokens ------------------------------------------------------------------------------


def create_token(transaction: WriteTransaction, user_id: str, name: str) -> tuple[ApiToken, str]:
    """A new token for the user: the record, and the token itself (shown once, never stored)."""
    connection = transaction.connection
    user_store.get_user(connection, user_id)
    token_id = new_id(TOKEN_ID_PREFIX)
    token = new_user_token(token_id)
    connection.execute(
        sa.insert(tables.api_tokens).values(
            id=token_id,
            user_id=user_id,
            name=name,
            token_digest=token_digest(token),
            created_at=now_ms(),
            revoked_at=None,
        )
    )
    return _token(_token_row(connection, token_id)), token


def _token_row(connection: Connection, token_id: str) -> sa.Row[Any]:
    row = connection.execute(
        sa.select(tables.api_tokens).where(tables.api_tokens.c.id == token_id)
    ).first()
    assert row is not None
    return row


def find_token(connection: Connection, token_id: str) -> sa.Row[Any] | None:
    return connection.execute(
        sa.select(tables.api_tokens).where(tables.api_tokens.c.id == token_id)
    ).first()


def list_tokens(connection: Connection, user_id: str) -> list[ApiToken]:
    user_store.get_user(connection, user_id)
    rows = connection.execute(
        sa.select(tables.api_tokens)
        .where(tables.api_tokens.c.user_id == user_id)
        .order_by(tables.api_tokens.c.created_at, tables.api_tokens.c.id)
    )
    return [_token(row) for row in rows]


def revoke_token(transaction: WriteTransaction, user_id: str, token_id: str) -> ApiToken:
    """Revoke at once (revoking a revoked token changes nothing)."""
    connection = transaction.connection
    user_store.get_user(connection, user_id)
    row = find_token(connection, token_id)
    if row is None or row.user_id != user_id:
        raise NotFoundError("token_not_found", f"No API token {token_id!r} for this user.")
    if row.revoked_at is None:
        connection.execute(
            sa.update(tables.api_tokens)
            .where(tables.api_tokens.c.id == token_id)
            .values(revoked_at=now_ms())
        )
    return _token(_token_row(connection, token_id))


# -- passwords -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    with _hashing:
        return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    with _hashing:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def set_password(transaction: WriteTransaction, user_id: str, password_hash: str) -> None:
    """Store the hash (made before the transaction) and end the user's page sessions."""
    connection = transaction.connection
    user_store.get_user(connection, user_id)
    passwords = tables.user_passwords
    stamp = now_ms()
    updated = connection.execute(
        sa.update(passwords)
        .where(passwords.c.user_id == user_id)
        .values(password_hash=password_hash, updated_at=stamp)
    )
    if updated.rowcount == 0:
        connection.execute(
            sa.insert(passwords).values(
                user_id=user_id, password_hash=password_hash, updated_at=stamp
            )
        )
    connection.execute(sa.delete(tables.sessions).where(tables.sessions.c.user_id == user_id))


def replace_password_hash(transaction: WriteTransaction, user_id: str, password_hash: str) -> None:
    """The same password hashed with today's parameters (sessions stay)."""
    transaction.connection.execute(
        sa.update(tables.user_passwords)
        .where(tables.user_passwords.c.user_id == user_id)
        .values(password_hash=password_hash)
    )


def check_password(
    read: Callable[[], AbstractContextManager[Connection]], email: str, password: str
) -> str | None:
    """The id of the user with this email and password, or None (taking as long either way).
    `read` is `Database.read`; the hash is checked outside the transaction."""
    users, passwords = tables.users, tables.user_passwords
    with read() as connection:
        row = connection.execute(
            sa.select(users.c.id, passwords.c.password_hash)
            .join(passwords, passwords.c.user_id == users.c.id)
            .where(sa.func.lower(users.c.email) == email.strip().lower())
        ).first()
    if row is None:
        _verify(_dummy_hash(), password)
        return None
    return str(row.id) if _verify(row.password_hash, password) else None


def needs_rehash(connection: Connection, user_id: str) -> bool:
    row = connection.execute(
        sa.select(tables.user_passwords.c.password_hash).where(
            tables.user_passwords.c.user_id == user_id
        )
    ).first()
    return row is not None and _hasher.check_needs_rehash(row.password_hash)


# -- page sessions ---------------------------------------------------------------------------


def create_session(transaction: WriteTransaction, user_id: str) -> tuple[str, Session]:
    """A new session: the cookie value (never stored) and the session."""
    cookie = secrets.token_urlsafe(32)
    now = now_ms()
    session = Session(user_id, secrets.token_urlsafe(32), now + SESSION_LIFETIME_MS)
    transaction.connection.execute(
        sa.insert(tables.sessions).values(
            id_digest=token_digest(cookie),
            user_id=user_id,
            csrf_token=session.csrf_token,
            created_at=now,
            expires_at=session.expires_at,
        )
    )
    return cookie, session


def find_session(connection: Connection, cookie: str) -> Session | None:
    row = connection.execute(
        sa.select(tables.sessions).where(tables.sessions.c.id_digest == token_digest(cookie))
    ).first()
    if row is None or row.expires_at <= now_ms():
        return None
    return Session(row.user_id, row.csrf_token, row.expires_at)


def end_session(transaction: WriteTransaction, cookie: str) -> None:
    transaction.connection.execute(
        sa.delete(tables.sessions).where(tables.sessions.c.id_digest == token_digest(cookie))
    )


def forget_expired_sessions(connection: Connection) -> int:
    result = connection.execute(
        sa.delete(tables.sessions).where(tables.sessions.c.expires_at <= now_ms())
    )
    return int(result.rowcount)
