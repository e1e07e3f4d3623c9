"""Running the Sales Connect service for tests, benchmarks and the soak, and talking to it.

* `running_salesconnect(database_url)`: a context manager that starts
  `tasksync salesconnect --port 0 --db URL --ready-file FILE` as a subprocess, waits for the
  ready file (the service writes `{url, host, port, pid, database}` there once it serves),
  yields a `RunningSalesConnect`, and stops the process (SIGTERM, then SIGKILL) afterwards.
  The service accepts `TEST_SERVICE_TOKEN` (one per test process) as its service credential
  unless told another one.
* `postgres_database(prefix)`: a fresh PostgreSQL database for one session, dropped after.
* `SalesConnectClient`: a small typed client over requests; every non-2xx answer raises
  `SalesConnectError` carrying the status, error code and field rules. It sends the service
  token unless given another (`token=`, or the password of a `http://tasksync:TOKEN@host` URL),
  or `token=""` for none.
* `PageSession`: the pages as a signed-in person uses them (`SalesConnectClient.pages_as(user_id)`
  sets the user a password and signs in): the session cookie is kept and every form POST
  sends the CSRF token of the page read last, as the browser's form would.
* pytest fixtures (import them into a conftest.py): `salesconnect_postgres_url`,
  `salesconnect_service` (session-scoped, parametrized over SQLite and PostgreSQL),
  `salesconnect` (a client for it) and `salesconnect_user` (a fresh user).
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final, TypedDict, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pytest
import requests
from psycopg import sql

from tests.support.waiting import wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL: Final = os.environ.get(
    "TASKSYNC_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS: Final = ("sqlite", "postgresql")
# The service credential of every Sales Connect the tests start (unless a test chooses another):
# one per test process, so it never appears in the repository or a log of another run.
TEST_SERVICE_TOKEN: Final = "sc-test-" + secrets.token_urlsafe(32)
SERVICE_TOKEN_VARIABLE: Final = "TASKSYNC_SALESCONNECT_SERVICE_TOKEN"
URL_USER: Final = "tasksync"


def url_with_token(url: str, token: str) -> str:
    """`url` carrying `token` as its password, the way `--salesconnect-url` may carry it."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{URL_USER}:{quote(token, safe='')}@{host}"))


def url_without_token(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    token = unquote(parts.password) if parts.password else None
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])), token


class UserJson(TypedDict):
    id: str
    email: str
    name: str
    time_zone: str
    salesforce_user_id: str | None
    created_at: str
    updated_at: str


class TaskJson(TypedDict):
    id: str
    user_id: str
    name: str
    status: str
    priority: str
    due_date: str | None
    details: str
    salesforce_task_id: str | None
    version: int
    created_at: str
    updated_at: str
    deleted_at: str | None


class ChangeJson(TypedDict):
    seq: int
    user_id: str
    task_id: str | None
    op: str
    changed: dict[str, Any]
    version: int | None
    occurred_at: str
    actor: str
    origin: str
    task_sync: str
    salesforce_task_id: str | None
    task_created_at: str | None
    first_enabled_at: str | None
    last_enabled_at: str | None


class ChangePageJson(TypedDict):
    changes: list[ChangeJson]
    next_after: int
    head_seq: int


