"""Fixtures every part of the suite may use."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

PROCESS_TIME_ZONES = ("UTC", "Pacific/Kiritimati", "America/Adak")


@pytest.fixture(params=PROCESS_TIME_ZONES)
def process_time_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the whole process in another time zone (UTC+14, UTC-10/-9)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
