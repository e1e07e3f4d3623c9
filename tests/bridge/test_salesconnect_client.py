"""The bridge's Sales Connect client against the real service in its own process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.errors import ErrorKind, SalesConnectApiError, classify
from bridge.salesconnect.client import SalesConnectClient
from tests.support.salesconnect import RunningSalesConnect, UserJson, running_salesconnect
from tests.support.salesconnect import SalesConnectClient as UserClient

SF_USER = "005000000000009AAA"
SF_TASK = "00T000000000009AAA"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSalesConnect]:
    workdir = tmp_path_factory.mktemp("bridge-salesconnect")
    with running_salesconnect(f"sqlite:///{workdir / 'sc.sqlite3'}", workdir) as running:
        yield running


@pytest.fixture
def user_client(service: RunningSalesConnect) -> UserClient:
    return service.client()


@pytest.fixture
def bridge(service: RunningSalesConnect) -> SalesConnectClient:
    return SalesConnectClient(service.url)


@pytest.fixture
def user(user_client: UserClient) -> UserJson:
    created = user_client.create_user()
    user_client.update_settings(created["id"], task_sync="on")
    return created


def test_bridge_writes_are_marked_as_the_bridges_own(
    bridge: SalesConnectClient, user_client: UserClient, user: UserJson
) -> None:
    head = user_client.head_seq()
    task = bridge.create_task(
        user["id"],
        {"name": "Call Ann", "due_date": "2026-11-23", "status": "open"},
        salesforce_task_id=SF_TASK,
        idempotency_key="create-1",
    )
    assert task.salesforce_task_id == SF_TASK
    entries = bridge.changes(head).changes
    assert [(e.op, e.origin, e.task_id) for e in entries] == [
        ("task_created", "salesforce", task.id)
    ]
    assert entries[0].by_bridge


def test_a_retried_create_returns_the_first_task(
    bridge: SalesConnectClient, user: UserJson
) -> None:
    fields = {"name": "Once", "due_date": None}
    first = bridge.create_task(user["id"], fields, salesforce_task_id=None, idempotency_key="k-9")
    again = bridge.create_task(user["id"], fields, salesforce_task_id=None, idempotency_key="k-9")
    assert first == again
    assert [t.id for t in bridge.tasks(user["id"])].count(first.id) == 1


def test_conditional_update_and_stale_version(bridge: SalesConnectClient, user: UserJson) -> None:
    task = bridge.create_task(
        user["id"], {"name": "x"}, salesforce_task_id=None, idempotency_key="k-10"
    )
    updated = bridge.update_task(
        task.id, {"status": "completed"}, if_match=task.version, idempotency_key="k-11"
    )
    assert updated.status == "completed" and updated.version == task.version + 1
    with pytest.raises(SalesConnectApiError) as caught:
        bridge.update_task(
            task.id, {"status": "open"}, if_match=task.version, idempotency_key="k-12"
        )
    assert caught.value.status == 412
    assert classify(caught.value).kind is ErrorKind.CONFLICT


def test_delete_restore_and_find_by_link(bridge: SalesConnectClient, user: UserJson) -> None:
    task = bridge.create_task(
        user["id"],
        {"name": "linked"},
        salesforce_task_id="00T00000000000AAAA",
        idempotency_key="k-20",
    )
    bridge.delete_task(task.id, if_match=task.version, idempotency_key="k-21")
    tombstone = bridge.task(task.id)
    assert tombstone is not None and tombstone.is_deleted
    assert bridge.task(task.id, include_deleted=False) is None
    found = bridge.task_linked_to(user["id"], "00T00000000000AAAA")
    assert found is not None and found.id == task.id
    restored = bridge.restore_task(task.id, if_match=tombstone.version, idempotency_key="k-22")
    assert not restored.is_deleted


def test_users_with_sync_on_and_settings(
    bridge: SalesConnectClient, user_client: UserClient, user: UserJson
) -> None:
    user_client.update_user(user["id"], salesforce_user_id=SF_USER)
    synced = {u.id: u for u in bridge.users_with_sync_on()}
    assert synced[user["id"]].salesforce_user_id == SF_USER
    assert synced[user["id"]].last_enabled_at is not None
    settings = bridge.settings(user["id"])
    assert settings.task_sync and settings.activity_subject_template == "{{activity_subject}}"


def test_sync_state_reaches_the_settings(bridge: SalesConnectClient, user: UserJson) -> None:
    bridge.report_sync_state(
        user["id"],
        first_sync={"state": "running", "started_at": "2026-11-22T10:00:00.000Z"},
        last_sync_error={
            "message": "FIELD_CUSTOM_VALIDATION_EXCEPTION: Subject is required",
            "occurred_at": "2026-11-22T10:00:01.000Z",
        },
    )
    settings = bridge.settings(user["id"])
    assert settings.first_sync_state == "running"
    assert settings.last_sync_error is not None and "Subject" in settings.last_sync_error
    bridge.report_sync_state(user["id"], last_sync_error=None)
    assert bridge.settings(user["id"]).last_sync_error is None


def test_validation_errors_are_permanent(bridge: SalesConnectClient, user: UserJson) -> None:
    with pytest.raises(SalesConnectApiError) as caught:
        bridge.create_task(
            user["id"], {"name": ""}, salesforce_task_id=None, idempotency_key="k-30"
        )
    assert caught.value.status == 400
    assert classify(caught.value).kind is ErrorKind.PERMANENT


def test_an_unreachable_service_is_transient(tmp_path: Path) -> None:
    client = SalesConnectClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(Exception) as caught:
        client.settings("usr_x")
    assert classify(caught.value).kind is ErrorKind.TRANSIENT
