"""Instants and dates the way Salesforce writes and reads them.

Instants are kept as integer milliseconds since the epoch (UTC) everywhere inside the emulator,
written `2026-11-22T10:15:30.000+0000` in JSON and `Sun, 22 Nov 2026 10:15:30 GMT` in HTTP
headers. Dates are `YYYY-MM-DD` strings, never converted through an instant.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Final

MILLIS_PER_MINUTE: Final = 60_000
MILLIS_PER_DAY: Final = 86_400_000

_INSTANT: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def from_datetime(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("an instant needs a time zone")
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // timedelta(milliseconds=1)


def format_instant(ms: int) -> str:
    """`2026-11-22T10:15:30.000+0000`, Salesforce's JSON dateTime form."""
    moment = to_datetime(ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def format_http_date(ms: int) -> str:
    return format_datetime(to_datetime(ms - ms % 1000), usegmt=True)


def parse_http_date(text: str) -> int:
    """An RFC 1123 date (`If-Unmodified-Since`) in milliseconds; ValueError when it is not one."""
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"not an HTTP date: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return from_datetime(parsed)


def parse_instant(text: str, *, offset_required: bool = False) -> int:
    """An ISO 8601 instant as Salesforce accepts it (`Z`, `+0000` or `+00:00`; no offset = UTC)."""
    match = _INSTANT.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 dateTime: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset is None and offset_required:
        raise ValueError(f"dateTime without a time zone offset: {text!r}")
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        raise ValueError(f"not a dateTime that exists: {text!r}") from None
    ms = from_datetime(moment) + (int((fraction or "0")[:3].ljust(3, "0")))
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        ms -= sign * (int(digits[:2]) * 60 + int(digits[2:])) * MILLIS_PER_MINUTE
    return ms


def parse_date(text: str) -> str:
    """A calendar date `YYYY-MM-DD`, returned unchanged; ValueError when it is not one."""
    if not _DATE.match(text):
        raise ValueError(f"not a date written YYYY-MM-DD: {text!r}")
    date.fromisoformat(text)
    return text


def floor_minute(ms: int) -> int:
    return ms - ms % MILLIS_PER_MINUTE


def floor_day(ms: int) -> int:
    return ms - ms % MILLIS_PER_DAY


def today(ms: int) -> date:
    return to_datetime(ms).date()
