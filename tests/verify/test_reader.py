"""`tasksync verify` against a real emulator and Sales Connect service, with divergent data made
by hand (no bridge runs here): it must find exactly what was broken, and nothing else."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from tests.support.rabbitmq import free_port
from tests.support.salesconnect import SalesConnectClient
from tests.support.system import RunningSystem, SyncedUser, SystemOptions, start_system
from workers.up import tasksync_command


@pytest.fixture(scope="module")
def two_systems_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The emulator and Sales Connect with no bridge process: nothing repairs what we break."""
    system = start_system(
        tmp_path_factory.mktemp("verify-reader"), SystemOptions(components=frozenset())
    )
    yield system
    system.stop()


class Hand:
    """Writes as the bridge would make them (and as it should not), for one synced user."""

    def __init__(self, system: RunningSystem, user: SyncedUser) -> None:
        self.system = system
        self.user = user
        self.sc = system.salesconnect
        self.bridge_sc = SalesConnectClient(system.salesconnect_url, origin="salesforce")
        self.integration: Salesforce = system.emulator.salesforce("integration", client="tests")
        self.person: Salesforce = user.salesforce(client="tests")

    def sc_task(self, name: str, **fields: Any) -> str:
        return self.sc.create_task(self.user.user_id, name, "2026-12-01", **fields)["id"]

    def pushed(self, name: str, **sc_fields: Any) -> tuple[str, str]:
        """A Sales Connect task and the Task the bridge makes of it (upsert on its id)."""
        task_id = self.sc_task(name, **sc_fields)
        status = {"open": "Not Started", "completed": "Completed"}[sc_fields.get("status", "open")]
        created = self.integration.Task.create(
            {
                "Subject": name,
                "OwnerId": self.user.salesforce_user_id,
                "ActivityDate": "2026-12-01",
                "Status": status,
                "Sales_Connect_Id__c": task_id,
            }
        )
        return task_id, str(created["id"])

    def imported(self, subject: str) -> tuple[str, str]:
        """A Task made in Salesforce and the Sales Connect task the bridge imports (linked)."""
        sf_id = str(
            self.person.Task.create({"Subject": subject, "OwnerId": self.user.salesforce_user_id})[
                "id"
            ]
        )
        task = self.bridge_sc.create_task(
            self.user.user_id, subject, None, salesforce_task_id=sf_id
        )
        return task["id"], sf_id


def found(outcome_report: dict[str, Any], section: str = "differences") -> set[tuple[Any, ...]]:
    return {
        (
            finding["kind"],
            tuple(finding["salesconnect_task_ids"]),
            tuple(finding["salesforce_task_ids"]),
            finding.get("field"),
        )
        for finding in outcome_report[section]
    }


