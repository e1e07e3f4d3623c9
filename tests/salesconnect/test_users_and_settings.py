"""Users and their settings through the JSON API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from tests.support.salesconnect import SalesConnectClient, SalesConnectError, UserJson


def test_a_new_user_has_an_id_and_sync_off(salesconnect: SalesConnectClient) -> None:
    email = f"ann-{uuid.uuid4().hex[:8]}@example.com"
    response = salesconnect.request(
        "POST",
        "/api/users",
        json_body={"email": email, "name": "Ann Example", "time_zone": "Europe/Berlin"},
    )
    assert response.status_code == 201
    user = response.json()
    assert user["id"].startswith("usr_")
    assert response.headers["Location"] == f"/api/users/{user['id']}"
    assert salesconnect.get_user(user["id"]) == user
    settings = salesconnect.settings(user["id"])
    assert settings["task_sync"] == "off"
    assert settings["activity_subject_template"] == "{{activity_subject}}"
    assert settings["first_sync"] == {
        "state": "idle",
        "error": None,
        "started_at": None,
        "finished_at": None,
    }
    assert settings["last_sync_error"] is None
    assert settings["first_enabled_at"] is None


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"name": "A", "time_zone": "UTC"}, "email", "Missing data"),
        ({"email": "nope", "name": "A", "time_zone": "UTC"}, "email", "email address"),
        ({"email": "a@example.com", "name": "  ", "time_zone": "UTC"}, "name", "blank"),
        ({"email": "a@example.com", "name": "A", "time_zone": "Mars/Base"}, "time_zone", "IANA"),
        ({"email": "a@example.com", "name": "A", "time_zone": "UTC", "x": 1}, "x", "Unknown"),
        (
            {"email": "a@example.com", "name": "A", "time_zone": "UTC", "id": "bad id"},
            "id",
            "Sales Connect id",
        ),
        (
            {"email": "a@example.com", "name": "A", "time_zone": "UTC", "salesforce_user_id": "1"},
            "salesforce_user_id",
            "18-character",
        ),
    ],
)
def test_bad_user_fields_are_named_with_their_rule(
    salesconnect: SalesConnectClient, body: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request("POST", "/api/users", json_body=body)
    assert caught.value.status == 400
    assert caught.value.code == "validation_failed"
    assert rule in " ".join(caught.value.fields[field])


def test_unique_values_conflict_with_a_clear_409(salesconnect: SalesConnectClient) -> None:
    sf_user = uuid.uuid4().hex[:18]
    first = salesconnect.create_user(salesforce_user_id=sf_user)
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.create_user(email=first["email"].upper())
    assert (caught.value.status, caught.value.code) == (409, "email_taken")
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.create_user(salesforce_user_id=sf_user)
    assert (caught.value.status, caught.value.code) == (409, "salesforce_user_taken")
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.create_user(user_id=first["id"])
    assert (caught.value.status, caught.value.code) == (409, "user_exists")


def test_a_chosen_id_is_kept(salesconnect: SalesConnectClient) -> None:
    chosen = f"usr_fixture_{uuid.uuid4().hex[:8]}"
    assert salesconnect.create_user(user_id=chosen)["id"] == chosen


def test_unknown_user_is_404(salesconnect: SalesConnectClient) -> None:
    for path in ("/api/users/usr_nobody", "/api/users/usr_nobody/settings"):
        with pytest.raises(SalesConnectError) as caught:
            salesconnect.request("GET", path)
        assert (caught.value.status, caught.value.code) == (404, "user_not_found")


def test_patch_user_changes_only_what_is_sent(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    sf_user = uuid.uuid4().hex[:18]
    updated = salesconnect.update_user(
        salesconnect_user["id"], time_zone="Pacific/Kiritimati", salesforce_user_id=sf_user
    )
    assert updated["time_zone"] == "Pacific/Kiritimati"
    assert updated["salesforce_user_id"] == sf_user
    assert updated["email"] == salesconnect_user["email"]
    assert updated["updated_at"] > salesconnect_user["updated_at"]


def test_turning_sync_on_and_off_is_fed_with_its_stamps(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    user_id = salesconnect_user["id"]
    head = salesconnect.head_seq()
    on = salesconnect.update_settings(user_id, task_sync="on")
    assert on["task_sync"] == "on"
    assert on["first_enabled_at"] == on["last_enabled_at"] is not None
    assert on["first_sync"]["state"] == "idle"
    salesconnect.update_settings(user_id, task_sync="on")  # no change, no entry
    salesconnect.update_settings(user_id, activity_subject_template="SC: {{activity_subject}}")
    off = salesconnect.update_settings(user_id, task_sync="off")
    again = salesconnect.update_settings(user_id, task_sync="on")
    assert again["first_enabled_at"] == on["first_enabled_at"]
    assert again["last_enabled_at"] > on["last_enabled_at"]
    assert off["activity_subject_template"] == "SC: {{activity_subject}}"

    mine = [c for c in salesconnect.all_changes(head) if c["user_id"] == user_id]
    assert [c["op"] for c in mine] == ["sync_enabled", "sync_disabled", "sync_enabled"]
    assert [c["changed"] for c in mine] == [
        {"task_sync": "on"},
        {"task_sync": "off"},
        {"task_sync": "on"},
    ]
    assert all(c["task_id"] is None and c["origin"] == "user" for c in mine)
    assert mine[0]["first_enabled_at"] == mine[2]["first_enabled_at"] == on["first_enabled_at"]
    assert mine[2]["last_enabled_at"] == again["last_enabled_at"]
    assert mine[0]["actor"] == user_id


def test_users_with_sync_on_are_listed_for_the_poller(salesconnect: SalesConnectClient) -> None:
    sf_user = uuid.uuid4().hex[:18]
    synced = salesconnect.create_user(salesforce_user_id=sf_user)
    unsynced = salesconnect.create_user()
    salesconnect.update_settings(synced["id"], task_sync="on")
    listed: list[dict[str, object]] = []
    after = None
    while True:
        params = {"task_sync": "on", "limit": 2, **({"after": after} if after else {})}
        page = salesconnect.list_users(**params)
        listed.extend(page["users"])
        after = page["next_after"]
        if after is None:
            break
    ids = {u["id"] for u in listed}
    assert synced["id"] in ids
    assert unsynced["id"] not in ids
    entry = next(u for u in listed if u["id"] == synced["id"])
    assert entry["salesforce_user_id"] == sf_user
    assert entry["task_sync"] == "on"
    assert entry["last_enabled_at"] is not None


def test_bridge_reports_first_sync_state_and_errors(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    user_id = salesconnect_user["id"]
    salesconnect.update_settings(user_id, task_sync="on")
    bridge = salesconnect.as_bridge()
    started = "2026-11-22T10:00:00.000Z"
    running = bridge.report_sync_state(
        user_id, {"first_sync": {"state": "running", "started_at": started}}
    )
    assert running["first_sync"] == {
        "state": "running",
        "error": None,
        "started_at": started,
        "finished_at": None,
    }
    failed = bridge.report_sync_state(
        user_id,
        {
            "first_sync": {
                "state": "failed",
                "error": "Salesforce refused the login",
                "started_at": started,
                "finished_at": "2026-11-22T10:00:05.250+00:00",
            },
            "last_sync_error": {
                "message": "Salesforce refused the login",
                "occurred_at": "2026-11-22T10:00:05.250Z",
            },
        },
    )
    assert failed["first_sync"]["finished_at"] == "2026-11-22T10:00:05.250Z"
    assert failed["last_sync_error"] == {
        "message": "Salesforce refused the login",
        "occurred_at": "2026-11-22T10:00:05.250Z",
    }
    cleared = bridge.report_sync_state(user_id, {"last_sync_error": None})
    assert cleared["last_sync_error"] is None
    assert cleared["first_sync"]["state"] == "failed"
    # Turning sync on again makes the first sync due again.
    salesconnect.update_settings(user_id, task_sync="off")
    assert salesconnect.update_settings(user_id, task_sync="on")["first_sync"]["state"] == "idle"


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"first_sync": {"state": "sleeping"}}, "first_sync.state"),
        (
            {"first_sync": {"state": "running", "started_at": "2026-11-22 10:00"}},
            "first_sync.started_at",
        ),
        ({"last_sync_error": {"message": "x"}}, "last_sync_error.occurred_at"),
        ({"first_sync": {"state": "done"}, "extra": True}, "extra"),
    ],
)
def test_bad_sync_state_reports_are_refused(
    salesconnect: SalesConnectClient,
    salesconnect_user: UserJson,
    report: dict[str, object],
    field: str,
) -> None:
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.report_sync_state(salesconnect_user["id"], report)
    assert caught.value.status == 400
    assert field in caught.value.fields
    assert salesconnect.settings(salesconnect_user["id"])["first_sync"]["state"] == "idle"


def test_settings_validation_names_the_field(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.update_settings(
            salesconnect_user["id"], task_sync="sometimes", activity_subject_template=""
        )
    assert caught.value.status == 400
    assert set(caught.value.fields) == {"task_sync", "activity_subject_template"}
    assert salesconnect.settings(salesconnect_user["id"])["task_sync"] == "off"
