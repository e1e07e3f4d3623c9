"""The whole-system harness (tests/support/system.py) itself.

`test_the_two_systems_start_without_the_bridge_and_verify_sees_them` runs with whatever this
build has; the others need every command of the system (ingress, both producers, both workers).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.system import (
    ALL_BRIDGE_COMPONENTS,
    RunningSystem,
    SystemOptions,
    WriteCounts,
)
from tests.support.waiting import wait_for

StartSystem = Callable[..., RunningSystem]


def test_options_name_unknown_components() -> None:
    with pytest.raises(ValueError, match=r"components: unknown \['poller'\]"):
        SystemOptions(components=frozenset({"poller"}))


def test_write_counts_subtract_field_by_field() -> None:
    later = WriteCounts(5, 9, 2, 4, 3, 2)
    earlier = WriteCounts(1, 2, 2, 1, 3, 1)
    assert later - earlier == WriteCounts(4, 7, 0, 3, 0, 1)


def test_the_two_systems_start_without_the_bridge_and_verify_sees_them(
    system_factory: StartSystem,
) -> None:
    system = system_factory(components=frozenset())
    user = system.create_synced_user("Harnessed")
    assert system.salesconnect.settings(user.user_id)["task_sync"] == "on"
    before = system.counts()

    task = system.salesconnect.create_task(user.user_id, "Only in Sales Connect", "2026-12-01")
    made = user.salesforce().Task.create(
        {"Subject": "Only in Salesforce", "OwnerId": user.salesforce_user_id}
    )

    outcome = system.verify(user.user_id)
    assert outcome.exit_code == 1
    assert outcome.kinds() == ["missing_in_salesconnect", "missing_in_salesforce"]
    counted = system.counts() - before
    assert counted.salesconnect_changes_by_users == 1
    assert counted.salesforce_records_by_others == 1
    assert counted.salesforce_records_by_bridge == 0
    assert system.salesforce_writes("user") == {"create": 1}
    changes = system.salesconnect_changes(user_id=user.user_id, origin="user")
    assert [(c["op"], c["task_id"]) for c in changes] == [
        ("sync_enabled", None),
        ("task_created", task["id"]),
    ]

    url = system.salesconnect_url
    system.restart("salesconnect", kill=True)
    system.restart("emulator", kill=True)
    assert system.salesconnect_url == url
    assert system.salesconnect.get_task(task["id"])["name"] == "Only in Sales Connect"
    assert user.salesforce().Task.get(made["id"])["Subject"] == "Only in Salesforce"
    with pytest.raises(KeyError, match="no running component 'to-salesforce'"):
        system.kill("to-salesforce")


# -- these need every command of the system ----------------------------------------------------


def test_the_whole_system_syncs_both_ways_with_one_write_each(system: RunningSystem) -> None:
    assert set(system.bridge) == ALL_BRIDGE_COMPONENTS
    notifications = system.admin.notifications()
    assert notifications["ingress_url"] == system.component("ingress").url
    user = system.create_synced_user("End to end")
    before = system.counts()

    task = system.salesconnect.create_task(user.user_id, "From Sales Connect", "2026-12-01")
    made = user.salesforce().Task.create(
        {"Subject": "From Salesforce", "OwnerId": user.salesforce_user_id}
    )

    system.wait_until_consistent(user.user_id, strict_subjects=True)
    counted = system.counts() - before
    assert counted.salesforce_records_by_bridge == 1  # the push; nothing echoed back
    assert counted.salesconnect_changes_by_bridge == 1  # the import
    assert counted.salesconnect_links_by_bridge <= 1  # at most the pushed task's link
    assert counted.salesconnect_changes_by_users == 1
    linked = system.salesconnect.list_tasks(user.user_id, salesforce_task_id=made["id"])
    assert [t["name"] for t in linked] == ["From Salesforce"]
    pushed = user.salesforce().query(
        f"SELECT Subject FROM Task WHERE Sales_Connect_Id__c = '{task['id']}'"
    )
    assert [r["Subject"] for r in pushed["records"]] == ["From Sales Connect"]


def test_a_killed_worker_restarts_and_nothing_is_lost(system_factory: StartSystem) -> None:
    system = system_factory()
    user = system.create_synced_user("Crash")
    system.kill("to-salesforce")
    names = [f"Written while the worker was down {n}" for n in range(5)]
    for name in names:
        system.salesconnect.create_task(user.user_id, name, "2026-12-01")

    system.start_component("to-salesforce")

    system.wait_until_consistent(user.user_id)
    subjects = user.salesforce().query(
        f"SELECT Subject FROM Task WHERE OwnerId = '{user.salesforce_user_id}'"
    )
    assert sorted(r["Subject"] for r in subjects["records"]) == sorted(names)


def test_without_the_poller_and_with_every_notification_dropped_salesforce_changes_wait(
    system_factory: StartSystem,
) -> None:
    system = system_factory(
        components=ALL_BRIDGE_COMPONENTS - {"salesforce-poller"}, notification_drop_share=1.0
    )
    user = system.create_synced_user("No notifications")
    made = user.salesforce().Task.create({"Subject": "Stuck", "OwnerId": user.salesforce_user_id})
    task = system.salesconnect.create_task(user.user_id, "Still flows", "2026-12-01")

    def pushed() -> bool:
        query = f"SELECT Id FROM Task WHERE Sales_Connect_Id__c = '{task['id']}'"
        return bool(user.salesforce().query(query)["totalSize"])

    wait_for(pushed, timeout=30, what="the Sales Connect task to reach Salesforce")
    counters = system.admin.notifications()
    assert counters["notifications_dropped"] >= 1
    assert counters["notifications_sent"] == 0
    outcome = system.verify(user.user_id)
    assert outcome.kinds() == ["missing_in_salesconnect"]
    assert outcome.differences[0]["salesforce_task_ids"] == [made["id"]]
