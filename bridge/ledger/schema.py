"""The ledger's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are integer milliseconds since the epoch (UTC): exact, comparable in SQL on both
databases, and free of driver time-zone handling. Message ids used for ordering are 32-digit
lowercase hex compared byte-wise (`COLLATE "C"` on PostgreSQL), as Python compares them.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata: Final = MetaData()

_HEX_ID: Final = String(32).with_variant(String(32, collation="C"), "postgresql")

processed_messages: Final = Table(
    "processed_messages",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("task_key", String(128), nullable=False),
    Column("consumer", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("processed_at", BigInteger, nullable=False),
    Index("ix_processed_messages_processed_at", "processed_at"),
)

task_leases: Final = Table(
    "task_leases",
    metadata,
    Column("task_key", String(128), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

task_links: Final = Table(
    "task_links",
    metadata,
    Column("salesconnect_task_id", String(64), primary_key=True),
    Column("salesforce_task_id", String(18), nullable=False, unique=True),
    Column("salesconnect_user_id", String(64)),
    Column("salesforce_user_id", String(18)),
    Column("linked_at", BigInteger, nullable=False),
)

field_stamps: Final = Table(
    "field_stamps",
    metadata,
    Column("record_key", String(160), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("stamp_ms", BigInteger, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("origin_rank", SmallInteger, nullable=False),
    Column("message_id", _HEX_ID, nullable=False),
    Column("applied_at", BigInteger, nullable=False),
)

echo_fingerprints: Final = Table(
    "echo_fingerprints",
    metadata,
    Column("system", String(16), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("value_hash", String(64), nullable=False),
    Column("written_at", BigInteger, nullable=False),
)

record_versions: Final = Table(
    "record_versions",
    metadata,
    Column("system", String(16), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("modified_ms", BigInteger, nullable=False),
    Column("seen_at", BigInteger, nullable=False),
)

producer_cursors: Final = Table(
    "producer_cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
    Column("position_at", BigInteger),
    Column("updated_at", BigInteger, nullable=False),
)

dropped_messages: Final = Table(
    "dropped_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("dropped_by", String(128), nullable=False),
    Column("dropped_at", BigInteger, nullable=False),
    Column("exchange", String(255), nullable=False),
    Column("routing_key", String(255), nullable=False),
    Column("headers_json", Text, nullable=False),
    Column("body", Text, nullable=False),
)

TABLES: Final = (
    processed_messages,
    task_leases,
    task_links,
    field_stamps,
    echo_fingerprints,
    record_versions,
    producer_cursors,
    dropped_messages,
)
