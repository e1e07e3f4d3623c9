"""Waiting on a condition with a deadline: the only way the suite synchronises with processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceededError(AssertionError):
    pass


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll `condition` until it returns something truthy; return that, or fail at the deadline.

    Exceptions from `condition` count as "not yet" and the last one is reported on failure.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except Exception as exc:  # reported below if the deadline passes
            last_error = exc
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise DeadlineExceededError(f"timed out after {timeout} s waiting for {what}{detail}")
        time.sleep(interval)
