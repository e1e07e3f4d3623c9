"""Real parts for the appliers: the emulator, a Sales Connect service, a SQLite ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from simple_salesforce.api import Salesforce

from bridge.ledger import Ledger
from bridge.messaging import Delivery
from bridge.salesconnect.client import SalesConnectClient
from bridge.salesforce.session import AuthFlow, SalesforceCredentials, SalesforceSession
from bridge.salesforce.tasks import SalesforceTaskGateway
from bridge.sync.directory import SyncUserDirectory
from schemas.task_change import TaskChange
from tests.support.emulator import EmulatorProcess, emulator, emulator_session
from tests.support.salesconnect import RunningSalesConnect, running_salesconnect
from tests.support.salesconnect import SalesConnectClient as UserClient

__all__ = ["emulator", "emulator_session"]


@pytest.fixture(scope="session")
def salesconnect_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningSalesConnect]:
    workdir = tmp_path_factory.mktemp("sync-salesconnect")
    with running_salesconnect(f"sqlite:///{workdir / 'sc.sqlite3'}", workdir) as service:
        yield service


@dataclass
class SyncWorld:
    """Everything an applier test touches, with one synced user of its own."""

    emulator: EmulatorProcess
    ledger: Ledger
    salesconnect: SalesConnectClient
    users: UserClient
    directory: SyncUserDirectory
    gateway: SalesforceTaskGateway
    rep: Salesforce
    salesconnect_user_id: str
    salesforce_user_id: str

    def salesforce_writes(self) -> dict[str, int]:
        """Record writes by the bridge (its calls say client=tasksync)."""
        stats = self.emulator.admin.stats()
        return dict(stats["by_client"].get("tasksync", {}).get("records_written", {}))

    def bridge_calls(self) -> int:
        return int(self.emulator.admin.stats()["by_client"].get("tasksync", {}).get("total", 0))


@pytest.fixture
def world(
    emulator: EmulatorProcess, salesconnect_service: RunningSalesConnect, tmp_path: Path
) -> Iterator[SyncWorld]:
    tag = uuid.uuid4().hex[:8]
    sf_user = emulator.admin.create_user(f"rep-{tag}@tasksync.example", "Rep-Passw0rd", "Rep")
    users = salesconnect_service.client()
    sc_user = users.create_user(salesforce_user_id=sf_user.id)
    users.update_settings(sc_user["id"], task_sync="on")
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    client = SalesConnectClient(salesconnect_service.url)
    session = SalesforceSession(
        SalesforceCredentials(
            login_url=emulator.instance_url,
            flow=AuthFlow.PASSWORD,
            username=emulator.integration_user.username,
            password=emulator.integration_user.password,
            client_id=emulator.client_id,
            client_secret=emulator.client_secret,
            ca_bundle=emulator.ca_path,
        )
    )
    yield SyncWorld(
        emulator=emulator,
        ledger=ledger,
        salesconnect=client,
        users=users,
        directory=SyncUserDirectory(client, max_age=0.0),
        gateway=SalesforceTaskGateway(session),
        rep=emulator.salesforce(sf_user, client="rep"),
        salesconnect_user_id=sc_user["id"],
        salesforce_user_id=sf_user.id,
    )
    ledger.close()
    users.close()


def delivery(change: TaskChange) -> Delivery:
    return Delivery(
        change=change,
        task_key=f"test:{change.message_id}",
        message_id=str(change.message_id),
        exchange="tasksync.test",
        routing_key="upsert.test",
        queue="tasksync.test",
        redelivered=False,
        attempts=0,
        first_failed=None,
        last_error=None,
        published_at=datetime.now(UTC),
        headers={},
    )
