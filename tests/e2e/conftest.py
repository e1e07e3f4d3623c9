"""Fixtures for the end-to-end tests of SPEC.md's rules (one module per SPEC section).

* `system`: the whole system (every process, real RabbitMQ, real HTTP). Modules share ONE
  system and isolate their tests with fresh synced users (`both`, `users`), so the suite pays
  for a start once. A module gets a system of its own when it sets `SYSTEM_OPTIONS` (a dict of
  `SystemOptions` fields), `PROCESS_TIME_ZONE` (every process started with that `TZ`) or
  `OWN_SYSTEM = True` (its tests kill or restart components). The shared system stops after
  the last module that uses it, so it does not linger through the rest of the suite.
* `system_factory`: a system of the test's own.
* `users`: the module's `UserPool`: `users.take(name, **create_synced_user options)` is a fresh
  synced user, made in batches (`USERS_PER_BATCH`, 4) so that users cost little.
* `both`: a fresh synced user, seen from both sides (`helpers.Both`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Both, UserPool
from tests.support.system import RunningSystem, SystemOptions, start_system, system_factory

__all__ = ["both", "shared_system", "system", "system_factory", "users"]

E2E_DIR = Path(__file__).parent


def owns_system(module: Any) -> bool:
    return any(
        hasattr(module, name) for name in ("SYSTEM_OPTIONS", "PROCESS_TIME_ZONE", "OWN_SYSTEM")
    )


@contextlib.contextmanager
def process_time_zone(name: str | None) -> Iterator[None]:
    """Children started inside inherit `TZ=name`; this process goes back to its own after."""
    if name is None:
        yield
        return
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture(scope="session")
def shared_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    started = start_system(tmp_path_factory.mktemp("e2e-shared-system"))
    try:
        yield started
    finally:
        started.stop()


def _shared_modules_left(request: pytest.FixtureRequest) -> bool:
    """Whether a module after this one, in this session, still uses the shared system."""
    items = request.session.items
    current = request.node.path
    later = False
    for item in items:
        path = item.path
        if path == current:
            later = True
            continue
        if later and path.parent == E2E_DIR and not owns_system(item.module):  # type: ignore[attr-defined]
            return True
    return False


@pytest.fixture(scope="module")
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSystem]:
    module = request.module
    if not owns_system(module):
        shared: RunningSystem = request.getfixturevalue("shared_system")
        yield shared
        if not _shared_modules_left(request):
            shared.stop()
        return
    options: dict[str, Any] = dict(getattr(module, "SYSTEM_OPTIONS", {}))
    with process_time_zone(getattr(module, "PROCESS_TIME_ZONE", None)):
        started = start_system(tmp_path_factory.mktemp("e2e-system"), SystemOptions(**options))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def users(system: RunningSystem, request: pytest.FixtureRequest) -> UserPool:
    """Fresh synced users on the module's system, `USERS_PER_BATCH` (4) made at a time."""
    return UserPool(system, batch=getattr(request.module, "USERS_PER_BATCH", 4))


@pytest.fixture
def both(users: UserPool) -> Both:
    return users.take()
