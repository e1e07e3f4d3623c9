"""Field types shared by every message contract: calendar dates, UTC millisecond stamps, ids.

Dates and stamps are strict on purpose. `date.fromisoformat` also accepts `20261122` and
`2026-W47-7`, and a stamp without an offset means a different instant in every process time
zone; either would let two systems disagree about the same task.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Final, cast

from marshmallow import ValidationError, fields, validate
from marshmallow.types import ErrorMessages

CALENDAR_DATE_PATTERN: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UTC_STAMP_PATTERN: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})$"
)
SALESFORCE_ID_PATTERN: Final = re.compile(r"^[a-zA-Z0-9]{18}$")
SALESCONNECT_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

JsonScalar = str | int | float | bool | None


def format_calendar_date(value: date) -> str:
    return value.isoformat()


def parse_calendar_date(text: str) -> date:
    """`YYYY-MM-DD` to a date, never through a datetime, so no time zone can shift it."""
    if not CALENDAR_DATE_PATTERN.fullmatch(text):
        raise ValueError("must be a calendar date written YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("must be a calendar date that exists (YYYY-MM-DD)") from None


def format_utc_stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc_stamp(text: str) -> datetime:
    """An ISO 8601 instant with an explicit offset, to an aware UTC datetime.

    Salesforce writes `2026-11-22T10:00:00.000+0000`; we write `...000Z`. Both are accepted.
    """
    if not UTC_STAMP_PATTERN.fullmatch(text):
        raise ValueError(
            "must be an ISO 8601 instant with an offset and at most millisecond precision, "
            "e.g. 2026-11-22T10:00:00.000Z"
        )
    normalised = text[:-1] + "+00:00" if text.endswith("Z") else text
    if re.search(r"[+-]\d{4}$", normalised):
        normalised = normalised[:-2] + ":" + normalised[-2:]
    try:
        parsed = datetime.fromisoformat(normalised)
    except ValueError:
        raise ValueError("must be an instant that exists") from None
    return parsed.astimezone(UTC)


def utc_millis(value: datetime) -> datetime:
    """Truncate an aware datetime to the millisecond precision every stamp carries."""
    if value.tzinfo is None:
        raise ValueError("a stamp must carry a time zone")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


class CalendarDate(fields.Field[date]):
    """A due date: `YYYY-MM-DD` on the wire, `datetime.date` in records."""

    default_error_messages: ErrorMessages = {
        "invalid": "Must be a calendar date written YYYY-MM-DD that exists.",
    }

    def _serialize(self, value: date | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return format_calendar_date(value)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> date:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_calendar_date(value)
        except ValueError:
            raise self.make_error("invalid") from None


class UtcStamp(fields.Field[datetime]):
    """An instant in UTC with millisecond precision, e.g. Salesforce's `SystemModstamp`."""

    default_error_messages: ErrorMessages = {
        "invalid": (
            "Must be an ISO 8601 instant with an offset and at most millisecond precision, "
            "e.g. 2026-11-22T10:00:00.000Z."
        ),
        "naive": "Must carry a time zone.",
    }

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise self.make_error("naive")
        return format_utc_stamp(value)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_utc_stamp(value)
        except ValueError:
            raise self.make_error("invalid") from None


class FullMatch(validate.Regexp):
    """A pattern the whole value must match: `$` alone would let a trailing newline through."""

    def __call__(self, value: str) -> str:  # type: ignore[override]
        pattern = cast("re.Pattern[str]", self.regex)
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def salesforce_id(description: str = "18-character Salesforce id", **kwargs: Any) -> fields.String:
    return fields.String(
        validate=FullMatch(SALESFORCE_ID_PATTERN, error="Must be an 18-character Salesforce id."),
        metadata={"description": description},
        **kwargs,
    )


def salesconnect_id(description: str = "Sales Connect id", **kwargs: Any) -> fields.String:
    return fields.String(
        validate=FullMatch(
            SALESCONNECT_ID_PATTERN,
            error="Must be a Sales Connect id: 1-64 letters, digits, '_' or '-'.",
        ),
        metadata={"description": description},
        **kwargs,
    )


class JsonScalarValue(fields.Field[JsonScalar]):
    """A raw source value kept for audit: string, number, boolean or null, never a structure."""

    default_error_messages: ErrorMessages = {
        "invalid": "Must be a string, number, boolean or null.",
    }

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> JsonScalar:
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise self.make_error("invalid")
