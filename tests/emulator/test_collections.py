"""sObject Collections: create, update, upsert and delete up to 200 records, with allOrNone."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support.emulator import EmulatorProcess

ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}


@pytest.fixture
def sf(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("sales_rep")


def tasks(*records: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"attributes": {"type": "Task"}, **record} for record in records]


def count(sf: Salesforce) -> int:
    return int(sf.query("SELECT COUNT() FROM Task")["totalSize"])


def test_create_answers_200_with_a_result_per_record(sf: Salesforce) -> None:
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": tasks({"Subject": "a"}, {"Status": "Bad"}, {"Subject": "c"})},
    )
    assert results[0]["success"] is True and results[0]["errors"] == []
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "message": "Status: bad value for restricted picklist field: Bad",
                "fields": ["Status"],
            }
        ],
    }
    assert results[2]["success"] is True
    assert count(sf) == 2


def test_all_or_none_rolls_every_record_back(sf: Salesforce, emulator: EmulatorProcess) -> None:
    emulator.admin.clear_stats()
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={"allOrNone": True, "records": tasks({"Subject": "a"}, {"Subject": "x" * 300})},
    )
    assert results[0] == {"success": False, "errors": [ROLLED_BACK]}
    assert results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert count(sf) == 0
    stats = emulator.admin.stats()
    assert stats["records_written"] == {}
    assert stats["by_resource"]["composite/sobjects"] == {"POST": 1}


def test_update_and_delete(sf: Salesforce) -> None:
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": tasks({"Subject": "a"}, {"Subject": "b"})},
    )
    first, second = (r["id"] for r in created)
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": tasks({"Id": first, "Status": "Completed"}, {"Subject": "no id"}),
        },
    )
    assert updated[0] == {"id": first, "success": True, "errors": []}
    assert updated[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert sf.Task.get(first)["IsClosed"] is True
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{first},{second}"})
    assert [r["success"] for r in deleted] == [True, True]
    again = sf.restful("composite/sobjects", method="DELETE", params={"ids": first})
    assert again[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert count(sf) == 0


def test_upsert_by_external_id(sf: Salesforce) -> None:
    sf.Task.upsert("Sales_Connect_Id__c/sc-1", {"Subject": "old"})
    results = sf.restful(
        "composite/sobjects/Task/Sales_Connect_Id__c",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": tasks(
                {"Sales_Connect_Id__c": "sc-1", "Subject": "new"},
                {"Sales_Connect_Id__c": "sc-2", "Subject": "two"},
                {"Subject": "no key"},
                {"Sales_Connect_Id__c": "sc-3"},
                {"Sales_Connect_Id__c": "sc-3"},
            ),
        },
    )
    assert [r.get("created") for r in results[:2]] == [False, True]
    assert results[2]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert {r["errors"][0]["statusCode"] for r in results[3:]} == {"DUPLICATE_EXTERNAL_ID"}
    assert sf.Task.get_by_custom_id("Sales_Connect_Id__c", "sc-1")["Subject"] == "new"
    assert count(sf) == 2


def test_upsert_all_or_none_leaves_nothing(sf: Salesforce) -> None:
    results = sf.restful(
        "composite/sobjects/Task/Sales_Connect_Id__c",
        method="PATCH",
        json={
            "allOrNone": True,
            "records": tasks(
                {"Sales_Connect_Id__c": "ok-1", "Subject": "fine"},
                {"Sales_Connect_Id__c": "bad-1", "Priority": "Urgent"},
            ),
        },
    )
    assert results[0] == {"success": False, "errors": [ROLLED_BACK]}
    assert count(sf) == 0


def test_retrieve_by_ids(sf: Salesforce) -> None:
    first = sf.Task.create({"Subject": "a"})["id"]
    got = sf.restful(
        "composite/sobjects/Task", params={"ids": f"{first},{first[:-3]}XYZ", "fields": "Subject"}
    )
    assert got[0]["Subject"] == "a" and got[0]["Id"] == first
    assert got[1] is None


def test_more_than_200_records_is_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.restful(
            "composite/sobjects",
            method="POST",
            json={"records": tasks(*({"Subject": str(n)} for n in range(201)))},
        )
    assert raised.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    with pytest.raises(SalesforceMalformedRequest) as untyped:
        sf.restful("composite/sobjects", method="POST", json={"records": [{"Subject": "a"}]})
    assert untyped.value.content[0]["errorCode"] == "INVALID_TYPE"
    assert count(sf) == 0