def test_verify_finds_exactly_the_differences_made_by_hand(
    two_systems_only: RunningSystem,
) -> None:
    system = two_systems_only
    # Before sync is on: a Sales Connect task and an old Salesforce Task, both out of scope.
    user = system.create_synced_user("Divergent", sync=False)
    hand = Hand(system, user)
    hand.sc_task("From before sync was on")
    old = str(hand.person.Task.create({"Subject": "Old", "OwnerId": user.salesforce_user_id})["id"])
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    system.admin.backdate(
        old, CreatedDate=two_days_ago, LastModifiedDate=two_days_ago, SystemModstamp=two_days_ago
    )
    system.salesconnect.update_settings(user.user_id, task_sync="on")

    agreeing = hand.pushed("Agreeing")
    imported = hand.imported("Imported from Salesforce")
    missing_in_sf = hand.sc_task("Never pushed")
    missing_in_sc = str(
        hand.person.Task.create({"Subject": "Never imported", "OwnerId": user.salesforce_user_id})[
            "id"
        ]
    )
    hand.person.Task.create(
        {"Subject": "Logged call", "OwnerId": user.salesforce_user_id, "TaskSubtype": "Call"}
    )
    status_sc, status_sf = hand.pushed("Completed in Salesforce only")
    hand.person.Task.update(status_sf, {"Status": "Completed"})
    details_sc, details_sf = hand.pushed("Details differ", details="Bring the contract")
    in_progress = hand.pushed("In progress in Salesforce")
    hand.person.Task.update(in_progress[1], {"Status": "In Progress", "Priority": "Low"})
    renamed = hand.pushed("Renamed in Salesforce")
    hand.person.Task.update(renamed[1], {"Subject": "A new Subject"})
    deleted_sf_sc, deleted_sf = hand.pushed("Deleted in Salesforce only")
    hand.person.Task.delete(deleted_sf)
    both_sc, both_sf = hand.pushed("Deleted on both sides")
    hand.person.Task.delete(both_sf)
    hand.sc.delete_task(both_sc)
    deleted_sc, deleted_sc_sf = hand.pushed("Deleted in Sales Connect only")
    hand.sc.delete_task(deleted_sc)
    dangling = hand.sc_task("Linked to nothing")
    nowhere = "00T5E00000Zz9y8AAA"
    hand.bridge_sc.update_task(dangling, salesforce_task_id=nowhere)
    extra_id = f"tsk_{uuid.uuid4().hex}"
    extra = str(
        hand.integration.Task.create(
            {
                "Subject": "Extra",
                "OwnerId": user.salesforce_user_id,
                "Sales_Connect_Id__c": extra_id,
            }
        )["id"]
    )
    system.admin.set_external_id(unique=False)  # what a duplicate needs; restored below
    twin_sc, twin_a = hand.pushed("Twice in Salesforce")
    twin_b = str(
        hand.integration.Task.create(
            {
                "Subject": "Twice in Salesforce",
                "OwnerId": user.salesforce_user_id,
                "ActivityDate": "2026-12-01",
                "Sales_Connect_Id__c": twin_sc,
            }
        )["id"]
    )
    try:
        outcome = system.verify(user.user_id)
    finally:
        hand.integration.Task.delete(twin_b)
        system.admin.purge_recycle_bin()
        system.admin.set_external_id(unique=True)

    assert outcome.exit_code == 1, outcome.stderr
    assert found(outcome.report) == {
        ("missing_in_salesforce", (missing_in_sf,), (), None),
        ("missing_in_salesconnect", (), (missing_in_sc,), None),
        ("field_mismatch", (status_sc,), (status_sf,), "status"),
        ("field_mismatch", (details_sc,), (details_sf,), "details"),
        ("deleted_in_salesforce_only", (deleted_sf_sc,), (deleted_sf,), None),
        ("deleted_in_salesconnect_only", (deleted_sc,), (deleted_sc_sf,), None),
        ("link_to_missing_salesforce_task", (dangling,), (nowhere,), None),
        ("extra_in_salesforce", (extra_id,), (extra,), None),
        ("duplicate_in_salesforce", (twin_sc,), tuple(sorted((twin_a, twin_b))), None),
    }
    assert found(outcome.report, "explained") == {
        ("value_not_synced", (in_progress[0],), (in_progress[1],), "status"),
        ("value_not_synced", (in_progress[0],), (in_progress[1],), "priority"),
        ("subject_differs", (renamed[0],), (renamed[1],), "name"),
    }
    [tally] = outcome.report["users"]
    assert tally["salesconnect_tasks_out_of_scope"] == 1
    # the logged call; the old Task is not even read (the query starts at the import window)
    assert tally["salesforce_tasks_out_of_scope"] == 1
    assert old not in json.dumps(outcome.report)
    assert agreeing[0] not in json.dumps(outcome.report)
    assert imported[0] not in json.dumps(outcome.report)


