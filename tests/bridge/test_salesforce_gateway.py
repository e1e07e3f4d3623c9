"""The bridge's Salesforce session and Task gateway, against the emulator over HTTPS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from bridge.salesforce.session import (
    AuthFlow,
    SalesforceCredentials,
    SalesforceSession,
)
from bridge.salesforce.tasks import BULK_LIMIT, RecordChangedError, SalesforceTaskGateway
from tests.support.emulator import EmulatorProcess


def credentials(emulator: EmulatorProcess, **overrides: object) -> SalesforceCredentials:
    values: dict[str, object] = {
        "login_url": emulator.instance_url,
        "flow": AuthFlow.PASSWORD,
        "username": emulator.integration_user.username,
        "password": emulator.integration_user.password,
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "ca_bundle": emulator.ca_path,
    }
    values.update(overrides)
    return SalesforceCredentials(**values)  # type: ignore[arg-type]


@pytest.fixture
def gateway(emulator: EmulatorProcess) -> SalesforceTaskGateway:
    return SalesforceTaskGateway(SalesforceSession(credentials(emulator)))


def new_task(emulator: EmulatorProcess, **fields: object) -> str:
    sf = emulator.salesforce("sales_rep")
    body = {"Subject": "Call Ann", "OwnerId": emulator.sales_rep.id, **fields}
    return str(sf.Task.create(body)["id"])


def test_logs_in_through_the_token_endpoint_of_a_non_salesforce_host(
    emulator: EmulatorProcess,
) -> None:
    session = SalesforceSession(credentials(emulator))
    assert session.instance_url == emulator.instance_url
    assert session.logins == 1


def test_client_credentials_flow(emulator: EmulatorProcess) -> None:
    session = SalesforceSession(
        credentials(emulator, flow=AuthFlow.CLIENT_CREDENTIALS, username=None, password=None)
    )
    assert session.client.query("SELECT Id FROM User")["totalSize"] >= 2


def test_wrong_password_is_an_authentication_failure(emulator: EmulatorProcess) -> None:
    session = SalesforceSession(credentials(emulator, password="wrong"))
    with pytest.raises(SalesforceAuthenticationFailed):
        _ = session.client


def test_missing_settings_are_named() -> None:
    with pytest.raises(ValueError, match="username, password"):
        SalesforceSession(SalesforceCredentials(login_url="https://127.0.0.1:1"))


def test_secrets_stay_out_of_repr(emulator: EmulatorProcess) -> None:
    text = repr(credentials(emulator, security_token="tok-123"))
    assert emulator.integration_user.password not in text
    assert emulator.client_secret not in text
    assert "tok-123" not in text


def test_an_expired_session_logs_in_again_and_the_call_succeeds(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    task_id = new_task(emulator)
    assert gateway.get(task_id).subject == "Call Ann"
    emulator.admin.expire_sessions()
    assert gateway.get(task_id).subject == "Call Ann"
    assert gateway.session.logins == 2


def test_upsert_by_external_id_creates_once(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    body = {"Subject": "Send proposal", "OwnerId": emulator.sales_rep.id, "Status": "Not Started"}
    first = gateway.upsert("tsk_1", body)
    again = gateway.upsert("tsk_1", body)
    assert first.created and not again.created
    assert first.id == again.id
    found = list(gateway.tasks("Sales_Connect_Id__c = 'tsk_1'"))
    assert [task.id for task in found] == [first.id]
    assert found[0].subject == "Send proposal"
    assert found[0].last_modified_by_id == emulator.integration_user.id


def test_every_call_names_tasksync(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    emulator.admin.clear_stats()
    gateway.upsert("tsk_2", {"Subject": "x", "OwnerId": emulator.sales_rep.id})
    stats = emulator.admin.stats()
    assert "tasksync" in str(stats)


def test_conditional_update_refuses_a_record_changed_since(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    task_id = new_task(emulator)
    seen = gateway.get(task_id).last_modified_date
    gateway.update(task_id, {"Priority": "High"}, if_unmodified_since=seen)
    with pytest.raises(RecordChangedError):
        gateway.update(
            task_id, {"Priority": "Normal"}, if_unmodified_since=seen - timedelta(seconds=5)
        )
    assert gateway.get(task_id).priority == "High"


def test_collections_write_many_with_per_record_results(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    owner = emulator.sales_rep.id
    records = [
        {"Sales_Connect_Id__c": f"tsk_c{n}", "Subject": f"task {n}", "OwnerId": owner}
        for n in range(3)
    ] + [{"Sales_Connect_Id__c": "tsk_bad", "Subject": "x" * 256, "OwnerId": owner}]
    results = gateway.upsert_many(records)
    assert [r.success for r in results] == [True, True, True, False]
    assert results[3].errors[0].status_code == "STRING_TOO_LONG"
    assert all(r.created for r in results[:3])
    ids = [str(r.id) for r in results[:3]]
    updated = gateway.update_many([{"Id": task_id, "Priority": "High"} for task_id in ids])
    assert all(r.success for r in updated)
    deleted = gateway.delete_many(ids)
    assert all(r.success for r in deleted)
    current = gateway.tasks_by_id(ids)
    assert {task.is_deleted for task in current.values()} == {True}
    assert {task.priority for task in current.values()} == {"High"}


def test_a_thousand_records_go_in_one_api_call_each_way(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    owner = emulator.sales_rep.id
    records: list[dict[str, object]] = [
        {"Sales_Connect_Id__c": f"tsk_k{n}", "Subject": f"k{n}", "OwnerId": owner}
        for n in range(BULK_LIMIT)
    ]
    records[700]["Subject"] = "x" * 256  # one bad record fails alone
    emulator.admin.clear_stats()
    results = gateway.upsert_many(records)
    assert [n for n, r in enumerate(results) if not r.success] == [700]
    assert results[700].errors[0].status_code == "STRING_TOO_LONG"
    ids = [str(r.id) for r in results if r.success]
    current = gateway.tasks_by_id(ids)
    assert len(current) == BULK_LIMIT - 1
    assert current[ids[999 - 1]].subject == "k999"
    updated = gateway.update_many([{"Id": task_id, "Priority": "High"} for task_id in ids])
    assert all(r.success for r in updated)
    deleted = gateway.delete_many(ids)
    assert all(r.success for r in deleted)
    stats = emulator.admin.stats()["by_client"]["tasksync"]
    assert stats["by_resource"] == {"composite": {"POST": 4}}
    assert stats["records_written"] == {"create": 999, "delete": 999, "update": 999}
    with pytest.raises(ValueError, match="1 to 1000"):
        gateway.update_many([{"Id": ids[0]}] * (BULK_LIMIT + 1))


def test_query_follows_pages(emulator: EmulatorProcess, gateway: SalesforceTaskGateway) -> None:
    owner = emulator.sales_rep.id
    for start in range(0, 450, 200):
        gateway.upsert_many(
            [
                {"Sales_Connect_Id__c": f"tsk_p{n}", "Subject": f"p{n}", "OwnerId": owner}
                for n in range(start, min(start + 200, 450))
            ]
        )
    query = "SELECT Id FROM Task WHERE Subject LIKE 'p%'"
    pages = gateway.session.client.query(query, headers={"Sforce-Query-Options": "batchSize=200"})
    assert not pages["done"]
    assert len(list(gateway.query(query))) == 450


def test_a_delete_shows_at_once_through_query_all_and_later_through_get_deleted(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    task_id = new_task(emulator)
    gateway.delete(task_id)
    assert gateway.tasks_by_id([task_id])[task_id].is_deleted
    now = datetime.now(UTC)
    window = gateway.deleted_between(now - timedelta(minutes=5), now)
    # Salesforce covers whole minutes only: this minute's deletes come with the next call.
    assert window.latest_date_covered is not None
    assert window.latest_date_covered <= now.replace(second=0, microsecond=0)
    assert task_id not in {deleted_id for deleted_id, _ in window.deleted}
    with pytest.raises(SalesforceResourceNotFound):
        gateway.delete(task_id)


def test_bad_field_values_raise_what_salesforce_raises(
    emulator: EmulatorProcess, gateway: SalesforceTaskGateway
) -> None:
    task_id = new_task(emulator)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        gateway.update(task_id, {"Status": "Sleeping"})
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in str(caught.value)
