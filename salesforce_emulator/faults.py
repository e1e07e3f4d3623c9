"""The ways the emulated org fails on purpose, set by flags and changeable at run time.

Every API call draws the same five random numbers from one generator seeded with `--seed`, in
arrival order, whatever faults are switched on; so a single client sees the same faults on the
same calls in every run, and switching one fault on does not reshuffle the others. The plugin
stand-in draws from its own generator for dropping notifications.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

from salesforce_emulator.errors import AdminError

DEFAULT_DAILY_API_LIMIT: Final = 100_000
DEFAULT_SESSION_LIFETIME_SECONDS: Final = 7_200
_SHARES: Final = (
    "server_unavailable_share",
    "unable_to_lock_row_share",
    "request_limit_share",
    "drop_connection_share",
    "drop_response_share",
    "notification_drop_share",
)


@dataclass(frozen=True)
class FaultSettings:
    """What `PUT /_emulator/faults` sets; shares are probabilities per call (0 to 1)."""

    latency_ms: int = 0
    server_unavailable_share: float = 0.0
    unable_to_lock_row_share: float = 0.0
    request_limit_share: float = 0.0
    drop_connection_share: float = 0.0
    drop_response_share: float = 0.0
    notification_drop_share: float = 0.0
    daily_api_limit: int = DEFAULT_DAILY_API_LIMIT
    session_lifetime_seconds: int = DEFAULT_SESSION_LIFETIME_SECONDS
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CallFaults:
    """The faults one API call meets, decided when it arrives."""

    latency_seconds: float = 0.0
    drop_connection: bool = False
    server_unavailable: bool = False
    request_limit: bool = False
    unable_to_lock_row: bool = False
    drop_response: bool = False


class FaultPlan:
    """The current fault settings and the seeded draws that apply them."""

    def __init__(self, settings: FaultSettings) -> None:
        self.initial = settings
        self.settings = settings
        self._lock = threading.Lock()
        self._calls = random.Random(settings.seed)
        self._notifications = random.Random(None if settings.seed is None else settings.seed + 1)

    def update(self, body: Any) -> FaultSettings:
        """Apply a partial update from the admin API; AdminError names a bad key or value."""
        if not isinstance(body, Mapping):
            raise AdminError(400, "body: must be a JSON object of fault settings")
        known = {f.name for f in fields(FaultSettings)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise AdminError(400, f"body: unknown keys {unknown}; allowed are {sorted(known)}")
        changes: dict[str, Any] = {}
        for key, value in body.items():
            changes[key] = _checked(key, value)
        with self._lock:
            self.settings = replace(self.settings, **changes)
            if "seed" in changes:
                self._reseed(self.settings.seed)
        return self.settings

    def reset(self) -> FaultSettings:
        with self._lock:
            self.settings = self.initial
            self._reseed(self.initial.seed)
        return self.settings

    def _reseed(self, seed: int | None) -> None:
        self._calls = random.Random(seed)
        self._notifications = random.Random(None if seed is None else seed + 1)

    def draw(self, *, is_write: bool) -> CallFaults:
        with self._lock:
            settings = self.settings
            draws = [self._calls.random() for _ in range(5)]
        return CallFaults(
            latency_seconds=settings.latency_ms / 1000,
            drop_connection=draws[0] < settings.drop_connection_share,
            server_unavailable=draws[1] < settings.server_unavailable_share,
            request_limit=draws[2] < settings.request_limit_share,
            unable_to_lock_row=is_write and draws[3] < settings.unable_to_lock_row_share,
            drop_response=draws[4] < settings.drop_response_share,
        )

    def drop_notification(self) -> bool:
        with self._lock:
            return self._notifications.random() < self.settings.notification_drop_share


def _checked(key: str, value: Any) -> Any:
    if key in _SHARES:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise AdminError(400, f"{key}: must be a number from 0 to 1 (a share of calls)")
        return float(value)
    if key == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise AdminError(400, "seed: must be an integer or null")
        return value
    limits = {
        "latency_ms": (0, 60_000),
        "daily_api_limit": (0, 10**9),
        "session_lifetime_seconds": (1, 10**7),
    }
    low, high = limits[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AdminError(400, f"{key}: must be a whole number from {low} to {high}")
    return value
