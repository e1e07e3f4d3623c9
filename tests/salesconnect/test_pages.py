"""The pages' forms without a browser: redirects, errors, 404s and the form-guard hooks."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.testclient import TestClient

from salesconnect.app import ServiceConfig, create_app
from salesconnect.errors import ServiceError


class ForbiddenError(ServiceError):
    status = 403


def guard(_request: Request) -> Mapping[str, str]:
    return {"csrf_token": "token-123"}


def check(_request: Request, form: FormData) -> None:
    if form.get("csrf_token") != "token-123":
        raise ForbiddenError("csrf_failed", "The form is stale; reload the page.")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = ServiceConfig(
        database_url=f"sqlite:///{tmp_path / 'pages.sqlite3'}",
        salesforce_record_url="https://example.my.salesforce.com/{id}",
        form_guard=guard,
        check_form=check,
    )
    with TestClient(create_app(config), follow_redirects=False) as test_client:
        yield test_client


def make_user(client: TestClient, time_zone: str = "UTC") -> str:
    response = client.post(
        "/api/users",
        json={
            "email": f"{time_zone.replace('/', '.')}@example.com",
            "name": "P",
            "time_zone": time_zone,
        },
    )
    assert response.status_code == 201
    user_id: str = response.json()["id"]
    return user_id


def test_every_form_carries_the_guard_fields(client: TestClient) -> None:
    user_id = make_user(client)
    task = client.post(
        f"/api/users/{user_id}/tasks",
        json={
            "name": "x",
            "due_date": client.get(f"/api/users/{user_id}/command-center").json()["today"],
        },
    ).json()
    for path in ("/", f"/users/{user_id}/command-center", f"/users/{user_id}/settings"):
        html = client.get(path).text
        forms = re.findall(r"<form\b.*?</form>", html, re.DOTALL)
        assert forms, path
        for form in forms:
            assert 'method="post"' in form
            assert '<input type="hidden" name="csrf_token" value="token-123">' in form, form
    assert task["id"] in client.get(f"/users/{user_id}/command-center").text


def test_a_form_failing_the_check_writes_nothing(client: TestClient) -> None:
    user_id = make_user(client)
    response = client.post(f"/users/{user_id}/tasks", data={"name": "x", "due_date": "2026-11-23"})
    assert response.status_code == 403
    assert "reload the page" in response.text
    assert client.get(f"/api/users/{user_id}/tasks").json()["tasks"] == []


def test_a_good_form_redirects_and_a_bad_one_shows_its_errors(client: TestClient) -> None:
    user_id = make_user(client)
    today = client.get(f"/api/users/{user_id}/command-center").json()["today"]
    created = client.post(
        f"/users/{user_id}/tasks",
        data={"csrf_token": "token-123", "name": "Call", "due_date": today, "priority": "high"},
    )
    assert created.status_code == 303
    assert created.headers["location"] == f"/users/{user_id}/command-center?notice=created"
    [task] = client.get(f"/api/users/{user_id}/tasks").json()["tasks"]
    assert (task["name"], task["priority"], task["due_date"]) == ("Call", "high", today)

    bad = client.post(
        f"/users/{user_id}/tasks/{task['id']}",
        data={"csrf_token": "token-123", "name": "Call", "due_date": "2026-02-30"},
    )
    assert bad.status_code == 400
    assert "Must be a calendar date" in bad.text
    assert re.search(r'<details class="edit" open>', bad.text)
    assert client.get(f"/api/tasks/{task['id']}").json()["version"] == 1


def test_synced_tasks_link_to_salesforce(client: TestClient) -> None:
    user_id = make_user(client)
    today = client.get(f"/api/users/{user_id}/command-center").json()["today"]
    client.post(
        f"/api/users/{user_id}/tasks",
        json={"name": "Imported", "due_date": today, "salesforce_task_id": "00T000000000001AAA"},
        headers={"X-Sync-Origin": "salesforce"},
    )
    html = client.get(f"/users/{user_id}/command-center").text
    assert 'href="https://example.my.salesforce.com/00T000000000001AAA"' in html


def test_unknown_users_and_tasks_are_404_pages(client: TestClient) -> None:
    user_id = make_user(client)
    for response in (
        client.get("/users/usr_nobody/command-center"),
        client.get("/users/usr_nobody/settings"),
        client.post(
            f"/users/{user_id}/tasks/tsk_nothing/complete", data={"csrf_token": "token-123"}
        ),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "No " in response.text
    assert client.get("/nowhere").status_code == 404


def test_a_task_of_another_user_cannot_be_changed_through_this_users_page(
    client: TestClient,
) -> None:
    owner, other = make_user(client, "UTC"), make_user(client, "Europe/Berlin")
    task = client.post(f"/api/users/{owner}/tasks", json={"name": "Mine", "due_date": None}).json()
    response = client.post(
        f"/users/{other}/tasks/{task['id']}/delete", data={"csrf_token": "token-123"}
    )
    assert response.status_code == 404
    assert client.get(f"/api/tasks/{task['id']}").status_code == 200


def test_creating_a_user_from_the_index(client: TestClient) -> None:
    bad = client.post(
        "/users",
        data={
            "csrf_token": "token-123",
            "name": "Nia",
            "email": "nia@example.com",
            "time_zone": "Moon",
        },
    )
    assert bad.status_code == 400
    assert "IANA time zone" in bad.text
    good = client.post(
        "/users",
        data={
            "csrf_token": "token-123",
            "name": "Nia",
            "email": "nia@example.com",
            "time_zone": "Asia/Tokyo",
        },
    )
    assert good.status_code == 303
    assert good.headers["location"].endswith("/command-center")
    assert "Nia" in client.get("/").text


def test_settings_form_saves_and_refuses_a_blank_template(client: TestClient) -> None:
    user_id = make_user(client)
    saved = client.post(
        f"/users/{user_id}/settings",
        data={
            "csrf_token": "token-123",
            "task_sync": "on",
            "activity_subject_template": "{{activity_subject}}",
        },
    )
    assert saved.status_code == 303
    assert saved.headers["location"].endswith("notice=sync-on")
    bad = client.post(
        f"/users/{user_id}/settings",
        data={"csrf_token": "token-123", "task_sync": "off", "activity_subject_template": " "},
    )
    assert bad.status_code == 400
    assert "Must not be blank." in bad.text
    assert client.get(f"/api/users/{user_id}/settings").json()["task_sync"] == "on"
