"""Task rows through simple-salesforce: create, read, update, delete, upsert, and their errors.

Every failure must raise the simple-salesforce exception a real org makes it raise, with
Salesforce's error body.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from salesforce_emulator.ids import make_id
from tests.support.emulator import EmulatorProcess

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def error_of(exc: pytest.ExceptionInfo[Exception]) -> dict[str, object]:
    content = exc.value.content  # type: ignore[attr-defined]
    assert isinstance(content, list) and len(content) == 1, content
    error: dict[str, object] = content[0]
    return error


@pytest.fixture
def rep(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("sales_rep")


@pytest.fixture
def integration(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("integration")


def test_create_fills_defaults_and_system_fields(
    rep: Salesforce, emulator: EmulatorProcess
) -> None:
    created = rep.Task.create({"Subject": "Call Ada", "ActivityDate": "2026-11-23"})
    assert created["success"] is True and created["errors"] == []
    assert re.match(r"^00T[A-Za-z0-9]{15}$", created["id"])
    task = rep.Task.get(created["id"])
    assert task["attributes"] == {
        "type": "Task",
        "url": f"/services/data/v59.0/sobjects/Task/{created['id']}",
    }
    assert task["Status"] == "Not Started" and task["Priority"] == "Normal"
    assert task["TaskSubtype"] == "Task" and task["IsClosed"] is False
    assert task["IsDeleted"] is False and task["IsRecurrence"] is False
    assert task["OwnerId"] == task["CreatedById"] == task["LastModifiedById"]
    assert task["OwnerId"] == emulator.sales_rep.id
    assert task["ActivityDate"] == "2026-11-23"
    for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert STAMP.match(task[name]), task[name]


def test_get_with_fields_returns_those_and_the_id(rep: Salesforce) -> None:
    task_id = rep.Task.create({"Subject": "x"})["id"]
    task = rep.Task.get(task_id, params={"fields": "Subject,Status"})
    assert list(task) == ["attributes", "Subject", "Status", "Id"]


def test_update_answers_204_and_stamps_strictly_increase(
    rep: Salesforce, integration: Salesforce, emulator: EmulatorProcess
) -> None:
    task_id = rep.Task.create({"Subject": "a"})["id"]
    before = rep.Task.get(task_id)
    assert integration.Task.update(task_id, {"Status": "Completed", "Priority": "High"}) == 204
    after = rep.Task.get(task_id)
    assert after["IsClosed"] is True and after["Priority"] == "High"
    assert after["LastModifiedById"] == emulator.integration_user.id
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert after["CreatedDate"] == before["CreatedDate"]


def test_delete_goes_to_the_recycle_bin(rep: Salesforce) -> None:
    task_id = rep.Task.create({"Subject": "gone"})["id"]
    assert rep.Task.delete(task_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as got:
        rep.Task.get(task_id)
    assert error_of(got) == {
        "message": "entity is deleted",
        "errorCode": "ENTITY_IS_DELETED",
        "fields": [],
    }
    with pytest.raises(SalesforceResourceNotFound) as deleted_again:
        rep.Task.delete(task_id)
    assert error_of(deleted_again)["errorCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound):
        rep.Task.update(task_id, {"Subject": "back"})
    rows = rep.query_all(
        f"SELECT Id, IsDeleted FROM Task WHERE Id = '{task_id}'", include_deleted=True
    )
    assert [r["IsDeleted"] for r in rows["records"]] == [True]
    assert rep.query(f"SELECT Id FROM Task WHERE Id = '{task_id}'")["totalSize"] == 0


def test_unknown_ids_are_not_found(rep: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as missing:
        rep.Task.get(make_id("00T", 9_000_000_000))
    assert error_of(missing) == {
        "message": "The requested resource does not exist",
        "errorCode": "NOT_FOUND",
    }
    with pytest.raises(SalesforceResourceNotFound) as not_an_id:
        rep.Task.get("nonsense")
    assert "Provided external ID field does not exist" in str(error_of(not_an_id)["message"])


def test_fifteen_character_and_lower_case_ids_reach_the_same_task(rep: Salesforce) -> None:
    task_id = rep.Task.create({"Subject": "case"})["id"]
    assert rep.Task.get(task_id[:15])["Id"] == task_id
    assert rep.Task.get(task_id.lower())["Id"] == task_id


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"Status": "Done"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status"]),
        ({"Priority": "Urgent"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Priority"]),
        ({"TaskSubtype": "Meeting"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["TaskSubtype"]),
        ({"Subject": "x" * 256}, "STRING_TOO_LONG", ["Subject"]),
        ({"Subject": "\U0001f600" * 128}, "STRING_TOO_LONG", ["Subject"]),
        ({"Description": "d" * 32_001}, "STRING_TOO_LONG", ["Description"]),
        ({"Status": None}, "REQUIRED_FIELD_MISSING", ["Status"]),
        ({"OwnerId": "not-an-id"}, "MALFORMED_ID", ["OwnerId"]),
        ({"OwnerId": make_id("001", 5)}, "FIELD_INTEGRITY_EXCEPTION", ["OwnerId"]),
        ({"OwnerId": make_id("005", 5)}, "INVALID_CROSS_REFERENCE_KEY", ["OwnerId"]),
        ({"IsClosed": True}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsClosed"]),
        (
            {"CreatedDate": "2026-01-01T00:00:00.000+0000"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["CreatedDate"],
        ),
    ],
)
def test_rule_breaking_creates_raise_malformed_request(
    rep: Salesforce, body: dict[str, object], code: str, fields: list[str]
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        rep.Task.create(body)
    error = error_of(raised)
    assert error["errorCode"] == code and error["fields"] == fields
    assert rep.query("SELECT COUNT() FROM Task")["totalSize"] == 0


def test_lengths_count_utf16_code_units_like_salesforce(rep: Salesforce) -> None:
    rep.Task.create({"Subject": "\U0001f600" * 127 + "a"})
    rep.Task.create({"Description": "é" * 32_000})


def test_messages_name_field_and_value(rep: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        rep.Task.create({"Status": "Done"})
    assert error_of(raised)["message"] == "Status: bad value for restricted picklist field: Done"
    with pytest.raises(SalesforceMalformedRequest) as too_long:
        rep.Task.create({"Subject": "y" * 256})
    assert str(error_of(too_long)["message"]).endswith("(max length=255)")


def test_unknown_fields_and_bad_json(rep: Salesforce, emulator: EmulatorProcess) -> None:
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        rep.Task.create({"Colour": "red"})
    assert error_of(unknown) == {
        "message": "No such column 'Colour' on sobject of type Task",
        "errorCode": "INVALID_FIELD",
    }
    with pytest.raises(SalesforceMalformedRequest) as bad_date:
        rep.Task.create({"ActivityDate": "2026-02-30"})
    assert error_of(bad_date)["errorCode"] == "JSON_PARSER_ERROR"
    assert "at [line:1, column:" in str(error_of(bad_date)["message"])
    with pytest.raises(SalesforceMalformedRequest) as bad_bool:
        rep.Task.create({"IsRecurrence": "yes"})
    assert error_of(bad_bool)["errorCode"] == "JSON_PARSER_ERROR"
    session = emulator.http_session()
    response = session.post(
        f"{emulator.instance_url}/services/data/v59.0/sobjects/Task/",
        data="{not json",
        headers={
            "Authorization": f"Bearer {emulator.access_token('sales_rep')}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_field_names_are_case_insensitive(rep: Salesforce) -> None:
    task_id = rep.Task.create({"subject": "lower", "STATUS": "In Progress"})["id"]
    task = rep.Task.get(task_id)
    assert task["Subject"] == "lower" and task["Status"] == "In Progress"


def test_task_subtype_is_set_on_create_only(rep: Salesforce) -> None:
    task_id = rep.Task.create({"Subject": "mail", "TaskSubtype": "Email"})["id"]
    assert rep.Task.get(task_id)["TaskSubtype"] == "Email"
    with pytest.raises(SalesforceMalformedRequest) as raised:
        rep.Task.update(task_id, {"TaskSubtype": "Task"})
    assert error_of(raised)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_owner_must_be_an_active_user(rep: Salesforce, emulator: EmulatorProcess) -> None:
    user = emulator.admin.create_user("carol@tasksync.example", "Carol-Passw0rd", "Carol Jones")
    task_id = rep.Task.create({"Subject": "for carol", "OwnerId": user.id})["id"]
    assert rep.Task.get(task_id)["OwnerId"] == user.id
    emulator.admin.update_user(user.id, is_active=False)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        rep.Task.create({"Subject": "again", "OwnerId": user.id})
    assert error_of(raised)["errorCode"] == "INACTIVE_OWNER_OR_USER"


def test_blank_text_is_stored_as_null(rep: Salesforce) -> None:
    task_id = rep.Task.create({"Subject": "s", "Description": ""})["id"]
    assert rep.Task.get(task_id)["Description"] is None


def test_upsert_by_external_id_creates_then_updates(rep: Salesforce) -> None:
    created = rep.Task.upsert("Sales_Connect_Id__c/sc-1", {"Subject": "first"}, raw_response=True)
    assert created.status_code == 201
    body = created.json()
    assert body["created"] is True and body["success"] is True
    updated = rep.Task.upsert("Sales_Connect_Id__c/sc-1", {"Subject": "second"}, raw_response=True)
    assert updated.status_code == 200
    assert updated.json() == {"id": body["id"], "success": True, "errors": [], "created": False}
    task = rep.Task.get_by_custom_id("Sales_Connect_Id__c", "sc-1")
    assert task["Subject"] == "second" and task["Sales_Connect_Id__c"] == "sc-1"


def test_upsert_before_api_46_answers_204_on_update(emulator: EmulatorProcess) -> None:
    old = emulator.salesforce("sales_rep", version="45.0")
    assert old.Task.upsert("Sales_Connect_Id__c/old-1", {"Subject": "a"}) == 201
    assert old.Task.upsert("Sales_Connect_Id__c/old-1", {"Subject": "b"}) == 204


def test_upsert_update_only_does_not_create(rep: Salesforce, emulator: EmulatorProcess) -> None:
    session = emulator.http_session()
    response = session.patch(
        f"{emulator.instance_url}/services/data/v59.0/sobjects/Task/Sales_Connect_Id__c/nope",
        params={"updateOnly": "true"},
        json={"Subject": "x"},
        headers={"Authorization": f"Bearer {emulator.access_token()}"},
    )
    assert response.status_code == 404
    assert rep.query("SELECT COUNT() FROM Task")["totalSize"] == 0


def test_external_id_is_unique_case_insensitively_when_so_defined(
    rep: Salesforce, emulator: EmulatorProcess
) -> None:
    emulator.admin.set_external_id(case_sensitive=False)
    rep.Task.create({"Subject": "a", "Sales_Connect_Id__c": "dup-1"})
    with pytest.raises(SalesforceMalformedRequest) as raised:
        rep.Task.create({"Subject": "b", "Sales_Connect_Id__c": "DUP-1"})
    assert error_of(raised)["errorCode"] == "DUPLICATE_VALUE"


def test_upsert_with_several_matches_answers_300(
    rep: Salesforce, emulator: EmulatorProcess
) -> None:
    emulator.admin.set_external_id(unique=False)
    first = rep.Task.create({"Subject": "a", "Sales_Connect_Id__c": "many"})["id"]
    second = rep.Task.create({"Subject": "b", "Sales_Connect_Id__c": "many"})["id"]
    with pytest.raises(SalesforceMoreThanOneRecord) as raised:
        rep.Task.upsert("Sales_Connect_Id__c/many", {"Subject": "c"})
    content = raised.value.content
    assert content == [
        f"/services/data/v59.0/sobjects/Task/{first}",
        f"/services/data/v59.0/sobjects/Task/{second}",
    ]
    with pytest.raises(SalesforceMoreThanOneRecord):
        rep.Task.get_by_custom_id("Sales_Connect_Id__c", "many")


def test_upsert_on_a_field_that_is_not_an_external_id_is_not_found(rep: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound):
        rep.Task.upsert("Subject/abc", {"Subject": "x"})


def test_patch_without_external_id_value_is_not_allowed(rep: Salesforce) -> None:
    with pytest.raises(SalesforceGeneralError) as raised:
        rep.Task.update("Sales_Connect_Id__c", {"Subject": "x"})
    assert raised.value.status == 405
    assert error_of(raised)["errorCode"] == "METHOD_NOT_ALLOWED"


def test_if_unmodified_since_answers_412_after_a_change(
    rep: Salesforce, emulator: EmulatorProcess
) -> None:
    task_id = rep.Task.create({"Subject": "v1"})["id"]
    read_at = datetime.now(UTC) - timedelta(seconds=5)
    header = {"If-Unmodified-Since": format_datetime(read_at, usegmt=True)}
    with pytest.raises(SalesforceGeneralError) as raised:
        rep.Task.update(task_id, {"Subject": "v2"}, headers=header)
    assert raised.value.status == 412
    assert rep.Task.get(task_id)["Subject"] == "v1"
    later = {
        "If-Unmodified-Since": format_datetime(
            datetime.now(UTC) + timedelta(seconds=5), usegmt=True
        )
    }
    assert rep.Task.update(task_id, {"Subject": "v2"}, headers=later) == 204
    with pytest.raises(SalesforceMalformedRequest):
        rep.Task.update(task_id, {"Subject": "v3"}, headers={"If-Unmodified-Since": "yesterday"})


def test_get_answers_last_modified_header(rep: Salesforce, emulator: EmulatorProcess) -> None:
    task_id = rep.Task.create({"Subject": "h"})["id"]
    response = emulator.http_session().get(
        f"{emulator.instance_url}/services/data/v59.0/sobjects/Task/{task_id}",
        headers={"Authorization": f"Bearer {emulator.access_token()}"},
    )
    assert response.headers["Last-Modified"].endswith(" GMT")
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"


def test_describe_has_field_metadata_and_picklists(rep: Salesforce) -> None:
    described = rep.Task.describe()
    assert described["name"] == "Task" and described["keyPrefix"] == "00T"
    fields = {field["name"]: field for field in described["fields"]}
    assert fields["Subject"]["length"] == 255
    assert fields["Description"]["length"] == 32_000
    assert [v["value"] for v in fields["Status"]["picklistValues"]] == [
        "Not Started",
        "In Progress",
        "Completed",
        "Waiting on someone else",
        "Deferred",
    ]
    assert fields["Status"]["restrictedPicklist"] is True
    assert fields["Sales_Connect_Id__c"]["externalId"] is True
    assert fields["Sales_Connect_Id__c"]["unique"] is True
    assert (
        fields["TaskSubtype"]["createable"] is True and fields["TaskSubtype"]["updateable"] is False
    )
    assert fields["IsClosed"]["updateable"] is False
    closed = rep.query("SELECT ApiName, IsClosed FROM TaskStatus WHERE IsClosed = true")
    assert [r["ApiName"] for r in closed["records"]] == ["Completed"]


def test_users_can_be_read_and_queried(rep: Salesforce, emulator: EmulatorProcess) -> None:
    user = rep.User.get(emulator.sales_rep.id)
    assert user["Username"] == emulator.sales_rep.username and user["IsActive"] is True
    assert "password_hash" not in user
    found = rep.query(
        f"SELECT Id, Name FROM User WHERE Username = '{emulator.integration_user.username}'"
    )
    assert [r["Id"] for r in found["records"]] == [emulator.integration_user.id]
    with pytest.raises(SalesforceMalformedRequest):
        rep.User.create({"Username": "x@y.z"})


def test_versions_resources_and_global_describe(rep: Salesforce, emulator: EmulatorProcess) -> None:
    versions = requests.get(
        f"{emulator.instance_url}/services/data/", verify=emulator.ca_path, timeout=10
    ).json()
    assert {"label", "url", "version"} <= set(versions[0])
    described = rep.describe()
    assert {s["name"] for s in described["sobjects"]} >= {"Task", "User", "TaskStatus"}
    assert rep.restful("")["query"] == "/services/data/v59.0/query"
