"""The service's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Instants are integer milliseconds since the epoch (see `stamps`); due dates are SQL `DATE`
values, which SQLAlchemy hands over as `datetime.date`, never through a datetime.

`change_outbox.seq` is not an autoincrement: it comes from the single row of
`change_sequence`, updated in the same transaction as the outbox insert. That row lock makes
sequence order equal commit order, which is what lets a feed reader move its cursor past a
sequence number without ever skipping a change that commits later.

Credentials are never stored as given: API tokens and session cookies as their SHA-256 digest
(they are 256-bit random values, so a fast digest is enough), passwords as argon2id hashes.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from schemas.task_change import NAME_MAX_LENGTH

ID_LENGTH: Final = 64
SALESFORCE_ID_LENGTH: Final = 18

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("salesforce_user_id", sa.String(SALESFORCE_ID_LENGTH), nullable=True, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

user_settings = sa.Table(
    "user_settings",
    metadata,
    sa.Column("user_id", sa.String(ID_LENGTH), sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("task_sync", sa.String(8), nullable=False),
    sa.Column("activity_subject_template", sa.Text, nullable=False),
    sa.Column("first_enabled_at", sa.BigInteger, nullable=True),
    sa.Column("last_enabled_at", sa.BigInteger, nullable=True),
    sa.Column("first_sync_state", sa.String(16), nullable=False),
    sa.Column("first_sync_error", sa.Text, nullable=True),
    sa.Column("first_sync_started_at", sa.BigInteger, nullable=True),
    sa.Column("first_sync_finished_at", sa.BigInteger, nullable=True),
    sa.Column("last_sync_error", sa.Text, nullable=True),
    sa.Column("last_sync_error_at", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("user_id", sa.String(ID_LENGTH), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(NAME_MAX_LENGTH), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("due_date", sa.Date, nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("salesforce_task_id", sa.String(SALESFORCE_ID_LENGTH), nullable=True, unique=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.Index("ix_tasks_user_due", "user_id", "due_date"),
)

change_sequence = sa.Table(
    "change_sequence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

change_outbox = sa.Table(
    "change_outbox",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("task_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("op", sa.String(32), nullable=False),
    sa.Column("changed", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("occurred_at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(ID_LENGTH), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("task_sync", sa.String(8), nullable=False),
    sa.Column("salesforce_task_id", sa.String(SALESFORCE_ID_LENGTH), nullable=True),
    sa.Column("task_created_at", sa.BigInteger, nullable=True),
    sa.Column("first_enabled_at", sa.BigInteger, nullable=True),
    sa.Column("last_enabled_at", sa.BigInteger, nullable=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("user_id", sa.String(ID_LENGTH), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Index("ix_api_tokens_user", "user_id"),
)

user_passwords = sa.Table(
    "user_passwords",
    metadata,
    sa.Column("user_id", sa.String(ID_LENGTH), sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_digest", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(ID_LENGTH), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_sessions_user", "user_id"),
    sa.Index("ix_sessions_expires_at", "expires_at"),
)
