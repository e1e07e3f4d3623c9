"""Real parts for the producers: RabbitMQ (a vhost per test), the emulator, a Sales Connect
service for the session, a SQLite ledger per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.producers.support import broker
from tests.support.emulator import emulator, emulator_session, fresh_emulator
from tests.support.rabbitmq import rabbit_vhost
from tests.support.salesconnect import RunningSalesConnect, running_salesconnect

__all__ = ["broker", "emulator", "emulator_session", "fresh_emulator", "rabbit_vhost"]


@pytest.fixture(scope="session")
def salesconnect_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningSalesConnect]:
    workdir = tmp_path_factory.mktemp("producers-salesconnect")
    with running_salesconnect(f"sqlite:///{workdir / 'sc.sqlite3'}", workdir) as service:
        yield service