class SalesConnectError(Exception):
    """A non-2xx answer: `status`, the error `code`, `fields` rules and the raw response."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text
        error = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        self.code: str | None = error.get("code")
        self.message: str = error.get("message", str(self.body))
        self.fields: dict[str, list[str]] = error.get("fields", {})
        self.error: dict[str, Any] = error
        super().__init__(f"{response.request.method} {response.url}: {self.status} {self.message}")


CSRF_INPUT: Final = re.compile(r'name="csrf_token" value="([^"]+)"')


class PageSession:
    """The pages over one `requests.Session`, as a person in a browser uses them."""

    def __init__(self, base_url: str, *, timeout: float = 15.0) -> None:
        self.base_url = url_without_token(base_url)[0].rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False
        self.csrf_token: str | None = None

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, *, allow_redirects: bool = True) -> requests.Response:
        """GET a page; the CSRF token in its forms is kept for the next `post`."""
        response = self.http.get(
            self.base_url + path, allow_redirects=allow_redirects, timeout=self.timeout
        )
        found = CSRF_INPUT.search(response.text)
        if found is not None:
            self.csrf_token = html.unescape(found.group(1))
        return response

    def post(
        self, path: str, data: Mapping[str, str] | None = None, *, csrf: bool = True
    ) -> requests.Response:
        """POST a form (not following the redirect), with the kept CSRF token unless told not."""
        form = dict(data or {})
        if csrf and self.csrf_token is not None:
            form.setdefault("csrf_token", self.csrf_token)
        return self.http.post(
            self.base_url + path, data=form, allow_redirects=False, timeout=self.timeout
        )

    def sign_in(
        self, email: str, password: str, *, next_path: str | None = None
    ) -> requests.Response:
        """Fill in the sign-in form; on success, read the page it leads to (for its token)."""
        self.get("/sign-in")
        form = {"email": email, "password": password}
        if next_path is not None:
            form["next"] = next_path
        response = self.post("/sign-in", form)
        if response.status_code == 303:
            self.get(response.headers["location"])
        return response

    def sign_out(self) -> requests.Response:
        return self.post("/sign-out")


class SalesConnectClient:
    """The JSON API as methods. `origin="salesforce"` sends `X-Sync-Origin` on every write.

    `token`: the bearer token to send; None means the URL's password, else `TEST_SERVICE_TOKEN`
    (the service credential: it may do everything); "" sends none."""

    def __init__(
        self,
        base_url: str,
        *,
        origin: str | None = None,
        token: str | None = None,
        timeout: float = 15.0,
    ):
        plain_url, url_token = url_without_token(base_url)
        self.base_url = plain_url.rstrip("/")
        self.origin = origin
        self.token = (url_token or TEST_SERVICE_TOKEN) if token is None else token
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    def as_bridge(self) -> SalesConnectClient:
        return SalesConnectClient(
            self.base_url, origin="salesforce", token=self.token, timeout=self.timeout
        )

    def with_token(self, token: str) -> SalesConnectClient:
        """The same service as another caller (a user's API token; "" for nobody)."""
        return SalesConnectClient(
            self.base_url, origin=self.origin, token=token, timeout=self.timeout
        )

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        if_match: int | str | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """Send a request and raise `SalesConnectError` unless it succeeded."""
        sent = {**self.auth_headers(), **(headers or {})}
        if self.origin is not None and method not in ("GET", "HEAD"):
            sent.setdefault("X-Sync-Origin", self.origin)
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        if if_match is not None:
            sent["If-Match"] = f'"{if_match}"' if isinstance(if_match, int) else if_match
        response = self.session.request(
            method,
            self.base_url + path,
            json=json_body,
            params=params,
            headers=sent,
            timeout=timeout or self.timeout,
        )
        if response.status_code >= 300:
            raise SalesConnectError(response)
        return response

    # users and settings

    def create_user(
        self,
        *,
        email: str | None = None,
        name: str = "Test User",
        time_zone: str = "UTC",
        salesforce_user_id: str | None = None,
        user_id: str | None = None,
        password: str | None = None,
    ) -> UserJson:
        body: dict[str, Any] = {
            "email": email or f"user-{uuid.uuid4().hex[:12]}@example.com",
            "name": name,
            "time_zone": time_zone,
        }
        if salesforce_user_id is not None:
            body["salesforce_user_id"] = salesforce_user_id
        if user_id is not None:
            body["id"] = user_id
        if password is not None:
            body["password"] = password
        return cast(UserJson, self.request("POST", "/api/users", json_body=body).json())

    def set_password(self, user_id: str, password: str) -> None:
        self.request("PUT", f"/api/users/{user_id}/password", json_body={"password": password})

    def create_token(self, user_id: str, name: str = "tests") -> dict[str, Any]:
        """A new API token of the user: the record with `token` (shown this once)."""
        response = self.request("POST", f"/api/users/{user_id}/tokens", json_body={"name": name})
        return cast(dict[str, Any], response.json())

    def list_tokens(self, user_id: str) -> list[dict[str, Any]]:
        response = self.request("GET", f"/api/users/{user_id}/tokens")
        return cast(list[dict[str, Any]], response.json()["tokens"])

    def revoke_token(self, user_id: str, token_id: str) -> None:
        self.request("DELETE", f"/api/users/{user_id}/tokens/{token_id}")

    def me(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "/api/me").json())

    def pages_as(self, user_id: str, password: str | None = None) -> PageSession:
        """The pages signed in as the user, after setting their password (which ends the
        user's other page sessions)."""
        password = password or f"pw-{secrets.token_urlsafe(12)}"
        self.set_password(user_id, password)
        pages = PageSession(self.base_url, timeout=self.timeout)
        response = pages.sign_in(self.get_user(user_id)["email"], password)
        if response.status_code != 303:
            raise AssertionError(f"signing in as {user_id} failed: {response.status_code}")
        return pages

    def as_user(self, user_id: str) -> SalesConnectClient:
        """A client with a new API token of the user (made with this client's credential)."""
        return self.with_token(self.create_token(user_id)["token"])

    def get_user(self, user_id: str) -> UserJson:
        return cast(UserJson, self.request("GET", f"/api/users/{user_id}").json())

    def update_user(self, user_id: str, **fields: Any) -> UserJson:
        return cast(
            UserJson, self.request("PATCH", f"/api/users/{user_id}", json_body=fields).json()
        )

    def list_users(self, **params: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "/api/users", params=params).json())

    def settings(self, user_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", f"/api/users/{user_id}/settings").json())

    def update_settings(self, user_id: str, **fields: Any) -> dict[str, Any]:
        response = self.request("PUT", f"/api/users/{user_id}/settings", json_body=fields)
        return cast(dict[str, Any], response.json())

    def report_sync_state(self, user_id: str, report: Mapping[str, Any]) -> dict[str, Any]:
        response = self.request("PUT", f"/api/users/{user_id}/sync-state", json_body=report)
        return cast(dict[str, Any], response.json())

    # tasks

    def create_task(
        self,
        user_id: str,
        name: str = "Call the customer",
        due_date: date | str | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> TaskJson:
        body = {
            "name": name,
            "due_date": due_date.isoformat() if isinstance(due_date, date) else due_date,
            **fields,
        }
        response = self.request(
            "POST", f"/api/users/{user_id}/tasks", json_body=body, idempotency_key=idempotency_key
        )
        return cast(TaskJson, response.json())

    def get_task(self, task_id: str, *, include_deleted: bool = False) -> TaskJson:
        params = {"include_deleted": "true"} if include_deleted else None
        return cast(TaskJson, self.request("GET", f"/api/tasks/{task_id}", params=params).json())

    def update_task(
        self,
        task_id: str,
        *,
        if_match: int | str | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> TaskJson:
        response = self.request(
            "PATCH",
            f"/api/tasks/{task_id}",
            json_body=fields,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )
        return cast(TaskJson, response.json())

    def delete_task(
        self,
        task_id: str,
        *,
        if_match: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.request(
            "DELETE", f"/api/tasks/{task_id}", if_match=if_match, idempotency_key=idempotency_key
        )

    def restore_task(self, task_id: str, *, if_match: int | str | None = None) -> TaskJson:
        response = self.request("POST", f"/api/tasks/{task_id}/restore", if_match=if_match)
        return cast(TaskJson, response.json())

    def list_tasks(self, user_id: str, **params: Any) -> list[TaskJson]:
        response = self.request("GET", f"/api/users/{user_id}/tasks", params=params)
        return cast(list[TaskJson], response.json()["tasks"])

    def command_center(self, user_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/api/users/{user_id}/command-center")
        return cast(dict[str, Any], response.json())

    # the change feed

    def changes(self, after: int = 0, *, limit: int = 100, wait: float = 0.0) -> ChangePageJson:
        response = self.request(
            "GET",
            "/api/changes",
            params={"after": after, "limit": limit, "wait": wait},
            timeout=wait + self.timeout,
        )
        return cast(ChangePageJson, response.json())

    def all_changes(self, after: int = 0) -> list[ChangeJson]:
        """Every change after `after` that is committed now, paging through the feed."""
        collected: list[ChangeJson] = []
        while True:
            page = self.changes(after, limit=1000)
            if not page["changes"]:
                return collected
            collected.extend(page["changes"])
            after = page["next_after"]

    def head_seq(self) -> int:
        return self.changes(2**62)["head_seq"]


@dataclass
class RunningSalesConnect:
    """`url` carries the service token as its password (what `--salesconnect-url` of a bridge
    process may be given); `base_url` is the plain address, for pages and raw requests."""

    base_url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    service_token: str = TEST_SERVICE_TOKEN

    @property
    def url(self) -> str:
        return url_with_token(self.base_url, self.service_token)

    def client(self, *, origin: str | None = None, token: str | None = None) -> SalesConnectClient:
        return SalesConnectClient(
            self.base_url, origin=origin, token=self.service_token if token is None else token
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def tasksync_executable() -> Path:
    return Path(sys.executable).with_name("tasksync")


@contextmanager
def running_salesconnect(
    database_url: str,
    workdir: Path,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    service_token: str = TEST_SERVICE_TOKEN,
) -> Iterator[RunningSalesConnect]:
    """Start the service on a free port over `database_url`; stop it when the block ends.
    It accepts `service_token` as its service credential, unless `env` or `extra_args` name
    the credential themselves."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    ready_file = workdir / f"salesconnect-{tag}.ready.json"
    log_path = workdir / f"salesconnect-{tag}.log"
    process_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(SERVICE_TOKEN_VARIABLE)
    }
    if not any(key.startswith(SERVICE_TOKEN_VARIABLE) for key in env or {}) and not any(
        arg.startswith("--service-token") for arg in extra_args
    ):
        process_env[SERVICE_TOKEN_VARIABLE] = service_token
    process_env.update(env or {})
    # The project's own folders first, whatever the editable install knew when it was made.
    process_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), process_env.get("PYTHONPATH", "")) if p
    )
    command = [
        str(tasksync_executable()),
        "salesconnect",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        database_url,
        "--data-dir",
        str(workdir),
        "--ready-file",
        str(ready_file),
        "--log-level",
        "warning",
        *extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=process_env, cwd=workdir
        )
    try:

        def started_or_exited() -> bool:
            return process.poll() is not None or ready_file.exists()

        try:
            wait_for(started_or_exited, timeout=startup_timeout, what="the ready file")
        except AssertionError:
            raise RuntimeError(
                "Sales Connect did not start:\n" + log_path.read_text(errors="replace")[-4000:]
            ) from None
        if process.poll() is not None:
            raise RuntimeError(
                f"tasksync salesconnect exited with {process.returncode}:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        info = json.loads(ready_file.read_text())
        yield RunningSalesConnect(
            base_url=str(info["url"]),
            database_url=database_url,
            process=process,
            log_path=log_path,
            service_token=service_token,
        )
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@contextmanager
def postgres_database(prefix: str = "tasksync_salesconnect") -> Iterator[str]:
    """A fresh, empty PostgreSQL database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin_parts = urlsplit(POSTGRES_ADMIN_URL)
    url = f"postgresql+psycopg://{admin_parts.netloc}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- pytest fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def salesconnect_postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def salesconnect_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSalesConnect]:
    """One running service per backend for the whole session (tests use fresh users)."""
    workdir = tmp_path_factory.mktemp(f"salesconnect-{request.param}")
    if request.param == "postgresql":
        database_url = str(request.getfixturevalue("salesconnect_postgres_url"))
    else:
        database_url = f"sqlite:///{workdir / 'salesconnect.sqlite3'}"
    with running_salesconnect(database_url, workdir) as service:
        yield service


@pytest.fixture
def salesconnect(salesconnect_service: RunningSalesConnect) -> Iterator[SalesConnectClient]:
    client = salesconnect_service.client()
    yield client
    client.close()


@pytest.fixture
def salesconnect_user(salesconnect: SalesConnectClient) -> UserJson:
    return salesconnect.create_user()
