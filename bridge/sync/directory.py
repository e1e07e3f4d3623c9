"""Who is synced: the Sales Connect users with sync on, and the Salesforce user each is
connected to, read from `GET /api/users?task_sync=on` and kept for a short while; and their
settings (the subject template), kept likewise.

Producers need the other system's user id for every message they publish, the Salesforce side
needs to know whose Tasks are in scope, and appliers check that the owner still syncs before
writing. Reading the list costs one request; a user the directory does not know yet (just
connected, just turned sync on) triggers a refresh, at most one every `min_refresh_gap`
seconds; a change whose owner the list misses triggers one whenever the list was read before the
change was made (give its stamp as `as_of`), so no change of a user who turned sync on a moment
earlier is skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from bridge.salesconnect.client import SalesConnectClient, SyncUser, UserSettings
from schemas.fields import format_utc_stamp

DEFAULT_MAX_AGE_SECONDS: Final = 30.0
DEFAULT_MIN_REFRESH_GAP_SECONDS: Final = 1.0
SALESFORCE_ID_KEY_LENGTH: Final = 15
# How far apart the clocks of Sales Connect, Salesforce and the bridge may be: a list read less
# than this after a change's stamp may predate the change.
CLOCK_SKEW: Final = timedelta(seconds=2)


def salesforce_id_key(salesforce_id: str) -> str:
    """The case-sensitive 15-character form: Salesforce accepts both lengths for one record."""
    return salesforce_id[:SALESFORCE_ID_KEY_LENGTH]


class SyncUserDirectory:
    """The users with sync on, by Sales Connect id and by connected Salesforce user id."""

    def __init__(
        self,
        client: SalesConnectClient,
        *,
        max_age: float = DEFAULT_MAX_AGE_SECONDS,
        min_refresh_gap: float = DEFAULT_MIN_REFRESH_GAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.max_age = max_age
        self.min_refresh_gap = min_refresh_gap
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._read_started: datetime | None = None
        self._by_salesconnect: dict[str, SyncUser] = {}
        self._by_salesforce: dict[str, SyncUser] = {}
        self._loaded_at: float | None = None
        self._settings: dict[str, tuple[float, UserSettings]] = {}

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    def refresh(self) -> list[SyncUser]:
        """Read the list now (raises what the client raises when Sales Connect fails)."""
        started = self._wall_clock()
        users = self.client.users_with_sync_on()
        by_salesconnect = {user.id: user for user in users}
        by_salesforce = {
            salesforce_id_key(user.salesforce_user_id): user
            for user in users
            if user.salesforce_user_id
        }
        with self._lock:
            self._by_salesconnect = by_salesconnect
            self._by_salesforce = by_salesforce
            self._loaded_at = self._clock()
            self._read_started = started
            self._settings.clear()
        return users

    def ensure_fresh(self) -> None:
        """Refresh when the list is older than `max_age` (or was never read)."""
        if self._age() is None or (self._age() or 0.0) >= self.max_age:
            self.refresh()

    def _age(self) -> float | None:
        with self._lock:
            return None if self._loaded_at is None else self._clock() - self._loaded_at

    def _refresh_on_miss(self, as_of: datetime | None = None) -> bool:
        """Read the list again after a miss: when it was read before `as_of` (the miss may be
        a user who turned sync on since), else at most once every `min_refresh_gap` seconds.
        Threads that miss together share one read."""
        with self._refresh_lock:
            if as_of is not None:
                with self._lock:
                    read_started = self._read_started
                if read_started is not None and read_started > as_of + CLOCK_SKEW:
                    return False
            else:
                age = self._age()
                if age is not None and age < self.min_refresh_gap:
                    return False
            self.refresh()
            return True

    def connected(self) -> list[SyncUser]:
        """Users with sync on and a Salesforce user, in a stable order."""
        with self._lock:
            return sorted(self._by_salesforce.values(), key=lambda user: user.id)

    def by_salesconnect_id(self, user_id: str, *, refresh_on_miss: bool = True) -> SyncUser | None:
        """The user if their sync is on and they are connected to a Salesforce user."""
        with self._lock:
            user = self._by_salesconnect.get(user_id)
        missing = user is None or not user.salesforce_user_id
        if missing and refresh_on_miss and self._refresh_on_miss():
            with self._lock:
                user = self._by_salesconnect.get(user_id)
        return user if user is not None and user.salesforce_user_id else None

    def by_salesforce_id(
        self, salesforce_user_id: str, *, refresh_on_miss: bool = False
    ) -> SyncUser | None:
        key = salesforce_id_key(salesforce_user_id)
        with self._lock:
            user = self._by_salesforce.get(key)
        if user is None and refresh_on_miss and self._refresh_on_miss():
            with self._lock:
                user = self._by_salesforce.get(key)
        return user

    def synced_user(
        self,
        salesconnect_user_id: str | None,
        salesforce_user_id: str | None,
        *,
        as_of: datetime | None = None,
    ) -> SyncUser | None:
        """The owner of a change if they sync now (sync on, connected to that Salesforce user),
        by whichever id the change carries; None means nothing of theirs syncs. `as_of` is the
        change's stamp: a miss on a list read before it reads the list again."""
        self.ensure_fresh()
        user = self._lookup(salesconnect_user_id, salesforce_user_id)
        if user is None and as_of is not None and self._refresh_on_miss(as_of):
            user = self._lookup(salesconnect_user_id, salesforce_user_id)
        if user is None or user.salesforce_user_id is None:
            return None
        if salesforce_user_id and salesforce_id_key(user.salesforce_user_id) != salesforce_id_key(
            salesforce_user_id
        ):
            return None
        return user

    def _lookup(
        self, salesconnect_user_id: str | None, salesforce_user_id: str | None
    ) -> SyncUser | None:
        with self._lock:
            user = self._by_salesconnect.get(salesconnect_user_id) if salesconnect_user_id else None
            if (user is None or not user.salesforce_user_id) and salesforce_user_id:
                user = self._by_salesforce.get(salesforce_id_key(salesforce_user_id))
        return user if user is not None and user.salesforce_user_id else None

    def settings(self, user_id: str) -> UserSettings:
        """A user's settings, read again once they are older than `max_age`."""
        now = self._clock()
        with self._lock:
            cached = self._settings.get(user_id)
        if cached is not None and now - cached[0] < self.max_age:
            return cached[1]
        settings = self.client.settings(user_id)
        with self._lock:
            self._settings[user_id] = (now, settings)
        return settings

    def report_sync_error(self, user_id: str, message: str) -> None:
        """Show an error that needs the user on their Settings page."""
        self.client.report_sync_state(
            user_id,
            last_sync_error={
                "message": message[:1000],
                "occurred_at": format_utc_stamp(datetime.now(UTC)),
            },
        )
