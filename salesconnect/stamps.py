"""Instants as the service stores and shows them: integer milliseconds since the epoch, UTC.

Integers compare and sort the same in SQLite and PostgreSQL and cannot lose a time zone; they
become `2026-11-22T10:00:00.000Z` text only at the edge, with the contract's own formatter.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Final

from schemas.fields import format_utc_stamp, parse_utc_stamp

Millis = int
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> Millis:
    return time.time_ns() // 1_000_000


def ms_to_datetime(value: Millis) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


def datetime_to_ms(value: datetime) -> Millis:
    if value.tzinfo is None:
        raise ValueError("a stamp must carry a time zone")
    return (value - _EPOCH) // timedelta(milliseconds=1)


def ms_to_text(value: Millis | None) -> str | None:
    return None if value is None else format_utc_stamp(ms_to_datetime(value))


def text_to_ms(text: str) -> Millis:
    return datetime_to_ms(parse_utc_stamp(text))
