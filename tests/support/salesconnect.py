"""Running the Sales Connect service for tests, benchmarks and the soak, and talking to it.

* `running_salesconnect(database_url)`: a context manager that starts
  `tasksync salesconnect --port 0 --db URL --ready-file FILE` as a subprocess, waits for the
  ready file (the service writes `{url, host, port, pid, database}` there once it serves),
  yields a `RunningSalesConnect`, and stops the process (SIGTERM, then SIGKILL) afterwards.
* `postgres_database(prefix)`: a fresh PostgreSQL database for one session, dropped after.
* `SalesConnectClient`: a small typed client over requests; every non-2xx answer raises
  `SalesConnectError` carrying the status, error code and field rules.
* pytest fixtures (import them into a conftest.py): `salesconnect_postgres_url`,
  `salesconnect_service` (session-scoped, parametrized over SQLite and PostgreSQL),
  `salesconnect` (a client for it) and `salesconnect_user` (a fresh user).
"""

from __future__ import annotations

import json
import os
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
from urllib.parse import urlsplit

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


class SalesConnectClient:
    """The JSON API as methods. `origin="salesforce"` sends `X-Sync-Origin` on every write."""

    def __init__(self, base_url: str, *, origin: str | None = None, timeout: float = 15.0):
        self.base_url = base_url.rstrip("/")
        self.origin = origin
        self.timeout = timeout
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def as_bridge(self) -> SalesConnectClient:
        return SalesConnectClient(self.base_url, origin="salesforce", timeout=self.timeout)

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
        sent = dict(headers or {})
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
        return cast(UserJson, self.request("POST", "/api/users", json_body=body).json())

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
    url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, *, origin: str | None = None) -> SalesConnectClient:
        return SalesConnectClient(self.url, origin=origin)

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
) -> Iterator[RunningSalesConnect]:
    """Start the service on a free port over `database_url`; stop it when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    ready_file = workdir / f"salesconnect-{tag}.ready.json"
    log_path = workdir / f"salesconnect-{tag}.log"
    process_env = {**os.environ, **(env or {})}
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
            url=str(info["url"]), database_url=database_url, process=process, log_path=log_path
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
