"""What the bridge relies on: its origin on the feed, Salesforce links, restore, If-Match."""

from __future__ import annotations

import secrets
import string
from datetime import date

import pytest

from tests.support.salesconnect import SalesConnectClient, SalesConnectError, UserJson

DUE = date(2026, 11, 23)


def salesforce_task_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "00T" + "".join(secrets.choice(alphabet) for _ in range(15))


def test_bridge_writes_are_fed_with_origin_salesforce(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    bridge = salesconnect.as_bridge()
    link = salesforce_task_id()
    head = salesconnect.head_seq()
    task = bridge.create_task(salesconnect_user["id"], "Imported", None, salesforce_task_id=link)
    assert task["salesforce_task_id"] == link
    salesconnect.update_task(task["id"], status="completed")
    bridge.update_task(task["id"], priority="high")
    entries = [c for c in salesconnect.all_changes(head) if c["task_id"] == task["id"]]
    assert [(c["op"], c["origin"]) for c in entries] == [
        ("task_created", "salesforce"),
        ("task_updated", "user"),
        ("task_updated", "salesforce"),
    ]
    assert entries[0]["actor"] == "salesforce-bridge"
    assert entries[1]["actor"] == salesconnect_user["id"]
    assert all(c["salesforce_task_id"] == link for c in entries)
    assert all(c["task_created_at"] == task["created_at"] for c in entries)


def test_a_task_is_found_by_its_salesforce_link(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    bridge = salesconnect.as_bridge()
    link = salesforce_task_id()
    task = bridge.create_task(salesconnect_user["id"], "Imported", DUE, salesforce_task_id=link)
    bridge.create_task(
        salesconnect_user["id"], "Other", DUE, salesforce_task_id=salesforce_task_id()
    )
    found = salesconnect.list_tasks(salesconnect_user["id"], salesforce_task_id=link)
    assert [t["id"] for t in found] == [task["id"]]
    bridge.delete_task(task["id"])
    assert salesconnect.list_tasks(salesconnect_user["id"], salesforce_task_id=link) == []
    deleted = salesconnect.list_tasks(
        salesconnect_user["id"], salesforce_task_id=link, include_deleted="true"
    )
    assert [t["id"] for t in deleted] == [task["id"]]


def test_a_salesforce_task_links_to_one_task_only(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    bridge = salesconnect.as_bridge()
    link = salesforce_task_id()
    first = bridge.create_task(salesconnect_user["id"], "Imported", DUE, salesforce_task_id=link)
    with pytest.raises(SalesConnectError) as caught:
        bridge.create_task(salesconnect_user["id"], "Again", DUE, salesforce_task_id=link)
    assert (caught.value.status, caught.value.code) == (409, "salesforce_task_linked")
    assert caught.value.error["task_id"] == first["id"]
    other = bridge.create_task(salesconnect_user["id"], "Other", DUE)
    with pytest.raises(SalesConnectError) as caught:
        bridge.update_task(other["id"], salesforce_task_id=link)
    assert caught.value.status == 409
    assert len(salesconnect.list_tasks(salesconnect_user["id"])) == 2


def test_the_bridge_links_a_pushed_task_and_users_cannot(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    task = salesconnect.create_task(salesconnect_user["id"], "Made here", DUE)
    link = salesforce_task_id()
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.update_task(task["id"], salesforce_task_id=link)
    assert caught.value.status == 400
    assert "Read-only" in caught.value.fields["salesforce_task_id"][0]
    head = salesconnect.head_seq()
    linked = salesconnect.as_bridge().update_task(task["id"], if_match=1, salesforce_task_id=link)
    assert linked["salesforce_task_id"] == link and linked["version"] == 2
    [entry] = [c for c in salesconnect.all_changes(head) if c["task_id"] == task["id"]]
    assert entry["changed"] == {"salesforce_task_id": link}
    assert entry["origin"] == "salesforce"


def test_a_salesforce_undelete_restores_the_task(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    bridge = salesconnect.as_bridge()
    task = bridge.create_task(
        salesconnect_user["id"], "Imported", DUE, salesforce_task_id=salesforce_task_id()
    )
    salesconnect.delete_task(task["id"])
    head = salesconnect.head_seq()
    restored = bridge.restore_task(task["id"])
    assert restored["deleted_at"] is None
    [entry] = salesconnect.all_changes(head)[-1:]
    assert (entry["op"], entry["origin"], entry["task_id"]) == (
        "task_restored",
        "salesforce",
        task["id"],
    )


def test_a_stale_bridge_write_gets_412_and_can_merge(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    bridge = salesconnect.as_bridge()
    task = bridge.create_task(salesconnect_user["id"], "Imported", DUE)
    salesconnect.update_task(task["id"], details="user wrote this")
    with pytest.raises(SalesConnectError) as caught:
        bridge.update_task(task["id"], if_match=task["version"], priority="high")
    assert caught.value.status == 412
    current = bridge.get_task(task["id"])
    merged = bridge.update_task(task["id"], if_match=current["version"], priority="high")
    assert (merged["details"], merged["priority"]) == ("user wrote this", "high")


def test_task_entries_carry_the_sync_setting_at_their_commit(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    head = salesconnect.head_seq()
    task = salesconnect.create_task(salesconnect_user["id"], "Before sync", DUE)
    salesconnect.update_settings(salesconnect_user["id"], task_sync="on")
    salesconnect.update_task(task["id"], details="while on")
    salesconnect.update_settings(salesconnect_user["id"], task_sync="off")
    salesconnect.update_task(task["id"], details="after off")
    entries = [c for c in salesconnect.all_changes(head) if c["user_id"] == salesconnect_user["id"]]
    assert [(c["op"], c["task_sync"]) for c in entries] == [
        ("task_created", "off"),
        ("sync_enabled", "on"),
        ("task_updated", "on"),
        ("sync_disabled", "off"),
        ("task_updated", "off"),
    ]


def test_the_bridge_links_many_tasks_in_one_request(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    user_id = salesconnect_user["id"]
    linked_id, held_id, new_id, other_id, third_id = (salesforce_task_id() for _ in range(5))
    live = salesconnect.create_task(user_id, "live")
    same = salesconnect.as_bridge().create_task(
        user_id, "already linked", salesforce_task_id=linked_id
    )
    gone = salesconnect.create_task(user_id, "gone")
    salesconnect.delete_task(gone["id"])
    holder = salesconnect.as_bridge().create_task(user_id, "holder", salesforce_task_id=held_id)
    head = salesconnect.head_seq()
    body = {
        "links": [
            {"task_id": live["id"], "salesforce_task_id": new_id},
            {"task_id": same["id"], "salesforce_task_id": linked_id},
            {"task_id": gone["id"], "salesforce_task_id": other_id},
            {"task_id": "tsk_missing", "salesforce_task_id": third_id},
            {"task_id": live["id"], "salesforce_task_id": held_id},
        ]
    }
    results = salesconnect.as_bridge().request("PUT", "/api/salesforce-links", json_body=body)
    statuses = [(r["task_id"], r["status"]) for r in results.json()["results"]]
    assert statuses == [
        (live["id"], "linked"),
        (same["id"], "unchanged"),
        (gone["id"], "deleted"),
        ("tsk_missing", "not_found"),
        (live["id"], "conflict"),
    ]
    assert salesconnect.get_task(live["id"])["salesforce_task_id"] == new_id
    assert salesconnect.get_task(holder["id"])["salesforce_task_id"] == held_id
    feed = salesconnect.all_changes(head)
    assert [(c["task_id"], c["origin"]) for c in feed] == [(live["id"], "salesforce")]


def test_links_in_one_request_apply_in_order(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    """An unlink frees a Salesforce Task for a later link in the same request, and a task
    linked twice gets both changes, each its own version and feed entry."""
    user_id = salesconnect_user["id"]
    first_id, second_id = salesforce_task_id(), salesforce_task_id()
    holder = salesconnect.as_bridge().create_task(user_id, "holder", salesforce_task_id=first_id)
    taker = salesconnect.create_task(user_id, "taker")
    head = salesconnect.head_seq()
    body = {
        "links": [
            {"task_id": taker["id"], "salesforce_task_id": first_id},
            {"task_id": holder["id"], "salesforce_task_id": None},
            {"task_id": taker["id"], "salesforce_task_id": first_id},
            {"task_id": holder["id"], "salesforce_task_id": second_id},
        ]
    }
    results = salesconnect.as_bridge().request("PUT", "/api/salesforce-links", json_body=body)
    assert [(r["task_id"], r["status"], r["version"]) for r in results.json()["results"]] == [
        (taker["id"], "conflict", None),
        (holder["id"], "linked", holder["version"] + 1),
        (taker["id"], "linked", taker["version"] + 1),
        (holder["id"], "linked", holder["version"] + 2),
    ]
    assert salesconnect.get_task(taker["id"])["salesforce_task_id"] == first_id
    assert salesconnect.get_task(holder["id"])["version"] == holder["version"] + 2
    feed = salesconnect.all_changes(head)
    assert [(c["task_id"], c["version"], c["salesforce_task_id"]) for c in feed] == [
        (holder["id"], holder["version"] + 1, None),
        (taker["id"], taker["version"] + 1, first_id),
        (holder["id"], holder["version"] + 2, second_id),
    ]
    assert [c["seq"] for c in feed] == list(range(head + 1, head + 4))


def test_only_the_bridge_may_link(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    task = salesconnect.create_task(salesconnect_user["id"], "mine")
    body = {"links": [{"task_id": task["id"], "salesforce_task_id": salesforce_task_id()}]}
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request("PUT", "/api/salesforce-links", json_body=body)
    assert caught.value.status == 400
    assert salesconnect.get_task(task["id"])["salesforce_task_id"] is None
