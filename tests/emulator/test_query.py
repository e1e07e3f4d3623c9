"""SOQL through query/ and queryAll/: the subset, Salesforce's semantics, paging and errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support.emulator import EmulatorProcess


@pytest.fixture
def sf(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("sales_rep")


def create_many(sf: Salesforce, records: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(records), 200):
        chunk = [{"attributes": {"type": "Task"}, **r} for r in records[start : start + 200]]
        results = sf.restful(
            "composite/sobjects", method="POST", json={"allOrNone": True, "records": chunk}
        )
        assert all(r["success"] for r in results), results
        ids.extend(r["id"] for r in results)
    return ids


def subjects(result: dict[str, Any]) -> list[str]:
    return [record["Subject"] for record in result["records"]]


@pytest.fixture
def sample(sf: Salesforce) -> list[str]:
    today = datetime.now(UTC).date()
    return create_many(
        sf,
        [
            {"Subject": "alpha", "Priority": "High", "ActivityDate": today.isoformat()},
            {"Subject": "Beta", "Status": "Completed"},
            {"Subject": "gamma 50%", "Priority": "Low", "ActivityDate": str(today + timedelta(2))},
            {"Subject": None, "Description": "no subject"},
            {"Subject": "Älpha", "Status": "In Progress"},
        ],
    )


def test_field_lists_and_record_shape(sf: Salesforce, sample: list[str]) -> None:
    result = sf.query("SELECT subject, Id FROM Task WHERE Id = '" + sample[0][:15] + "'")
    assert result["totalSize"] == 1 and result["done"] is True
    record = result["records"][0]
    assert list(record) == ["attributes", "Subject", "Id"]
    assert record["attributes"]["url"].endswith(sample[0])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Subject = 'ALPHA'", ["alpha"]),
        ("Subject != 'alpha'", ["Beta", "gamma 50%", None, "Älpha"]),
        ("Subject = null", [None]),
        ("Subject != null AND Priority = 'Normal'", ["Beta", "Älpha"]),
        ("(Priority = 'High' OR Priority = 'Low') AND IsClosed = false", ["alpha", "gamma 50%"]),
        ("NOT Subject LIKE 'a%'", ["Beta", "gamma 50%", None, "Älpha"]),
        ("Subject LIKE '%a'", ["alpha", "Beta", "Älpha"]),
        ("Subject LIKE '%50\\%'", ["gamma 50%"]),
        ("Subject LIKE '_eta'", ["Beta"]),
        ("Status IN ('Completed', 'In Progress')", ["Beta", "Älpha"]),
        ("Status NOT IN ('Not Started')", ["Beta", "Älpha"]),
        ("Subject = 'älpha'", ["Älpha"]),
        ("ActivityDate = TODAY", ["alpha"]),
        ("ActivityDate > TODAY", ["gamma 50%"]),
        ("ActivityDate = NEXT_N_DAYS:3", ["gamma 50%"]),
        ("ActivityDate = null", ["Beta", None, "Älpha"]),
        ("CreatedDate = LAST_N_DAYS:1", ["alpha", "Beta", "gamma 50%", None, "Älpha"]),
        ("CreatedDate < YESTERDAY", []),
        ("CreatedDate > 2020-01-01T00:00:00Z", ["alpha", "Beta", "gamma 50%", None, "Älpha"]),
        ("NOT (IsClosed = true)", ["alpha", "gamma 50%", None, "Älpha"]),
    ],
)
def test_where_follows_soql_semantics(
    sf: Salesforce, sample: list[str], where: str, expected: list[str | None]
) -> None:
    result = sf.query(f"SELECT Subject FROM Task WHERE {where} ORDER BY CreatedDate")
    assert subjects(result) == expected


def test_order_by_limit_offset_and_nulls(sf: Salesforce, sample: list[str]) -> None:
    ordered = sf.query("SELECT Subject FROM Task ORDER BY Subject")
    assert subjects(ordered) == [None, "alpha", "Beta", "gamma 50%", "Älpha"]
    descending = sf.query("SELECT Subject FROM Task ORDER BY Subject DESC NULLS FIRST LIMIT 2")
    assert subjects(descending) == [None, "Älpha"]
    page = sf.query("SELECT Subject FROM Task ORDER BY Subject ASC NULLS LAST LIMIT 2 OFFSET 1")
    assert subjects(page) == ["Beta", "gamma 50%"]


def test_count_and_query_all_sees_the_recycle_bin(sf: Salesforce, sample: list[str]) -> None:
    sf.Task.delete(sample[1])
    assert sf.query("SELECT COUNT() FROM Task") == {"totalSize": 4, "done": True, "records": []}
    everything = sf.query_all(
        "SELECT Id, IsDeleted FROM Task WHERE IsDeleted = true", include_deleted=True
    )
    assert [r["Id"] for r in everything["records"]] == [sample[1]]
    assert sf.query("SELECT Id FROM Task WHERE IsDeleted = true")["totalSize"] == 0


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        ("SELECT Id FORM Task", "MALFORMED_QUERY", "unexpected token: FORM"),
        ("SELECT Id FROM Task WHERE", "MALFORMED_QUERY", "unexpected token: <EOF>"),
        (
            "SELECT Id FROM Task WHERE Subject = 'a' AND Status = 'b' OR Priority = 'c'",
            "MALFORMED_QUERY",
            "unexpected token: OR",
        ),
        ("SELECT Id, Id FROM Task", "MALFORMED_QUERY", "duplicate field selected: Id"),
        ("SELECT Colour FROM Task", "INVALID_FIELD", "No such column 'Colour' on entity 'Task'"),
        ("SELECT Id FROM Task ORDER BY Colour", "INVALID_FIELD", "No such column 'Colour'"),
        ("SELECT Owner.Name FROM Task", "INVALID_FIELD", "Didn't understand relationship 'Owner'"),
        ("SELECT Id FROM Tasks", "INVALID_TYPE", "sObject type 'Tasks' is not supported"),
        (
            "SELECT Id FROM Task WHERE CreatedDate = '2026-01-01'",
            "INVALID_FIELD",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Task WHERE ActivityDate = 2026-01-01T00:00:00Z",
            "INVALID_FIELD",
            "must be of type date",
        ),
        ("SELECT Id FROM Task WHERE IsClosed = 'true'", "INVALID_FIELD", "must be of type boolean"),
        (
            "SELECT Id FROM Task WHERE OwnerId = 'nope'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: nope",
        ),
        ("SELECT Id FROM Task WHERE Subject = 'open", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id FROM Task WHERE Description = 'x'", "INVALID_FIELD", "can not be filtered"),
        ("SELECT Id FROM Task ORDER BY Description", "INVALID_FIELD", "can not be sorted"),
        ("SELECT Id FROM Task WHERE Id LIKE '00T%'", "INVALID_QUERY_FILTER_OPERATOR", "LIKE"),
    ],
)
def test_bad_queries_raise_malformed_request(
    sf: Salesforce, soql: str, code: str, fragment: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query(soql)
    error = raised.value.content[0]
    assert error["errorCode"] == code
    assert fragment in error["message"]
    assert "ERROR at Row:1:Column:" in error["message"]


def test_missing_query_string(emulator: EmulatorProcess) -> None:
    response = emulator.http_session().get(
        f"{emulator.instance_url}/services/data/v59.0/query/",
        headers={"Authorization": f"Bearer {emulator.access_token()}"},
    )
    assert response.status_code == 400
    assert response.json() == [
        {"message": "A query string has to be specified", "errorCode": "MALFORMED_QUERY"}
    ]


def test_paging_through_5000_tasks(sf: Salesforce, emulator: EmulatorProcess) -> None:
    created = create_many(sf, [{"Subject": f"task {n:04d}"} for n in range(5000)])
    first = sf.query("SELECT Id, Subject FROM Task ORDER BY Subject")
    assert first["totalSize"] == 5000 and first["done"] is False
    assert len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    everything = sf.query_all("SELECT Id, Subject FROM Task ORDER BY Subject")
    assert [r["Id"] for r in everything["records"]] == created
    emulator.admin.clear_stats()
    pages = list(
        sf.query_all_iter("SELECT Id FROM Task", headers={"Sforce-Query-Options": "batchSize=500"})
    )
    assert len(pages) == 5000
    calls = emulator.admin.stats()["by_resource"]
    assert calls["query"] == {"GET": 1} and calls["query/{locator}"] == {"GET": 9}


def test_stale_query_locators_are_rejected(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query_more("01g5E0000000000000-2000")
    assert raised.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
