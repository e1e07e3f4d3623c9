"""The pages' forms without a browser: sign-in, CSRF tokens, redirects, errors, 403s and 404s."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from salesconnect.app import ServiceConfig, create_app
from tests.support.salesconnect import TEST_SERVICE_TOKEN

PASSWORD = "pages-test-password"
CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app in this process; API calls carry the service token, pages use the cookie."""
    config = ServiceConfig(
        database_url=f"sqlite:///{tmp_path / 'pages.sqlite3'}",
        salesforce_record_url="https://example.my.salesforce.com/{id}",
        service_tokens=(TEST_SERVICE_TOKEN,),
    )
    headers = {"Authorization": f"Bearer {TEST_SERVICE_TOKEN}"}
    with TestClient(create_app(config), follow_redirects=False, headers=headers) as test_client:
        yield test_client


def make_user(client: TestClient, time_zone: str = "UTC") -> str:
    response = client.post(
        "/api/users",
        json={
            "email": f"{time_zone.replace('/', '.')}@example.com",
            "name": "P",
            "time_zone": time_zone,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 201
    user_id: str = response.json()["id"]
    return user_id


def sign_in(client: TestClient, user_id: str) -> str:
    """Sign in as the user; the session's CSRF token, as the pages' forms carry it."""
    email = client.get(f"/api/users/{user_id}").json()["email"]
    form_token = CSRF_INPUT.findall(client.get("/sign-in").text)[0]
    signed_in = client.post(
        "/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": form_token}
    )
    assert signed_in.status_code == 303, signed_in.text
    page = client.get(f"/users/{user_id}/command-center")
    assert page.status_code == 200
    token: str = CSRF_INPUT.findall(page.text)[0]
    return token


@pytest.fixture
def user_id(client: TestClient) -> str:
    return make_user(client)


@pytest.fixture
def csrf(client: TestClient, user_id: str) -> str:
    return sign_in(client, user_id)


def test_every_form_carries_the_sessions_token(client: TestClient, user_id: str, csrf: str) -> None:
    today = client.get(f"/api/users/{user_id}/command-center").json()["today"]
    task = client.post(f"/api/users/{user_id}/tasks", json={"name": "x", "due_date": today}).json()
    for path in (f"/users/{user_id}/command-center", f"/users/{user_id}/settings"):
        html = client.get(path).text
        forms = re.findall(r"<form\b.*?</form>", html, re.DOTALL)
        assert len(forms) >= 2, path  # the page's own, and Sign out
        for form in forms:
            assert 'method="post"' in form
            assert f'<input type="hidden" name="csrf_token" value="{csrf}">' in form, form
    assert task["id"] in client.get(f"/users/{user_id}/command-center").text


def test_a_form_without_the_sessions_token_writes_nothing(
    client: TestClient, user_id: str, csrf: str
) -> None:
    head = client.get("/api/changes", params={"after": 0}).json()["head_seq"]
    for sent in ({}, {"csrf_token": ""}, {"csrf_token": csrf[:-1] + "x"}, {"csrf_token": "1" * 43}):
        response = client.post(
            f"/users/{user_id}/tasks", data={"name": "x", "due_date": "2026-11-23", **sent}
        )
        assert response.status_code == 403
        assert "reload the page" in response.text
        assert response.headers["content-type"].startswith("text/html")
    for path in (f"/users/{user_id}/settings", "/sign-out"):
        assert client.post(path, data={"task_sync": "on"}).status_code == 403
    assert client.get("/api/changes", params={"after": 0}).json()["head_seq"] == head
    assert client.get(f"/users/{user_id}/settings").status_code == 200, "still signed in"


def test_a_good_form_redirects_and_a_bad_one_shows_its_errors(
    client: TestClient, user_id: str, csrf: str
) -> None:
    today = client.get(f"/api/users/{user_id}/command-center").json()["today"]
    created = client.post(
        f"/users/{user_id}/tasks",
        data={"csrf_token": csrf, "name": "Call", "due_date": today, "priority": "high"},
    )
    assert created.status_code == 303
    assert created.headers["location"] == f"/users/{user_id}/command-center?notice=created"
    [task] = client.get(f"/api/users/{user_id}/tasks").json()["tasks"]
    assert (task["name"], task["priority"], task["due_date"]) == ("Call", "high", today)
    [entry] = [c for c in client.get("/api/changes").json()["changes"] if c["task_id"]]
    assert (entry["origin"], entry["actor"]) == ("user", user_id)

    bad = client.post(
        f"/users/{user_id}/tasks/{task['id']}",
        data={"csrf_token": csrf, "name": "Call", "due_date": "2026-02-30"},
    )
    assert bad.status_code == 400
    assert "Must be a calendar date" in bad.text
    assert re.search(r'<details class="edit" open>', bad.text)
    assert client.get(f"/api/tasks/{task['id']}").json()["version"] == 1


def test_synced_tasks_link_to_salesforce(client: TestClient, user_id: str, csrf: str) -> None:
    today = client.get(f"/api/users/{user_id}/command-center").json()["today"]
    client.post(
        f"/api/users/{user_id}/tasks",
        json={"name": "Imported", "due_date": today, "salesforce_task_id": "00T000000000001AAA"},
        headers={"X-Sync-Origin": "salesforce"},
    )
    html = client.get(f"/users/{user_id}/command-center").text
    assert 'href="https://example.my.salesforce.com/00T000000000001AAA"' in html


def test_unknown_tasks_are_404_and_other_users_pages_403(
    client: TestClient, user_id: str, csrf: str
) -> None:
    response = client.post(
        f"/users/{user_id}/tasks/tsk_nothing/complete", data={"csrf_token": csrf}
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No " in response.text
    other = make_user(client, "Europe/Berlin")
    for refused in (
        client.get(f"/users/{other}/command-center"),
        client.get(f"/users/{other}/settings"),
        client.get("/users/usr_nobody/settings"),
        client.post(f"/users/{other}/settings", data={"csrf_token": csrf, "task_sync": "on"}),
        client.post(
            f"/users/{other}/tasks", data={"csrf_token": csrf, "name": "x", "due_date": ""}
        ),
    ):
        assert refused.status_code == 403
        assert "another user" in refused.text
    assert client.get(f"/api/users/{other}/settings").json()["task_sync"] == "off"
    assert client.get("/nowhere").status_code == 404


def test_a_task_of_another_user_cannot_be_changed_through_this_users_page(
    client: TestClient,
) -> None:
    owner, other = make_user(client, "UTC"), make_user(client, "Europe/Berlin")
    task = client.post(f"/api/users/{owner}/tasks", json={"name": "Mine", "due_date": None}).json()
    csrf = sign_in(client, other)
    response = client.post(f"/users/{other}/tasks/{task['id']}/delete", data={"csrf_token": csrf})
    assert response.status_code == 404
    assert client.get(f"/api/tasks/{task['id']}").status_code == 200


def test_settings_form_saves_and_refuses_a_blank_template(
    client: TestClient, user_id: str, csrf: str
) -> None:
    saved = client.post(
        f"/users/{user_id}/settings",
        data={
            "csrf_token": csrf,
            "task_sync": "on",
            "activity_subject_template": "{{activity_subject}}",
        },
    )
    assert saved.status_code == 303
    assert saved.headers["location"].endswith("notice=sync-on")
    bad = client.post(
        f"/users/{user_id}/settings",
        data={"csrf_token": csrf, "task_sync": "off", "activity_subject_template": " "},
    )
    assert bad.status_code == 400
    assert "Must not be blank." in bad.text
    assert client.get(f"/api/users/{user_id}/settings").json()["task_sync"] == "on"


def test_pages_cannot_be_framed_or_cached(client: TestClient, user_id: str) -> None:
    pages = [client.get("/sign-in")]
    sign_in(client, user_id)
    pages += [client.get(f"/users/{user_id}/{page}") for page in ("command-center", "settings")]
    for page in pages:
        assert page.status_code == 200
        headers = page.headers
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["cache-control"] == "no-store"
