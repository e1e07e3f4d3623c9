"""Reminder tasks through the JSON API: fields, errors, versions, tombstones, idempotency."""

from __future__ import annotations

import concurrent.futures
import uuid
from datetime import date, timedelta

import pytest
import requests

from schemas.task_change import DETAILS_MAX_LENGTH, NAME_MAX_LENGTH
from tests.support.salesconnect import SalesConnectClient, SalesConnectError, UserJson

DUE = date(2026, 11, 23)


def feed_for(client: SalesConnectClient, user_id: str, after: int) -> list[dict[str, object]]:
    return [dict(c) for c in client.all_changes(after) if c["user_id"] == user_id]


def test_create_takes_defaults_and_answers_201_with_etag(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    response = salesconnect.request(
        "POST",
        f"/api/users/{salesconnect_user['id']}/tasks",
        json_body={"name": "Call Dana", "due_date": "2026-11-23"},
    )
    assert response.status_code == 201
    task = response.json()
    assert task["id"].startswith("tsk_")
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/api/tasks/{task['id']}"
    assert {k: task[k] for k in ("status", "priority", "details", "due_date", "version")} == {
        "status": "open",
        "priority": "normal",
        "details": "",
        "due_date": "2026-11-23",
        "version": 1,
    }
    assert task["created_at"] == task["updated_at"]
    assert task["created_at"].endswith("Z") and len(task["created_at"]) == 24
    assert task["salesforce_task_id"] is None and task["deleted_at"] is None
    fetched = salesconnect.request("GET", f"/api/tasks/{task['id']}")
    assert fetched.json() == task
    assert fetched.headers["ETag"] == '"1"'


def test_a_null_due_date_means_no_due_date_but_the_key_is_required(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    task = salesconnect.create_task(salesconnect_user["id"], "Someday", None)
    assert task["due_date"] is None
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request(
            "POST", f"/api/users/{salesconnect_user['id']}/tasks", json_body={"name": "No key"}
        )
    assert caught.value.fields == {"due_date": ["Missing data for required field."]}


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"name": ""}, "name", "Length must be between 1 and 1000"),
        ({"name": "x" * (NAME_MAX_LENGTH + 1)}, "name", "Length must be between 1 and 1000"),
        ({"name": " \t "}, "name", "Must not be blank."),
        ({"name": "a\x00b"}, "name", "NUL"),
        ({"due_date": "2026-02-30"}, "due_date", "calendar date"),
        ({"due_date": "20261122"}, "due_date", "calendar date"),
        ({"due_date": 20261122}, "due_date", "calendar date"),
        ({"status": "in_progress"}, "status", "Must be one of: open, completed."),
        ({"priority": "low"}, "priority", "Must be one of: normal, high."),
        ({"details": "x" * (DETAILS_MAX_LENGTH + 1)}, "details", "Longer than maximum length"),
        ({"salesforce_task_id": "00T000000000001AAA"}, "salesforce_task_id", "Read-only"),
        ({"version": 7}, "version", "Unknown field."),
    ],
)
def test_bad_task_fields_are_named_and_nothing_is_written(
    salesconnect: SalesConnectClient,
    salesconnect_user: UserJson,
    fields: dict[str, object],
    field: str,
    rule: str,
) -> None:
    head = salesconnect.head_seq()
    body = {"name": "Valid name", "due_date": "2026-11-23", **fields}
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request("POST", f"/api/users/{salesconnect_user['id']}/tasks", json_body=body)
    assert caught.value.status == 400
    assert caught.value.code == "validation_failed"
    assert rule in " ".join(caught.value.fields[field]), caught.value.fields
    assert field in caught.value.message
    assert salesconnect.list_tasks(salesconnect_user["id"], include_deleted="true") == []
    assert feed_for(salesconnect, salesconnect_user["id"], head) == []


