"""The admin API: users, validation rules, statistics, reset, and its errors."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from salesforce_emulator.admin import is_loopback
from tests.support.emulator import EmulatorError, EmulatorProcess


@pytest.fixture
def rep(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("sales_rep", client="sales-connect-ui")


def test_validation_rules_fail_saves_like_salesforce(
    rep: Salesforce, emulator: EmulatorProcess
) -> None:
    rules = emulator.admin.set_validation_rules(
        [
            {
                "name": "No_Secret_Subjects",
                "field": "Subject",
                "matches": "(?i)secret",
                "message": "Subjects may not mention secrets.",
            },
            {
                "name": "Due_Date_Required",
                "field": "ActivityDate",
                "equals": None,
                "message": "Give every task a due date.",
                "at_top": True,
            },
        ]
    )
    assert [rule["name"] for rule in rules] == ["No_Secret_Subjects", "Due_Date_Required"]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        rep.Task.create({"Subject": "Top SECRET plan", "ActivityDate": "2026-12-01"})
    assert raised.value.content == [
        {
            "message": "Subjects may not mention secrets.",
            "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "fields": ["Subject"],
        }
    ]
    with pytest.raises(SalesforceMalformedRequest) as at_top:
        rep.Task.create({"Subject": "fine"})
    assert at_top.value.content[0]["fields"] == []
    task_id = rep.Task.create({"Subject": "fine", "ActivityDate": "2026-12-01"})["id"]
    with pytest.raises(SalesforceMalformedRequest):
        rep.Task.update(task_id, {"ActivityDate": None})
    results = rep.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Task"}, "Id": task_id, "Subject": "a secret"},
                {"attributes": {"type": "Task"}, "Id": task_id, "Priority": "High"},
            ]
        },
    )
    assert results[0]["errors"] == [
        {
            "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "message": "Subjects may not mention secrets.",
            "fields": ["Subject"],
        }
    ]
    assert results[1]["success"] is True
    emulator.admin.set_validation_rules([])
    rep.Task.create({"Subject": "secret, now allowed"})


@pytest.mark.parametrize(
    ("rules", "names"),
    [
        ({"name": "x"}, "body"),
        ([{"name": "Bad Name", "field": "Subject", "equals": "a", "message": "m"}], "name"),
        ([{"name": "R", "field": "Colour", "equals": "a", "message": "m"}], "field"),
        ([{"name": "R", "field": "Subject", "message": "m"}], "exactly one condition"),
        ([{"name": "R", "field": "Subject", "matches": "(", "message": "m"}], "matches"),
        ([{"name": "R", "field": "Subject", "equals": "a", "message": ""}], "message"),
        (
            [{"name": "R", "field": "Subject", "equals": "a", "message": "m", "colour": 1}],
            "unknown",
        ),
    ],
)
def test_bad_validation_rules_are_refused_and_change_nothing(
    emulator: EmulatorProcess, rules: object, names: str
) -> None:
    response = emulator.http_session().put(f"{emulator.admin_url}/validation-rules", json=rules)
    assert response.status_code == 400
    assert names in response.json()["error"]
    assert emulator.admin.validation_rules() == []


def test_stats_count_exactly_the_calls_and_writes_of_each_client(
    rep: Salesforce, emulator: EmulatorProcess
) -> None:
    bridge = emulator.salesforce("integration", client="tasksync")
    emulator.admin.clear_stats()
    task_id = rep.Task.create({"Subject": "from the UI"})["id"]
    bridge.Task.upsert("Sales_Connect_Id__c/sc-1", {"Subject": "from the bridge"})
    bridge.Task.update(task_id, {"Status": "Completed"})
    bridge.query("SELECT Id FROM Task")
    stats = emulator.admin.stats()
    assert stats["total"] == 4
    tasksync = stats["by_client"]["tasksync"]
    assert tasksync["by_resource"] == {
        "query": {"GET": 1},
        "sobjects/Task/Sales_Connect_Id__c/{value}": {"PATCH": 1},
        "sobjects/Task/{id}": {"PATCH": 1},
    }
    assert tasksync["records_written"] == {"create": 1, "update": 1}
    assert stats["by_client"]["sales-connect-ui"]["records_written"] == {"create": 1}
    assert stats["by_user"][emulator.integration_user.username]["total"] == 3
    assert stats["by_method"] == {"GET": 1, "PATCH": 2, "POST": 1}


def test_users_are_listed_and_checked(emulator: EmulatorProcess) -> None:
    roles = {user["role"] for user in emulator.admin.users()}
    assert roles == {"integration", "sales_rep"}
    emulator.admin.create_user("gil@tasksync.example", "Gil-Passw0rd", "Gil Moss")
    with pytest.raises(EmulatorError, match=r"409.*taken"):
        emulator.admin.create_user("GIL@tasksync.example", "Gil-Passw0rd", "Gil Two")
    with pytest.raises(EmulatorError, match=r"400.*username"):
        emulator.admin.create_user("not-an-email", "Passw0rd-long", "No Mail")
    with pytest.raises(EmulatorError, match=r"400.*password"):
        emulator.admin.create_user("hal@tasksync.example", "short", "Hal")
    with pytest.raises(EmulatorError, match="409"):
        emulator.admin.update_user(emulator.integration_user.id, is_active=False)


def test_reset_returns_to_a_fresh_org(emulator: EmulatorProcess) -> None:
    sf = emulator.salesforce()
    sf.Task.create({"Subject": "x"})
    emulator.admin.create_user("ida@tasksync.example", "Ida-Passw0rd", "Ida Bell")
    emulator.admin.set_faults(latency_ms=5)
    emulator.admin.reset()
    assert sf.query("SELECT COUNT() FROM Task")["totalSize"] == 0
    assert len(emulator.admin.users()) == 2
    assert emulator.admin.faults()["latency_ms"] == 0
    assert emulator.admin.stats()["by_resource"] == {"query": {"GET": 1}}


def test_external_ids_are_case_sensitive_as_the_package_deploys_them(
    rep: Salesforce, emulator: EmulatorProcess
) -> None:
    assert emulator.admin.request("GET", "/external-id") == {
        "unique": True,
        "case_sensitive": True,
    }
    rep.Task.upsert("Sales_Connect_Id__c/abc", {"Subject": "lower"})
    rep.Task.upsert("Sales_Connect_Id__c/ABC", {"Subject": "upper"})
    assert rep.query("SELECT COUNT() FROM Task")["totalSize"] == 2
    with pytest.raises(EmulatorError, match="409"):
        emulator.admin.set_external_id(case_sensitive=False)
    described = {f["name"]: f for f in rep.Task.describe()["fields"]}
    assert described["Sales_Connect_Id__c"]["caseSensitive"] is True
    assert described["Sales_Connect_Id__c"]["length"] == 64


def test_unknown_admin_paths_and_methods(emulator: EmulatorProcess) -> None:
    session = emulator.http_session()
    assert session.get(f"{emulator.admin_url}/nothing").status_code == 404
    assert session.delete(f"{emulator.admin_url}/faults").status_code == 405
    assert "GET /_emulator/stats" in session.get(emulator.admin_url).json()["endpoints"]


def test_only_loopback_clients_are_admins() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.5")
    assert not is_loopback("10.0.0.8") and not is_loopback("not an address")
