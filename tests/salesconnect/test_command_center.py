"""The Command Center: due today and tomorrow on the user's own calendar, open first."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from salesconnect.command_center import user_today
from salesconnect.stamps import datetime_to_ms
from tests.support.salesconnect import SalesConnectClient, running_salesconnect

# UTC+14 and UTC-10: at any instant these two users are on different calendar dates.
FAR_ZONES = ("Pacific/Kiritimati", "Pacific/Honolulu")


def today_in(zone: str) -> date:
    return datetime.now(ZoneInfo(zone)).date()


def names(view: dict[str, object]) -> list[str]:
    tasks = view["tasks"]
    assert isinstance(tasks, list)
    return [task["name"] for task in tasks]


@pytest.mark.parametrize("zone", FAR_ZONES)
def test_only_today_and_tomorrow_in_the_users_zone_are_shown(
    salesconnect: SalesConnectClient, zone: str
) -> None:
    user = salesconnect.create_user(time_zone=zone)
    view = salesconnect.command_center(user["id"])
    today = date.fromisoformat(view["today"])
    assert today in {today_in(zone), today_in(zone) - timedelta(days=1)}  # midnight may pass
    assert view["tomorrow"] == (today + timedelta(days=1)).isoformat()
    assert view["time_zone"] == zone
    for offset, name in [(-1, "yesterday"), (0, "today"), (1, "tomorrow"), (2, "later")]:
        salesconnect.create_task(user["id"], name, today + timedelta(days=offset))
    salesconnect.create_task(user["id"], "undated", None)
    gone = salesconnect.create_task(user["id"], "deleted today", today)
    salesconnect.delete_task(gone["id"])
    shown = salesconnect.command_center(user["id"])
    if shown["today"] == view["today"]:
        assert names(shown) == ["today", "tomorrow"]


def test_open_tasks_come_first_then_by_due_date_and_priority(
    salesconnect: SalesConnectClient,
) -> None:
    user = salesconnect.create_user(time_zone="UTC")
    today = date.fromisoformat(salesconnect.command_center(user["id"])["today"])
    tomorrow = today + timedelta(days=1)
    done = salesconnect.create_task(user["id"], "done today", today)
    salesconnect.update_task(done["id"], status="completed")
    salesconnect.create_task(user["id"], "tomorrow normal", tomorrow)
    salesconnect.create_task(user["id"], "today normal", today)
    salesconnect.create_task(user["id"], "tomorrow high", tomorrow, priority="high")
    salesconnect.create_task(user["id"], "today high", today, priority="high")
    view = salesconnect.command_center(user["id"])
    if view["today"] == today.isoformat():
        assert names(view) == [
            "today high",
            "today normal",
            "tomorrow high",
            "tomorrow normal",
            "done today",
        ]


@pytest.mark.parametrize(
    ("zone", "instant", "expected"),
    [
        ("Pacific/Kiritimati", datetime(2026, 11, 22, 10, 30, tzinfo=UTC), date(2026, 11, 23)),
        ("Pacific/Honolulu", datetime(2026, 11, 22, 9, 59, tzinfo=UTC), date(2026, 11, 21)),
        ("Europe/Berlin", datetime(2026, 3, 29, 0, 59, tzinfo=UTC), date(2026, 3, 29)),
        ("America/New_York", datetime(2026, 11, 1, 4, 30, tzinfo=UTC), date(2026, 11, 1)),
        ("UTC", datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), date(2026, 12, 31)),
    ],
)
def test_today_is_the_users_wall_clock_date(zone: str, instant: datetime, expected: date) -> None:
    assert user_today(zone, datetime_to_ms(instant)) == expected


def test_the_servers_own_time_zone_does_not_move_the_users_day(tmp_path: Path) -> None:
    """A server running in UTC-10 still shows a UTC+14 user their own today."""
    with running_salesconnect(
        f"sqlite:///{tmp_path / 'tz.sqlite3'}", tmp_path, env={"TZ": "Pacific/Honolulu"}
    ) as service:
        client = service.client()
        user = client.create_user(time_zone="Pacific/Kiritimati")
        expected = today_in("Pacific/Kiritimati")
        view = client.command_center(user["id"])
        assert view["today"] in {expected.isoformat(), (expected + timedelta(days=1)).isoformat()}
