"""Pure pieces of the service: If-Match parsing, ids, stamps, media types, database URLs."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesconnect.database import DatabaseUrlError, normalise_url
from salesconnect.http_input import is_json_media_type
from salesconnect.ids import new_task_id, new_user_id
from salesconnect.stamps import datetime_to_ms, ms_to_datetime, ms_to_text, text_to_ms
from salesconnect.task_store import VersionPrecondition
from schemas.fields import SALESCONNECT_ID_PATTERN


@pytest.mark.parametrize(
    ("header", "allowed", "refused"),
    [
        ('"3"', {3}, {2, 4}),
        ('W/"3"', {3}, {2}),
        ("3", {3}, {30}),
        ('"1", "3"', {1, 3}, {2}),
        ("*", {1, 99}, set()),
        ("garbage", set(), {0, 1}),
        ('""', set(), {0}),
        ('"-1"', set(), {1}),
        ('"٣"', set(), {3}),  # an Arabic-Indic digit is not a version
    ],
)
def test_if_match_names_versions(header: str, allowed: set[int], refused: set[int]) -> None:
    precondition = VersionPrecondition.parse(header)
    assert all(precondition.allows(v) for v in allowed)
    assert not any(precondition.allows(v) for v in refused)


def test_ids_fit_the_contract_and_sort_by_creation() -> None:
    earlier = new_task_id()
    time.sleep(0.002)  # ids order by millisecond; make sure the clock moved on
    later = new_task_id()
    for made in (earlier, later, new_user_id()):
        assert SALESCONNECT_ID_PATTERN.fullmatch(made), made
    assert earlier.startswith("tsk_") and new_user_id().startswith("usr_")
    assert earlier < later
    assert len({new_task_id() for _ in range(1000)}) == 1000


@given(st.integers(min_value=-(10**13), max_value=253_402_300_799_999))
def test_millisecond_stamps_round_trip_through_text(ms: int) -> None:
    text = ms_to_text(ms)
    assert text is not None and text.endswith("Z")
    assert text_to_ms(text) == ms
    assert datetime_to_ms(ms_to_datetime(ms)) == ms


def test_stamps_read_any_offset_as_the_same_instant() -> None:
    assert text_to_ms("2026-11-22T10:00:00.000+0000") == text_to_ms("2026-11-22T11:00:00+01:00")
    assert ms_to_text(datetime_to_ms(datetime(2026, 11, 22, 10, tzinfo=UTC))) == (
        "2026-11-22T10:00:00.000Z"
    )


@pytest.mark.parametrize(
    ("content_type", "is_json"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/json", False),
        ("application/jsonp", False),
        ("text/plain", False),
        ("", False),
    ],
)
def test_json_media_types(content_type: str, is_json: bool) -> None:
    assert is_json_media_type(content_type) is is_json


def test_database_urls() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:////tmp/x.sqlite3").drivername == "sqlite+pysqlite"
    for bad, words in [
        ("sqlite://", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        ("mysql://u@h/db", "unsupported database"),
        ("not a url", "not a database URL"),
    ]:
        with pytest.raises(DatabaseUrlError, match=words):
            normalise_url(bad)
