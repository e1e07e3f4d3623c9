"""API consumption: the org's rolling 24-hour API request count and the per-call statistics.

`DailyApiUsage` is Salesforce's `DailyApiRequests`: calls in the last 24 hours, counted per
minute so the allowance frees up as old calls age out, and refused with
`REQUEST_LIMIT_EXCEEDED` once used up. `CallLog` counts every call by client (from
`Sforce-Call-Options: client=...`), user, resource, method and status, and every record written
by operation, so a test can prove exactly how many calls and writes a client made. Both live in
SQLite and are written in the request's own transaction, so a restart (even after kill -9)
keeps them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from salesforce_emulator.org import NO_CLIENT
from salesforce_emulator.stamps import MILLIS_PER_MINUTE, now_ms
from salesforce_emulator.store import OrgStore

WINDOW_MINUTES: Final = 24 * 60


class DailyApiUsage:
    """Calls over the trailing 24 hours, kept per minute in memory and in SQLite."""

    def __init__(self, store: OrgStore) -> None:
        self.store = store
        self._minutes: OrderedDict[int, int] = OrderedDict()
        self._total = 0
        oldest = now_ms() // MILLIS_PER_MINUTE - WINDOW_MINUTES + 1
        for row in store.rows(
            "SELECT minute, calls FROM api_usage WHERE minute >= ? ORDER BY minute", (oldest,)
        ):
            self._minutes[row["minute"]] = row["calls"]
            self._total += row["calls"]

    def _trim(self, minute: int) -> None:
        oldest = minute - WINDOW_MINUTES + 1
        while self._minutes:
            first = next(iter(self._minutes))
            if first >= oldest:
                break
            self._total -= self._minutes.pop(first)

    def used(self, now: int | None = None) -> int:
        with self.store.lock:
            self._trim((now_ms() if now is None else now) // MILLIS_PER_MINUTE)
            return self._total

    def count_call(self, now: int | None = None) -> int:
        """Count one call (inside the caller's transaction); returns the usage including it."""
        minute = (now_ms() if now is None else now) // MILLIS_PER_MINUTE
        self._trim(minute)
        self.store.execute(
            "INSERT INTO api_usage (minute, calls) VALUES (?, 1) "
            "ON CONFLICT (minute) DO UPDATE SET calls = calls + 1",
            (minute,),
        )
        self.store.execute("DELETE FROM api_usage WHERE minute < ?", (minute - WINDOW_MINUTES,))
        self._minutes[minute] = self._minutes.get(minute, 0) + 1
        self._total += 1
        return self._total

    def clear(self) -> None:
        with self.store.lock:
            self._minutes.clear()
            self._total = 0


class CallLog:
    """Counts of calls and record writes, for `GET /_emulator/stats`."""

    def __init__(self, store: OrgStore) -> None:
        self.store = store

    def record(self, client: str, username: str, resource: str, method: str, status: str) -> None:
        self.store.execute(
            "INSERT INTO call_counts (client, username, resource, method, status, calls) "
            "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (client, username, resource, method, status) "
            "DO UPDATE SET calls = calls + 1",
            (client or NO_CLIENT, username, resource, method, status),
        )

    def clear(self) -> None:
        with self.store.transaction():
            self.store.execute("DELETE FROM call_counts")
            self.store.execute("DELETE FROM record_writes")

    def snapshot(self) -> dict[str, Any]:
        calls = self.store.rows(
            "SELECT client, username, resource, method, status, calls FROM call_counts"
        )
        writes = self.store.rows("SELECT client, username, operation, records FROM record_writes")
        summary = _summary(calls, writes)
        summary["by_client"] = {
            client: _summary(
                [c for c in calls if c["client"] == client],
                [w for w in writes if w["client"] == client],
            )
            for client in sorted({c["client"] for c in calls} | {w["client"] for w in writes})
        }
        summary["by_user"] = {
            user: _summary(
                [c for c in calls if c["username"] == user],
                [w for w in writes if w["username"] == user],
            )
            for user in sorted({c["username"] for c in calls} | {w["username"] for w in writes})
            if user
        }
        return summary


def _summary(calls: list[dict[str, Any]], writes: list[dict[str, Any]]) -> dict[str, Any]:
    by_resource: dict[str, dict[str, int]] = {}
    by_method: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for row in calls:
        methods = by_resource.setdefault(row["resource"], {})
        methods[row["method"]] = methods.get(row["method"], 0) + row["calls"]
        by_method[row["method"]] = by_method.get(row["method"], 0) + row["calls"]
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["calls"]
    records_written: dict[str, int] = {}
    for row in writes:
        records_written[row["operation"]] = (
            records_written.get(row["operation"], 0) + row["records"]
        )
    return {
        "total": sum(row["calls"] for row in calls),
        "by_resource": dict(sorted(by_resource.items())),
        "by_method": dict(sorted(by_method.items())),
        "by_status": dict(sorted(by_status.items())),
        "records_written": dict(sorted(records_written.items())),
    }
