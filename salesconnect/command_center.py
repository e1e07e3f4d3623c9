"""What the Command Center shows: a user's live tasks due today and tomorrow, in their zone.

"Today" is the calendar date on the user's wall clock, not the server's: a user in
Pacific/Kiritimati (UTC+14) is already on tomorrow's date while UTC is still on today's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from salesconnect.model import Task, User
from salesconnect.stamps import Millis, ms_to_datetime, now_ms
from salesconnect.task_store import tasks_due_between
from salesconnect.user_store import get_user


@dataclass(frozen=True)
class CommandCenter:
    user: User
    today: date
    tomorrow: date
    tasks: list[Task]


def user_today(time_zone: str, at: Millis | None = None) -> date:
    instant: datetime = ms_to_datetime(now_ms() if at is None else at)
    return instant.astimezone(ZoneInfo(time_zone)).date()


def command_center(connection: Connection, user_id: str, at: Millis | None = None) -> CommandCenter:
    user = get_user(connection, user_id)
    today = user_today(user.time_zone, at)
    tomorrow = today + timedelta(days=1)
    return CommandCenter(
        user=user,
        today=today,
        tomorrow=tomorrow,
        tasks=tasks_due_between(connection, user_id, today, tomorrow),
    )