def test_the_longest_allowed_values_are_kept_exactly(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    name = "é" * (NAME_MAX_LENGTH - 1) + "😀"
    details = "😀" * DETAILS_MAX_LENGTH
    task = salesconnect.create_task(salesconnect_user["id"], name, DUE, details=details)
    fetched = salesconnect.get_task(task["id"])
    assert fetched["name"] == name
    assert fetched["details"] == details


def test_unpaired_surrogates_are_refused(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    raw = b'{"name": "bad \\ud800 text", "due_date": null}'
    response = requests.post(
        f"{salesconnect.base_url}/api/users/{salesconnect_user['id']}/tasks",
        data=raw,
        headers={**salesconnect.auth_headers(), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "surrogate" in " ".join(response.json()["error"]["fields"]["name"])


def post_raw(
    client: SalesConnectClient, path: str, data: bytes, content_type: str | None
) -> requests.Response:
    headers = client.auth_headers()
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(client.base_url + path, data=data, headers=headers, timeout=30)


def test_body_errors_have_their_own_statuses(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    path = f"/api/users/{salesconnect_user['id']}/tasks"
    valid = b'{"name": "x", "due_date": null}'
    assert post_raw(salesconnect, path, valid, "text/plain").status_code == 415
    assert post_raw(salesconnect, path, valid, None).status_code == 415
    assert post_raw(salesconnect, path, b"name=x", "application/x-www-form-urlencoded").json()[
        "error"
    ]["code"] == ("unsupported_media_type")
    not_json = post_raw(salesconnect, path, b"{name: x}", "application/json")
    assert not_json.status_code == 400
    assert "body" in not_json.json()["error"]["fields"]
    assert post_raw(salesconnect, path, b"[1, 2]", "application/json").status_code == 400
    assert post_raw(salesconnect, path, b'{"name": NaN}', "application/json").status_code == 400
    assert post_raw(salesconnect, path, b"\xff\xfe", "application/json").status_code == 400
    charset = post_raw(salesconnect, path, valid, "application/json; charset=utf-8")
    assert charset.status_code == 201
    assert len(salesconnect.list_tasks(salesconnect_user["id"])) == 1


def test_oversize_bodies_are_413_whether_declared_or_streamed(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    path = f"/api/users/{salesconnect_user['id']}/tasks"
    huge = b'{"name": "x", "due_date": null, "details": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    declared = post_raw(salesconnect, path, huge, "application/json")
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"

    def chunks() -> object:
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    streamed = requests.post(
        salesconnect.base_url + path,
        data=chunks(),
        headers={**salesconnect.auth_headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert streamed.status_code == 413
    assert salesconnect.list_tasks(salesconnect_user["id"]) == []


def test_patch_changes_only_what_differs_and_raises_the_version(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    head = salesconnect.head_seq()
    task = salesconnect.create_task(salesconnect_user["id"], "Call Dana", DUE)
    same = salesconnect.update_task(task["id"], name="Call Dana", priority="normal")
    assert same == task
    updated = salesconnect.update_task(task["id"], priority="high", due_date=None)
    assert updated["version"] == 2
    assert (updated["priority"], updated["due_date"], updated["name"]) == (
        "high",
        None,
        "Call Dana",
    )
    assert updated["updated_at"] > task["updated_at"]
    assert updated["created_at"] == task["created_at"]
    completed = salesconnect.update_task(task["id"], status="completed")
    assert completed["version"] == 3
    entries = feed_for(salesconnect, salesconnect_user["id"], head)
    assert [e["op"] for e in entries] == ["task_created", "task_updated", "task_updated"]
    assert entries[1]["changed"] == {"priority": "high", "due_date": None}
    assert entries[2]["changed"] == {"status": "completed"}
    assert [e["version"] for e in entries] == [1, 2, 3]
    assert [e["occurred_at"] for e in entries] == [
        task["updated_at"],
        updated["updated_at"],
        completed["updated_at"],
    ]


def test_if_match_guards_against_stale_versions(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    task = salesconnect.create_task(salesconnect_user["id"], "Call Dana", DUE)
    salesconnect.update_task(task["id"], if_match=1, details="v2")
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.update_task(task["id"], if_match=1, details="stale write")
    assert caught.value.status == 412
    assert caught.value.code == "version_mismatch"
    assert caught.value.error["current_version"] == 2
    assert caught.value.response.headers["ETag"] == '"2"'
    assert salesconnect.get_task(task["id"])["details"] == "v2"
    assert salesconnect.update_task(task["id"], if_match='W/"2"', details="v3")["version"] == 3
    assert salesconnect.update_task(task["id"], if_match='"1", "3"', details="v4")["version"] == 4
    assert salesconnect.update_task(task["id"], if_match="*", details="v5")["version"] == 5
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.update_task(task["id"], if_match="garbage", details="never")
    assert caught.value.status == 412
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.delete_task(task["id"], if_match=4)
    assert caught.value.status == 412
    assert salesconnect.get_task(task["id"])["deleted_at"] is None


def test_delete_leaves_a_tombstone_and_restore_brings_it_back(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    head = salesconnect.head_seq()
    task = salesconnect.create_task(salesconnect_user["id"], "Call Dana", DUE, priority="high")
    response = salesconnect.request("DELETE", f"/api/tasks/{task['id']}")
    assert response.status_code == 204
    assert response.headers["ETag"] == '"2"'
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.get_task(task["id"])
    assert (caught.value.status, caught.value.code) == (404, "task_deleted")
    tombstone = salesconnect.get_task(task["id"], include_deleted=True)
    assert tombstone["deleted_at"] == tombstone["updated_at"]
    assert tombstone["version"] == 2
    salesconnect.delete_task(task["id"])  # again: nothing changes
    assert salesconnect.get_task(task["id"], include_deleted=True) == tombstone
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.update_task(task["id"], name="Too late")
    assert (caught.value.status, caught.value.code) == (409, "task_deleted")
    assert salesconnect.list_tasks(salesconnect_user["id"]) == []
    assert [
        t["id"] for t in salesconnect.list_tasks(salesconnect_user["id"], include_deleted="true")
    ] == [task["id"]]

    restored = salesconnect.restore_task(task["id"], if_match=2)
    assert restored["deleted_at"] is None and restored["version"] == 3
    assert salesconnect.restore_task(task["id"]) == restored  # live already: no change
    entries = feed_for(salesconnect, salesconnect_user["id"], head)
    assert [e["op"] for e in entries] == ["task_created", "task_deleted", "task_restored"]
    assert entries[1]["changed"] == {}
    assert entries[2]["changed"] == {
        "name": "Call Dana",
        "status": "open",
        "priority": "high",
        "due_date": "2026-11-23",
        "details": "",
    }


def test_unknown_tasks_are_404(salesconnect: SalesConnectClient) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        with pytest.raises(SalesConnectError) as caught:
            salesconnect.request(method, "/api/tasks/tsk_nothing", json_body={})
        assert (caught.value.status, caught.value.code) == (404, "task_not_found")
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.create_task("usr_nobody", "x", DUE)
    assert (caught.value.status, caught.value.code) == (404, "user_not_found")


def test_list_filters_by_due_range_status_and_pages_by_id(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    user_id = salesconnect_user["id"]
    made = [
        salesconnect.create_task(user_id, f"task {offset}", DUE + timedelta(days=offset))
        for offset in range(5)
    ]
    salesconnect.create_task(user_id, "undated", None)
    salesconnect.update_task(made[1]["id"], status="completed")
    in_range = salesconnect.list_tasks(
        user_id, due_from=str(DUE + timedelta(days=1)), due_to=str(DUE + timedelta(days=3))
    )
    assert [t["name"] for t in in_range] == ["task 1", "task 2", "task 3"]
    done = salesconnect.list_tasks(user_id, status="completed")
    assert [t["id"] for t in done] == [made[1]["id"]]
    first = salesconnect.request("GET", f"/api/users/{user_id}/tasks", params={"limit": 4}).json()
    second = salesconnect.request(
        "GET", f"/api/users/{user_id}/tasks", params={"limit": 4, "after": first["next_after"]}
    ).json()
    assert len(first["tasks"]) == 4 and len(second["tasks"]) == 2
    assert second["next_after"] is None
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.list_tasks(user_id, due_from="2026-11-30", due_to="2026-11-01")
    assert "due_to" in caught.value.fields
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.list_tasks(user_id, limit=0)
    assert "limit" in caught.value.fields


def test_a_retried_create_with_the_same_key_returns_the_first_task(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    head = salesconnect.head_seq()
    key = f"create-{uuid.uuid4()}"
    path = f"/api/users/{salesconnect_user['id']}/tasks"
    body = {"name": "Call Dana", "due_date": "2026-11-23"}
    first = salesconnect.request("POST", path, json_body=body, idempotency_key=key)
    again = salesconnect.request("POST", path, json_body=body, idempotency_key=key)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(salesconnect.list_tasks(salesconnect_user["id"])) == 1
    assert len(feed_for(salesconnect, salesconnect_user["id"], head)) == 1

    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request("POST", path, json_body={**body, "name": "Other"}, idempotency_key=key)
    assert (caught.value.status, caught.value.code) == (422, "idempotency_key_reused")
    assert "Idempotency-Key" in caught.value.fields


def test_retried_patch_and_delete_replay_their_first_answer(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    task = salesconnect.create_task(salesconnect_user["id"], "Call Dana", DUE)
    key = f"patch-{uuid.uuid4()}"
    first = salesconnect.update_task(task["id"], idempotency_key=key, status="completed")
    salesconnect.update_task(task["id"], status="open")
    replayed = salesconnect.update_task(task["id"], idempotency_key=key, status="completed")
    assert replayed == first
    assert salesconnect.get_task(task["id"])["status"] == "open"

    delete_key = f"delete-{uuid.uuid4()}"
    salesconnect.delete_task(task["id"], idempotency_key=delete_key)
    salesconnect.restore_task(task["id"])
    salesconnect.delete_task(task["id"], idempotency_key=delete_key)
    assert salesconnect.get_task(task["id"])["deleted_at"] is None


def test_an_error_is_not_remembered_under_its_key(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    task = salesconnect.create_task(salesconnect_user["id"], "Call Dana", DUE)
    salesconnect.update_task(task["id"], details="moved on")
    key = f"stale-{uuid.uuid4()}"
    with pytest.raises(SalesConnectError):
        salesconnect.update_task(task["id"], if_match=1, idempotency_key=key, details="x")
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.update_task(task["id"], if_match=1, idempotency_key=key, details="x")
    assert caught.value.status == 412


def test_concurrent_twins_with_one_key_create_one_task(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    key = f"twin-{uuid.uuid4()}"
    path = f"/api/users/{salesconnect_user['id']}/tasks"
    body = {"name": "Call Dana", "due_date": "2026-11-23"}

    def send(_: int) -> tuple[int, str]:
        response = requests.post(
            salesconnect.base_url + path,
            json=body,
            headers={**salesconnect.auth_headers(), "Idempotency-Key": key},
            timeout=30,
        )
        return response.status_code, response.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert {status for status, _ in answers} == {201}
    assert len({task_id for _, task_id in answers}) == 1
    assert len(salesconnect.list_tasks(salesconnect_user["id"])) == 1


def test_bad_idempotency_keys_and_origins_are_refused(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    path = f"/api/users/{salesconnect_user['id']}/tasks"
    body = {"name": "Call Dana", "due_date": None}
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request("POST", path, json_body=body, idempotency_key="x" * 256)
    assert "Idempotency-Key" in caught.value.fields
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request("POST", path, json_body=body, headers={"X-Sync-Origin": "mars"})
    assert "X-Sync-Origin" in caught.value.fields
    assert salesconnect.list_tasks(salesconnect_user["id"]) == []


def test_stamps_rise_strictly_even_within_one_millisecond(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    task = salesconnect.create_task(salesconnect_user["id"], "Call Dana", DUE)
    stamps = [task["updated_at"]]
    for index in range(15):
        stamps.append(salesconnect.update_task(task["id"], details=str(index))["updated_at"])
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
