"""Who may call what: tokens, the service credential, users kept to their own data, rotation."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from bridge.salesconnect.client import SalesConnectClient as BridgeClient
from salesconnect.cli import command
from tests.support.salesconnect import (
    SERVICE_TOKEN_VARIABLE,
    PageSession,
    RunningSalesConnect,
    SalesConnectClient,
    SalesConnectError,
    UserJson,
    running_salesconnect,
)
from tests.support.waiting import wait_for

SF_TASK = "00T000000000077AAA"


def status_of(call: object, *args: object, **kwargs: object) -> int:
    assert callable(call)
    try:
        call(*args, **kwargs)
    except SalesConnectError as exc:
        return exc.status
    return 200


@pytest.fixture
def alice(salesconnect: SalesConnectClient) -> UserJson:
    return salesconnect.create_user(name="Alice")


@pytest.fixture
def bob(salesconnect: SalesConnectClient) -> UserJson:
    return salesconnect.create_user(name="Bob")


# -- authentication ------------------------------------------------------------------------------


def test_every_api_call_needs_a_known_token(
    salesconnect: SalesConnectClient, salesconnect_user: UserJson
) -> None:
    user_id = salesconnect_user["id"]
    task = salesconnect.create_task(user_id, "Secret plans", None)
    calls = [
        ("GET", "/api/users"),
        ("POST", "/api/users"),
        ("GET", f"/api/users/{user_id}"),
        ("GET", f"/api/users/{user_id}/tasks"),
        ("GET", f"/api/users/{user_id}/settings"),
        ("GET", f"/api/tasks/{task['id']}"),
        ("DELETE", f"/api/tasks/{task['id']}"),
        ("GET", "/api/changes"),
        ("PUT", "/api/salesforce-links"),
        ("GET", "/api/me"),
    ]
    for credential, challenge_error in (
        ({}, None),
        ({"Authorization": "Bearer not-a-token-anyone-knows"}, "invalid_token"),
        ({"Authorization": "Bearer tok_0000000000000000000000000a." + "x" * 43}, "invalid_token"),
        ({"Authorization": f"Basic {salesconnect.token}"}, "invalid_request"),
        ({"Authorization": "Bearer"}, "invalid_request"),
    ):
        for method, path in calls:
            response = requests.request(
                method, salesconnect.base_url + path, headers=credential, json={}, timeout=10
            )
            assert response.status_code == 401, (method, path, credential)
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="salesconnect"')
            if challenge_error:
                assert f'error="{challenge_error}"' in challenge
            assert response.json()["error"]["code"] == "unauthorized"
            assert "Authorization" in response.json()["error"]["fields"]
    assert salesconnect.get_task(task["id"])["deleted_at"] is None
    for open_path in ("/healthz", "/openapi.json"):
        assert requests.get(salesconnect.base_url + open_path, timeout=10).status_code == 200


def test_the_service_token_is_the_service_and_a_user_token_its_user(
    salesconnect: SalesConnectClient, alice: UserJson
) -> None:
    assert salesconnect.me() == {"kind": "service", "user_id": None, "token_id": None}
    created = salesconnect.create_token(alice["id"], "my script")
    assert created["token"].startswith(created["id"] + ".")
    me = salesconnect.with_token(created["token"]).me()
    assert me == {"kind": "user", "user_id": alice["id"], "token_id": created["id"]}


# -- users kept to their own data ------------------------------------------------------------


def test_a_user_token_reads_and_writes_only_its_own_users_data(
    salesconnect: SalesConnectClient, alice: UserJson, bob: UserJson
) -> None:
    as_alice = salesconnect.as_user(alice["id"])
    mine = as_alice.create_task(alice["id"], "Alice's call", "2026-12-01")
    assert [t["id"] for t in as_alice.list_tasks(alice["id"])] == [mine["id"]]
    as_alice.update_task(mine["id"], details="done by Alice", if_match=1)
    assert as_alice.settings(alice["id"])["user_id"] == alice["id"]
    assert as_alice.update_settings(alice["id"], task_sync="on")["task_sync"] == "on"
    assert as_alice.get_user(alice["id"])["id"] == alice["id"]
    assert as_alice.update_user(alice["id"], name="Alice A.")["name"] == "Alice A."
    assert as_alice.command_center(alice["id"])["user_id"] == alice["id"]

    theirs = salesconnect.create_task(bob["id"], "Bob's call", "2026-12-01")
    deleted = salesconnect.create_task(bob["id"], "Bob's old call", None)
    salesconnect.delete_task(deleted["id"])
    head = salesconnect.head_seq()
    bob_id = bob["id"]
    for call, args, kwargs in (
        (as_alice.get_user, (bob_id,), {}),
        (as_alice.update_user, (bob_id,), {"name": "Mallory"}),
        (as_alice.settings, (bob_id,), {}),
        (as_alice.update_settings, (bob_id,), {"task_sync": "on"}),
        (as_alice.list_tasks, (bob_id,), {}),
        (as_alice.create_task, (bob_id, "Planted", None), {}),
        (as_alice.command_center, (bob_id,), {}),
        (as_alice.list_tokens, (bob_id,), {}),
    ):
        assert status_of(call, *args, **kwargs) == 403, call
    missing = as_alice.request
    for task_id in (theirs["id"], deleted["id"], "tsk_nobodyhasthisid"):
        answers = []
        for method, path, params in (
            ("GET", f"/api/tasks/{task_id}", None),
            ("GET", f"/api/tasks/{task_id}", {"include_deleted": "true"}),
            ("PATCH", f"/api/tasks/{task_id}", None),
            ("DELETE", f"/api/tasks/{task_id}", None),
            ("POST", f"/api/tasks/{task_id}/restore", None),
        ):
            with pytest.raises(SalesConnectError) as caught:
                missing(
                    method,
                    path,
                    params=params,
                    json_body={"name": "x"} if method == "PATCH" else None,
                )
            answers.append((caught.value.status, caught.value.body))
        # Another user's task (live or deleted) answers exactly as one that does not exist.
        assert (
            answers
            == [
                (
                    404,
                    {
                        "error": {
                            "code": "task_not_found",
                            "message": f"No task with id {task_id!r}.",
                            "fields": {},
                        }
                    },
                )
            ]
            * 5
        )
    assert salesconnect.get_task(theirs["id"]) == theirs
    assert salesconnect.head_seq() == head, "a refused request wrote something"
    assert salesconnect.settings(bob_id)["task_sync"] == "off"


def test_a_user_token_may_not_speak_for_the_bridge(
    salesconnect: SalesConnectClient, alice: UserJson
) -> None:
    as_alice = salesconnect.as_user(alice["id"])
    task = as_alice.create_task(alice["id"], "Mine", None)
    head = salesconnect.head_seq()
    for origin in ("salesforce", "user"):
        forged = as_alice.with_token(as_alice.token)
        forged.origin = origin
        with pytest.raises(SalesConnectError) as caught:
            forged.create_task(alice["id"], "Never synced", None)
        assert caught.value.status == 403
        assert "X-Sync-Origin" in caught.value.fields
        assert status_of(forged.update_task, task["id"], name="Echo") == 403
        assert status_of(forged.delete_task, task["id"]) == 403
    refused = {
        "feed": status_of(as_alice.changes),
        "users": status_of(as_alice.list_users),
        "synced users": status_of(as_alice.list_users, task_sync="on"),
        "links": status_of(
            as_alice.request,
            "PUT",
            "/api/salesforce-links",
            json_body={"links": [{"task_id": task["id"], "salesforce_task_id": SF_TASK}]},
        ),
        "sync state": status_of(as_alice.report_sync_state, alice["id"], {"last_sync_error": None}),
        "new user": status_of(as_alice.create_user),
        "new token": status_of(as_alice.create_token, alice["id"]),
        "password": status_of(as_alice.set_password, alice["id"], "a-new-password-1"),
        "salesforce user": status_of(
            as_alice.update_user, alice["id"], salesforce_user_id="005000000000077AAA"
        ),
    }
    assert refused == dict.fromkeys(refused, 403)
    with pytest.raises(SalesConnectError) as caught:
        as_alice.update_task(task["id"], salesforce_task_id=SF_TASK)
    assert caught.value.status == 400
    assert salesconnect.get_task(task["id"])["salesforce_task_id"] is None
    assert salesconnect.head_seq() == head
    as_alice.update_task(task["id"], name="Renamed by Alice")
    [entry] = salesconnect.all_changes(head)
    assert (entry["origin"], entry["actor"]) == ("user", alice["id"])


def test_idempotency_keys_belong_to_their_caller(
    salesconnect: SalesConnectClient, alice: UserJson, bob: UserJson
) -> None:
    as_alice, as_bob = salesconnect.as_user(alice["id"]), salesconnect.as_user(bob["id"])
    first = as_alice.create_task(alice["id"], "Alice's", None, idempotency_key="shared-key")
    # Bob's request with the same key is his own: no replay of Alice's answer, no 422.
    other = as_bob.create_task(bob["id"], "Bob's", None, idempotency_key="shared-key")
    assert other["user_id"] == bob["id"]
    again = as_alice.create_task(alice["id"], "Alice's", None, idempotency_key="shared-key")
    assert again == first
    service = salesconnect.create_task(alice["id"], "Service's", None, idempotency_key="shared-key")
    assert service["id"] not in (first["id"], other["id"])


# -- tokens: shown once, stored hashed, revoked, rotated ---------------------------------------


def test_tokens_are_shown_once_listed_and_revoked_at_once(
    salesconnect: SalesConnectClient, alice: UserJson, bob: UserJson
) -> None:
    created = salesconnect.create_token(alice["id"], "laptop")
    assert set(created) == {"id", "user_id", "name", "created_at", "revoked_at", "token"}
    as_alice = salesconnect.with_token(created["token"])
    listed = as_alice.list_tokens(alice["id"])
    assert listed == [{k: v for k, v in created.items() if k != "token"}]
    assert status_of(as_alice.revoke_token, bob["id"], created["id"]) == 403
    assert status_of(salesconnect.revoke_token, bob["id"], created["id"]) == 404
    assert status_of(salesconnect.revoke_token, alice["id"], "tok_nosuchtoken") == 404

    as_alice.revoke_token(alice["id"], created["id"])  # a user may revoke their own
    with pytest.raises(SalesConnectError) as caught:
        as_alice.me()
    assert caught.value.status == 401
    assert 'error="invalid_token"' in caught.value.response.headers["WWW-Authenticate"]
    salesconnect.revoke_token(alice["id"], created["id"])  # again: nothing changes
    [revoked] = salesconnect.list_tokens(alice["id"])
    assert revoked["revoked_at"] is not None

    with pytest.raises(SalesConnectError) as caught:
        salesconnect.request(
            "POST",
            f"/api/users/{alice['id']}/tokens",
            json_body={"name": "retry"},
            idempotency_key="k",
        )
    assert caught.value.status == 400
    assert "Idempotency-Key" in caught.value.fields
    assert status_of(salesconnect.create_token, "usr_nobody") == 404
    with pytest.raises(SalesConnectError) as caught:
        salesconnect.create_token(alice["id"], " ")
    assert caught.value.fields == {"name": ["Must not be blank."]}


def test_a_users_token_rotates_without_a_failed_request(
    salesconnect: SalesConnectClient, alice: UserJson
) -> None:
    old = salesconnect.create_token(alice["id"], "old")
    current = {"token": old["token"]}
    failures: list[str] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            try:
                salesconnect.with_token(current["token"]).list_tasks(alice["id"])
            except SalesConnectError as exc:
                failures.append(str(exc))

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        new = salesconnect.create_token(alice["id"], "new")
        assert salesconnect.with_token(new["token"]).me()["token_id"] == new["id"]
        current["token"] = new["token"]  # the script moves to the new token...
        salesconnect.with_token(old["token"]).me()  # ...while the old one still works
        salesconnect.revoke_token(alice["id"], old["id"])
        assert status_of(salesconnect.with_token(old["token"]).me) == 401
    finally:
        stop.set()
        caller.join()
    assert failures == []


def test_secrets_are_stored_only_as_hashes(
    salesconnect_service: RunningSalesConnect, salesconnect: SalesConnectClient
) -> None:
    if not salesconnect_service.database_url.startswith("sqlite"):
        pytest.skip("reads the SQLite file")
    password = "correct horse battery staple 77"
    user = salesconnect.request(
        "POST",
        "/api/users",
        json_body={
            "email": "hashes@example.com",
            "name": "H",
            "time_zone": "UTC",
            "password": password,
        },
        idempotency_key="create-with-password",
    ).json()
    assert "password" not in user
    token = salesconnect.create_token(user["id"])["token"]
    salesconnect.set_password(user["id"], password + " again")
    database = Path(salesconnect_service.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as raw:
        dump = "\n".join(raw.iterdump())
    for secret in (password, password + " again", token, token.partition(".")[2]):
        assert secret not in dump
    assert "$argon2id$" in dump


def test_passwords_follow_their_rules(salesconnect: SalesConnectClient, alice: UserJson) -> None:
    for bad in ("short", " " * 20, "x" * 1001):
        with pytest.raises(SalesConnectError) as caught:
            salesconnect.set_password(alice["id"], bad)
        assert caught.value.status == 400
        assert list(caught.value.fields) == ["password"]
    assert status_of(salesconnect.set_password, "usr_nobody", "long enough password") == 404


# -- the service credential: several at once, from a file, rotated without a restart -----------


def test_bad_service_credentials_stop_the_service_at_start(tmp_path: Path) -> None:
    runner = CliRunner(env={SERVICE_TOKEN_VARIABLE: None, f"{SERVICE_TOKEN_VARIABLE}_FILE": None})
    db = ["--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"]
    none = runner.invoke(command, db)
    assert none.exit_code == 2
    assert "--service-token" in none.output
    short = runner.invoke(command, [*db, "--service-token", "too-short-secret"])
    assert short.exit_code == 2
    assert "32" in short.output and "too-short-secret" not in short.output
    spaced = runner.invoke(command, [*db, "--service-token", "a" * 20 + " " + "b" * 20])
    assert spaced.exit_code == 2
    token_file = tmp_path / "tokens"
    token_file.write_text("s" * 40 + "\n")
    token_file.chmod(0o644)
    public = runner.invoke(command, [*db, "--service-token-file", str(token_file)])
    assert public.exit_code == 2
    assert "chmod 600" in public.output
    token_file.chmod(0o600)
    both = runner.invoke(
        command, [*db, "--service-token-file", str(token_file), "--service-token", "t" * 40]
    )
    assert both.exit_code == 2
    assert "not both" in both.output


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "service-tokens"
    path.touch(mode=0o600)
    return path


def write_tokens(path: Path, *tokens: str) -> None:
    """Replace the file atomically, as an operator's `install -m 600` would."""
    partial = path.with_name(path.name + ".new")
    partial.write_text("\n".join(tokens) + "\n")
    partial.chmod(0o600)
    partial.replace(path)


