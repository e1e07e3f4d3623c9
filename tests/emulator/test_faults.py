"""Faults and limits: every injected failure raises what a real org's failure raises."""

from __future__ import annotations

import time

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from tests.support.emulator import EmulatorError, EmulatorProcess


@pytest.fixture
def sf(emulator: EmulatorProcess) -> Salesforce:
    return emulator.salesforce("sales_rep")


def count(emulator: EmulatorProcess) -> int:
    return int(emulator.salesforce().query("SELECT COUNT() FROM Task")["totalSize"])


def test_every_response_carries_api_usage(sf: Salesforce, emulator: EmulatorProcess) -> None:
    sf.query("SELECT Id FROM Task")
    first = sf.api_usage["api-usage"]
    tasks = sf.Task
    tasks.create({"Subject": "a"})
    second = tasks.api_usage["api-usage"]
    assert second.used == first.used + 1 and second.total == 100_000
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 100_000, "Remaining": 100_000 - second.used - 1}


def test_the_daily_allowance_runs_out(sf: Salesforce, emulator: EmulatorProcess) -> None:
    sf.query("SELECT Id FROM Task")
    used = sf.api_usage["api-usage"].used
    emulator.admin.set_faults(daily_api_limit=used + 2)
    sf.query("SELECT Id FROM Task")
    sf.query("SELECT Id FROM Task")
    with pytest.raises(SalesforceRefusedRequest) as raised:
        sf.Task.create({"Subject": "too many"})
    assert raised.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert emulator.admin.stats()["api_usage"] == {"used": used + 2, "max": used + 2}
    emulator.admin.set_faults(daily_api_limit=used + 10)
    sf.Task.create({"Subject": "after raising the limit"})


def test_server_unavailable_share(sf: Salesforce, emulator: EmulatorProcess) -> None:
    emulator.admin.set_faults(server_unavailable_share=1.0)
    with pytest.raises(SalesforceGeneralError) as raised:
        sf.Task.create({"Subject": "a"})
    assert raised.value.status == 503
    assert raised.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    emulator.admin.set_faults(server_unavailable_share=0.0)
    assert count(emulator) == 0


def test_unable_to_lock_row_hits_writes_only(sf: Salesforce, emulator: EmulatorProcess) -> None:
    task_id = sf.Task.create({"Subject": "a"})["id"]
    emulator.admin.set_faults(unable_to_lock_row_share=1.0)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Task.update(task_id, {"Subject": "b"})
    assert raised.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert task_id in raised.value.content[0]["message"]
    assert sf.Task.get(task_id)["Subject"] == "a"


def test_request_limit_share(sf: Salesforce, emulator: EmulatorProcess) -> None:
    emulator.admin.set_faults(request_limit_share=1.0)
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT Id FROM Task")


def test_dropped_connection_has_no_response_and_no_effect(
    sf: Salesforce, emulator: EmulatorProcess
) -> None:
    emulator.admin.set_faults(drop_connection_share=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.Task.create({"Subject": "lost"})
    emulator.admin.set_faults(drop_connection_share=0.0)
    assert count(emulator) == 0
    assert emulator.admin.stats()["by_status"].get("dropped") == 1


def test_dropped_response_keeps_the_effect(sf: Salesforce, emulator: EmulatorProcess) -> None:
    emulator.admin.set_faults(drop_response_share=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.Task.upsert("Sales_Connect_Id__c/sc-1", {"Subject": "applied"})
    emulator.admin.set_faults(drop_response_share=0.0)
    assert sf.Task.get_by_custom_id("Sales_Connect_Id__c", "sc-1")["Subject"] == "applied"
    assert sf.Task.upsert("Sales_Connect_Id__c/sc-1", {"Subject": "applied"}) == 200


def test_latency_is_added_to_each_call(sf: Salesforce, emulator: EmulatorProcess) -> None:
    emulator.admin.set_faults(latency_ms=150)
    started = time.monotonic()
    sf.query("SELECT Id FROM Task")
    assert time.monotonic() - started >= 0.15


def test_faults_repeat_with_the_same_seed(sf: Salesforce, emulator: EmulatorProcess) -> None:
    def outcomes() -> list[bool]:
        seen = []
        for _ in range(16):
            try:
                sf.query("SELECT Id FROM Task LIMIT 1")
                seen.append(True)
            except SalesforceGeneralError:
                seen.append(False)
        return seen

    emulator.admin.set_faults(server_unavailable_share=0.5, seed=7)
    first = outcomes()
    emulator.admin.set_faults(seed=7)
    assert outcomes() == first
    assert True in first and False in first


@pytest.mark.parametrize(
    "body",
    [
        {"server_unavailable_share": 2},
        {"latency_ms": -1},
        {"colour": "red"},
        {"seed": "x"},
        {"daily_api_limit": True},
    ],
)
def test_bad_fault_settings_are_refused(emulator: EmulatorProcess, body: dict[str, object]) -> None:
    before = emulator.admin.faults()
    with pytest.raises(EmulatorError, match="400"):
        emulator.admin.request("PUT", "faults", body, expect=(200,))
    assert emulator.admin.faults() == before


def test_flags_set_faults_at_start(fresh_emulator: EmulatorProcess) -> None:
    fresh_emulator.args = ("--latency-ms", "5", "--daily-api-limit", "3", "--seed", "11")
    fresh_emulator.start()
    faults = fresh_emulator.admin.faults()
    assert faults["latency_ms"] == 5 and faults["daily_api_limit"] == 3 and faults["seed"] == 11
    sf = fresh_emulator.salesforce()
    for _ in range(3):
        sf.query("SELECT Id FROM Task")
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT Id FROM Task")