def test_a_consistent_user_passes_and_verify_reads_as_its_own_client(
    two_systems_only: RunningSystem,
) -> None:
    system = two_systems_only
    user = system.create_synced_user("Consistent")
    hand = Hand(system, user)
    hand.pushed("One")
    hand.imported("Two")
    system.admin.clear_stats()

    outcome = system.verify(user.user_id)

    assert outcome.exit_code == 0, outcome.report
    assert outcome.report["users"][0]["pairs_compared"] == 2
    clients = system.salesforce_stats()["by_client"]
    assert "tasksync-verify" in clients
    assert "tasksync" not in clients


def test_without_user_every_synced_user_is_compared(two_systems_only: RunningSystem) -> None:
    system = two_systems_only
    first = system.create_synced_user("First")
    second = system.create_synced_user("Second")
    gap = Hand(system, second).sc_task("Only in Sales Connect")

    everyone = system.verify()
    just_first = system.verify(first.user_id)

    assert everyone.exit_code == 1
    assert ("missing_in_salesforce", (gap,), (), None) in found(everyone.report)
    compared = {user["user_id"] for user in everyone.report["users"]}
    assert {first.user_id, second.user_id} <= compared
    assert just_first.exit_code == 0
    assert [user["user_id"] for user in just_first.report["users"]] == [first.user_id]


def test_a_user_with_sync_off_is_skipped_and_an_unknown_user_is_not_found(
    two_systems_only: RunningSystem,
) -> None:
    system = two_systems_only
    off = system.create_synced_user("Off", sync=False)
    Hand(system, off).sc_task("Not synced")

    skipped = system.verify(off.user_id)
    unknown = system.verify("usr_01doesnotexist0000000000000")

    assert skipped.exit_code == 0
    assert skipped.report["skipped_users"] == [{"user_id": off.user_id, "reason": "sync is off"}]
    assert unknown.exit_code == 4
    assert "no Sales Connect user" in unknown.stderr


def _verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tasksync_command(), "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_unreachable_side_exits_3_and_names_it(two_systems_only: RunningSystem) -> None:
    env = two_systems_only.bridge_environment()
    no_salesconnect = _verify(
        {**env, "TASKSYNC_SALESCONNECT_URL": f"http://127.0.0.1:{free_port()}"}, "--json"
    )
    wrong_password = _verify({**env, "TASKSYNC_SALESFORCE_PASSWORD": "wrong"})

    assert no_salesconnect.returncode == 3
    assert "Sales Connect unreachable" in no_salesconnect.stderr
    assert json.loads(no_salesconnect.stdout)["unreachable"] == "Sales Connect"
    assert wrong_password.returncode == 3
    assert "Salesforce unreachable or refusing" in wrong_password.stderr


def test_the_text_report_lists_each_difference(
    two_systems_only: RunningSystem, tmp_path: Path
) -> None:
    system = two_systems_only
    user = system.create_synced_user("Text")
    gap = Hand(system, user).sc_task("Only here")

    result = _verify(system.bridge_environment(), "--user", user.user_id)

    assert result.returncode == 1
    assert "DIFFERENCES (1):" in result.stdout
    assert f"missing_in_salesforce: Sales Connect task {gap}" in result.stdout


def test_endpoints_file_supplies_the_login(two_systems_only: RunningSystem, tmp_path: Path) -> None:
    system = two_systems_only
    settings = system.bridge_settings()
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "salesforce": {
                    "login_url": settings.salesforce_login_url,
                    "ca_path": settings.salesforce_ca_bundle,
                    "integration_user": {
                        "username": settings.salesforce_username,
                        "password": settings.salesforce_password,
                    },
                    "oauth_client": {
                        "client_id": settings.salesforce_client_id,
                        "client_secret": settings.salesforce_client_secret,
                    },
                },
                "salesconnect": {"url": settings.salesconnect_url},
            }
        )
    )
    user = system.create_synced_user("Endpoints")
    env = {k: v for k, v in system.bridge_environment().items() if not k.startswith("TASKSYNC_")}

    result = _verify(env, "--endpoints", str(endpoints), "--user", user.user_id, "--json")
    unreadable = _verify(env, "--endpoints", str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert unreadable.returncode == 2
