"""Liveness and readiness: named checks a process registers, evaluated when probed.

* liveness (`/healthz`): the process runs and its connections are open, or were open within a
  grace period while it reconnects by itself. Failing it means "restart me": a broker or
  database outage alone should not make every process restart at once, hence the grace.
* readiness (`/readyz`): the process does its job now: a worker consumes, a producer completed
  a cycle recently, the ingress serves, and Salesforce answers for those that need it.

A check is a function returning `CheckResult(ok, detail)`; one that raises counts as failing
with the exception as its detail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

DEFAULT_CONNECTION_GRACE: Final = 300.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""


Check = Callable[[], CheckResult]


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    checks: dict[str, CheckResult]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "failing",
            "checks": {
                name: {"ok": result.ok, "detail": result.detail}
                for name, result in self.checks.items()
            },
        }


class HealthChecks:
    """The liveness and readiness checks of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._liveness: dict[str, Check] = {}
        self._readiness: dict[str, Check] = {}

    def add_liveness(self, name: str, check: Check) -> None:
        with self._lock:
            self._liveness[name] = check

    def add_readiness(self, name: str, check: Check) -> None:
        with self._lock:
            self._readiness[name] = check

    def liveness(self) -> HealthReport:
        with self._lock:
            checks = dict(self._liveness)
        return _evaluate(checks)

    def readiness(self) -> HealthReport:
        with self._lock:
            checks = dict(self._readiness)
        report = _evaluate(checks)
        if not checks:
            return HealthReport(False, {"started": CheckResult(False, "still starting")})
        return report


def _evaluate(checks: dict[str, Check]) -> HealthReport:
    results: dict[str, CheckResult] = {}
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:
            results[name] = CheckResult(False, f"{type(exc).__name__}: {exc}")
    return HealthReport(all(result.ok for result in results.values()), results)


def flag_check(flag: threading.Event, when_set: str, when_clear: str) -> Check:
    def check() -> CheckResult:
        return CheckResult(True, when_set) if flag.is_set() else CheckResult(False, when_clear)

    return check


class ConnectionWatch:
    """Liveness of a connection the process re-establishes by itself: healthy while open, and
    for `grace` seconds after it was last seen open (or after the watch began)."""

    def __init__(
        self,
        is_open: Callable[[], bool],
        what: str,
        *,
        grace: float = DEFAULT_CONNECTION_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._is_open = is_open
        self.what = what
        self.grace = grace
        self._clock = clock
        self._last_open = clock()

    def check(self) -> CheckResult:
        now = self._clock()
        if self._is_open():
            self._last_open = now
            return CheckResult(True, f"{self.what} open")
        down = now - self._last_open
        if down < self.grace:
            return CheckResult(True, f"{self.what} reconnecting ({down:.0f} s)")
        return CheckResult(False, f"{self.what} not open for {down:.0f} s")


def recent_check(
    last: Callable[[], float | None],
    *,
    max_age: float,
    what: str,
    since: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Check:
    """OK while `last()` (a monotonic time) is within `max_age`; with `since` (when the
    process began), also OK during the first `max_age` seconds before anything happened."""

    def check() -> CheckResult:
        now = clock()
        at = last()
        if at is None:
            if since is not None and now - since < max_age:
                return CheckResult(True, f"starting; no {what} yet")
            return CheckResult(False, f"no {what} yet")
        age = now - at
        if age <= max_age:
            return CheckResult(True, f"last {what} {age:.0f} s ago")
        return CheckResult(False, f"last {what} {age:.0f} s ago (more than {max_age:.0f} s)")

    return check
