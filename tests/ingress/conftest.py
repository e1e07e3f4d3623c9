"""Real parts for the ingress: RabbitMQ (a vhost per test), the emulator, a Sales Connect
service for the session, a SQLite ledger per test, and `world`: a `tasksync ingress` process
among them (a module changes its options by overriding `ingress_options`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.messaging import Direction
from tests.ingress.support import SECRETS, IngressWorld, PublishWatch
from tests.producers.support import (
    TOPOLOGY_ARGS,
    BridgeProcess,
    PublishedMessages,
    broker,
    salesforce_args,
)
from tests.support.emulator import EmulatorProcess, emulator, emulator_session, fresh_emulator
from tests.support.rabbitmq import BrokerVhost, rabbit_vhost
from tests.support.salesconnect import RunningSalesConnect, running_salesconnect

__all__ = ["broker", "emulator", "emulator_session", "fresh_emulator", "rabbit_vhost"]


@pytest.fixture(scope="session")
def salesconnect_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningSalesConnect]:
    workdir = tmp_path_factory.mktemp("ingress-salesconnect")
    with running_salesconnect(f"sqlite:///{workdir / 'sc.sqlite3'}", workdir) as service:
        yield service


@pytest.fixture
def ingress_options() -> list[str]:
    """Options added to the ingress's command line."""
    return []


@pytest.fixture
def world(
    emulator: EmulatorProcess,
    salesconnect_service: RunningSalesConnect,
    broker: BrokerVhost,
    tmp_path: Path,
    ingress_options: list[str],
) -> Iterator[IngressWorld]:
    tag = uuid.uuid4().hex[:8]
    rep_user = emulator.admin.create_user(f"rep-{tag}@tasksync.example", "Rep-Passw0rd", "Rep")
    users = salesconnect_service.client()
    user = users.create_user(salesforce_user_id=rep_user.id)
    users.update_settings(user["id"], task_sync="on")
    args = [
        "ingress",
        "--port",
        "0",
        "--secret",
        ",".join(SECRETS),
        "--salesconnect-url",
        salesconnect_service.url,
        "--ledger-url",
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "--data-dir",
        str(tmp_path),
        *TOPOLOGY_ARGS,
        *salesforce_args(emulator),
        *ingress_options,
    ]
    ingress = BridgeProcess(tmp_path, "ingress", [*args, "--amqp-url", broker.amqp_url])
    info = ingress.start()
    published = PublishedMessages(broker, Direction.TO_SALESCONNECT)
    watch = PublishWatch(broker)
    yield IngressWorld(
        emulator=emulator,
        rep=emulator.salesforce(rep_user, client="rep"),
        rep_user=rep_user,
        published=published,
        watch=watch,
        ingress=ingress,
        info=info,
        workdir=tmp_path,
        args=args,
    )
    ingress.stop()
    watch.close()
    published.close()
    users.update_settings(user["id"], task_sync="off")
    users.close()