@pytest.fixture
def service_with_file(tmp_path: Path, token_file: Path) -> Iterator[RunningSalesConnect]:
    write_tokens(token_file, "old-service-token-" + "o" * 32)
    with running_salesconnect(
        f"sqlite:///{tmp_path / 'rotate.sqlite3'}",
        tmp_path,
        env={f"{SERVICE_TOKEN_VARIABLE}_FILE": str(token_file)},
    ) as service:
        yield service


def test_the_service_token_rotates_through_its_file_without_a_restart(
    service_with_file: RunningSalesConnect, token_file: Path
) -> None:
    old, new = "old-service-token-" + "o" * 32, "new-service-token-" + "n" * 32
    url = service_with_file.base_url
    as_old = SalesConnectClient(url, token=old)
    user = as_old.create_user()
    as_old.update_settings(user["id"], task_sync="on")
    failures: list[str] = []
    current = {"token": old}
    stop = threading.Event()

    def bridge_keeps_working() -> None:
        while not stop.is_set():
            try:
                BridgeClient(url, token=current["token"]).changes(0, limit=1)
            except Exception as exc:
                failures.append(repr(exc))

    bridge = threading.Thread(target=bridge_keeps_working)
    bridge.start()
    try:
        write_tokens(token_file, new, old)  # 1. accept both
        wait_for(lambda: status_of(SalesConnectClient(url, token=new).me) == 200, timeout=10)
        current["token"] = new  # 2. the bridge moves to the new token
        created = BridgeClient(url, token=new).create_task(
            user["id"],
            {"name": "From Salesforce"},
            salesforce_task_id=SF_TASK,
            idempotency_key="m-1",
        )
        write_tokens(token_file, new)  # 3. drop the old one
        wait_for(lambda: status_of(as_old.me) == 401, timeout=10)
    finally:
        stop.set()
        bridge.join()
    assert failures == []
    entries = SalesConnectClient(url, token=new).all_changes()
    assert [(e["op"], e["origin"]) for e in entries if e["task_id"] == created.id] == [
        ("task_created", "salesforce")
    ]
    write_tokens(token_file, "short")  # a broken file keeps the tokens in force
    as_new = SalesConnectClient(url, token=new)
    # Each request looks at the file (at most once a second); the refusal is logged, and the
    # new token keeps working all along.
    wait_for(lambda: as_new.me() and "not reloaded" in service_with_file.log(), timeout=10)
    assert as_new.me()["kind"] == "service"
    assert "short" not in service_with_file.log()


def test_several_service_tokens_are_accepted_at_once(tmp_path: Path) -> None:
    first, second = "first-service-token-" + "f" * 32, "second-service-token-" + "s" * 32
    with running_salesconnect(
        f"sqlite:///{tmp_path / 'two.sqlite3'}",
        tmp_path,
        service_token=first,
        env={SERVICE_TOKEN_VARIABLE: f"{first}, {second}"},
    ) as service:
        for token in (first, second):
            assert SalesConnectClient(service.base_url, token=token).me()["kind"] == "service"
        assert status_of(SalesConnectClient(service.base_url, token="x" * 40).me) == 401


# -- the pages: sign-in, the session cookie, CSRF, sign-out ----------------------------------


def session_cookie(response: requests.Response) -> str:
    """The Set-Cookie header that sets the session cookie."""
    [header] = [
        value
        for name, value in response.raw.headers.items()
        if name.lower() == "set-cookie" and value.startswith("salesconnect_session=")
    ]
    return header


@pytest.fixture
def carol(salesconnect: SalesConnectClient) -> UserJson:
    return salesconnect.create_user(name="Carol", password="carols-own-password")


def test_signed_out_pages_lead_to_sign_in(
    salesconnect_service: RunningSalesConnect, carol: UserJson
) -> None:
    pages = PageSession(salesconnect_service.base_url)
    home = pages.get("/", allow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (303, "/sign-in")
    settings = pages.get(f"/users/{carol['id']}/settings", allow_redirects=False)
    assert settings.status_code == 303
    assert settings.headers["location"] == f"/sign-in?next=%2Fusers%2F{carol['id']}%2Fsettings"
    refused = pages.post(f"/users/{carol['id']}/settings", {"task_sync": "on"})
    assert refused.status_code == 403
    assert "signed out" in refused.text
    sign_in_page = pages.get("/sign-in")
    assert sign_in_page.headers["x-frame-options"] == "DENY"
    assert 'type="password"' in sign_in_page.text


def test_sign_in_checks_the_password_and_sets_a_safe_cookie(
    salesconnect_service: RunningSalesConnect, carol: UserJson
) -> None:
    pages = PageSession(salesconnect_service.base_url)
    for email, password in (
        (carol["email"], "not-carols-password"),
        ("nobody@example.com", "carols-own-password"),
        (carol["email"], ""),
    ):
        wrong = pages.sign_in(email, password)
        assert wrong.status_code == 400
        assert "Wrong email or password." in wrong.text
        assert "salesconnect_session" not in pages.http.cookies
    settings_path = f"/users/{carol['id']}/settings"
    right = pages.sign_in(carol["email"].upper(), "carols-own-password", next_path=settings_path)
    assert (right.status_code, right.headers["location"]) == (303, settings_path)
    cookie = session_cookie(right)
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here
    assert pages.get(settings_path).status_code == 200
    assert pages.get("/", allow_redirects=False).headers["location"].endswith("/command-center")

    # Behind a TLS proxy (it says so from the local host), the cookie is Secure.
    proxied = PageSession(salesconnect_service.base_url)
    proxied.http.headers["X-Forwarded-Proto"] = "https"
    form = proxied.get("/sign-in")
    assert "Secure" in form.headers["set-cookie"]
    # (requests keeps Secure cookies for https; the proxy would have passed it on.)
    signed_in = proxied.http.post(
        proxied.base_url + "/sign-in",
        data={
            "email": carol["email"],
            "password": "carols-own-password",
            "csrf_token": proxied.csrf_token or "",
        },
        headers={"Cookie": f"salesconnect_sign_in={form.cookies['salesconnect_sign_in']}"},
        allow_redirects=False,
        timeout=10,
    )
    assert signed_in.status_code == 303
    assert "Secure" in session_cookie(signed_in)

    outside = PageSession(salesconnect_service.base_url)
    elsewhere = outside.sign_in(carol["email"], "carols-own-password", next_path="//evil.example")
    assert elsewhere.headers["location"] == f"/users/{carol['id']}/command-center"


def test_the_sign_in_form_needs_its_own_token(
    salesconnect_service: RunningSalesConnect, carol: UserJson
) -> None:
    """A page elsewhere cannot sign a visitor in to an account of its choosing."""
    forged = PageSession(salesconnect_service.base_url)
    response = forged.post(
        "/sign-in",
        {"email": carol["email"], "password": "carols-own-password", "csrf_token": "guess"},
    )
    assert response.status_code == 403
    assert "salesconnect_session" not in forged.http.cookies


def test_sign_out_ends_the_session_for_good(
    salesconnect_service: RunningSalesConnect, carol: UserJson
) -> None:
    pages = PageSession(salesconnect_service.base_url)
    pages.sign_in(carol["email"], "carols-own-password")
    stolen = pages.http.cookies["salesconnect_session"]
    command_center = f"/users/{carol['id']}/command-center"
    assert pages.get(command_center).status_code == 200
    out = pages.sign_out()
    assert (out.status_code, out.headers["location"]) == (303, "/sign-in?notice=signed-out")
    assert "salesconnect_session" not in pages.http.cookies
    assert "You are signed out." in pages.get(out.headers["location"]).text
    replay = PageSession(salesconnect_service.base_url)
    replay.http.cookies.set("salesconnect_session", stolen)
    assert replay.get(command_center, allow_redirects=False).status_code == 303

    # Signing in starts a new session and ends the one the browser came with.
    pages.sign_in(carol["email"], "carols-own-password")
    first = pages.http.cookies["salesconnect_session"]
    form = PageSession(salesconnect_service.base_url)
    form.get("/sign-in")
    again = form.http.post(
        form.base_url + "/sign-in",
        data={
            "email": carol["email"],
            "password": "carols-own-password",
            "csrf_token": form.csrf_token or "",
        },
        headers={
            "Cookie": f"salesconnect_sign_in={form.http.cookies['salesconnect_sign_in']}; "
            f"salesconnect_session={first}"
        },
        allow_redirects=False,
        timeout=10,
    )
    assert again.status_code == 303
    assert again.cookies["salesconnect_session"] != first
    later = PageSession(salesconnect_service.base_url)
    later.http.cookies.set("salesconnect_session", first)
    assert later.get(command_center, allow_redirects=False).status_code == 303


def test_a_new_password_ends_the_users_sessions(
    salesconnect_service: RunningSalesConnect, salesconnect: SalesConnectClient, carol: UserJson
) -> None:
    pages = PageSession(salesconnect_service.base_url)
    pages.sign_in(carol["email"], "carols-own-password")
    salesconnect.set_password(carol["id"], "carols-next-password")
    page = pages.get(f"/users/{carol['id']}/settings", allow_redirects=False)
    assert page.status_code == 303
    assert pages.sign_in(carol["email"], "carols-own-password").status_code == 400
    assert pages.sign_in(carol["email"], "carols-next-password").status_code == 303


def test_repeated_failed_sign_ins_are_refused_for_a_while(
    salesconnect_service: RunningSalesConnect, carol: UserJson
) -> None:
    pages = PageSession(salesconnect_service.base_url)
    for _ in range(10):
        assert pages.sign_in(carol["email"], "guessing-the-password").status_code == 400
    limited = pages.sign_in(carol["email"], "carols-own-password")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in limited.text
    assert "salesconnect_session" not in pages.http.cookies
