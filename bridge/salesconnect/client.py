"""The bridge's client of the Sales Connect JSON API (`docs/salesconnect.md`).

Every request carries the bridge's service credential (`Authorization: Bearer TOKEN`): the
service refuses the bridge's own calls (the feed, users with sync on, links, `X-Sync-Origin`)
to anyone else. The token is the one given to the client, else the password part of the base
URL (`http://tasksync:TOKEN@host:8080`, as the AMQP URL carries its password), else the one
the process was configured with (`configure_token`, which `--salesconnect-token` /
`TASKSYNC_SALESCONNECT_TOKEN` / `TASKSYNC_SALESCONNECT_TOKEN_FILE` set at start).

Every write the bridge makes carries `X-Sync-Origin: salesforce`, so the change feed marks it
as the bridge's own and the producer never sends it back; writes carry an `Idempotency-Key`
so a retried request returns the first answer instead of doing the work twice. Any answer
that is not a success raises `SalesConnectApiError`, which `bridge.errors.classify` sorts into
transient, conflict and permanent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

from bridge.errors import SalesConnectApiError
from schemas.fields import parse_utc_stamp

SYNC_ORIGIN_HEADER: Final = "X-Sync-Origin"
SYNC_ORIGIN_SALESFORCE: Final = "salesforce"
BRIDGE_ACTOR: Final = "salesforce-bridge"
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
TASK_FIELDS: Final = ("name", "status", "priority", "due_date", "details")
LINKS_PER_REQUEST: Final = 500

_configured_token: str | None = None


def configure_token(token: str | None) -> None:
    """The service credential every client of this process sends unless told another one."""
    global _configured_token  # noqa: PLW0603 - one credential per process, set once at start
    _configured_token = token or None


def configured_token() -> str | None:
    return _configured_token


def split_credentials(url: str) -> tuple[str, str | None]:
    """`url` without its user and password, and the password (the token) it carried."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    token = unquote(parts.password) if parts.password else None
    return urlunsplit(parts._replace(netloc=host)), token


def _stamp(value: object) -> datetime | None:
    return parse_utc_stamp(str(value)) if value else None


@dataclass(frozen=True)
class SalesConnectTask:
    id: str
    user_id: str
    name: str
    status: str
    priority: str
    due_date: str | None
    details: str
    salesforce_task_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SalesConnectTask:
        return cls(
            id=str(body["id"]),
            user_id=str(body["user_id"]),
            name=str(body["name"]),
            status=str(body["status"]),
            priority=str(body["priority"]),
            due_date=body.get("due_date"),
            details=str(body.get("details") or ""),
            salesforce_task_id=body.get("salesforce_task_id"),
            version=int(body["version"]),
            created_at=parse_utc_stamp(str(body["created_at"])),
            updated_at=parse_utc_stamp(str(body["updated_at"])),
            deleted_at=_stamp(body.get("deleted_at")),
        )

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def values(self) -> dict[str, object]:
        """The neutral fields, as the feed and the mapping name them."""
        return {name: getattr(self, name) for name in TASK_FIELDS}


@dataclass(frozen=True)
class SyncUser:
    """A Sales Connect user as the bridge sees them: who they are in Salesforce, and whether
    and since when their tasks sync."""

    id: str
    salesforce_user_id: str | None
    time_zone: str
    task_sync: bool
    first_enabled_at: datetime | None
    last_enabled_at: datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SyncUser:
        return cls(
            id=str(body["id"]),
            salesforce_user_id=body.get("salesforce_user_id"),
            time_zone=str(body.get("time_zone") or "UTC"),
            task_sync=body.get("task_sync") == "on",
            first_enabled_at=_stamp(body.get("first_enabled_at")),
            last_enabled_at=_stamp(body.get("last_enabled_at")),
        )


@dataclass(frozen=True)
class UserSettings:
    user_id: str
    task_sync: bool
    activity_subject_template: str
    first_enabled_at: datetime | None
    last_enabled_at: datetime | None
    first_sync_state: str
    last_sync_error: str | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UserSettings:
        first_sync = body.get("first_sync") or {}
        last_error = body.get("last_sync_error") or {}
        return cls(
            user_id=str(body["user_id"]),
            task_sync=body.get("task_sync") == "on",
            activity_subject_template=str(body.get("activity_subject_template") or ""),
            first_enabled_at=_stamp(body.get("first_enabled_at")),
            last_enabled_at=_stamp(body.get("last_enabled_at")),
            first_sync_state=str(first_sync.get("state") or "idle"),
            last_sync_error=last_error.get("message"),
        )


@dataclass(frozen=True)
class FeedEntry:
    """One committed change from `GET /api/changes`."""

    seq: int
    user_id: str
    task_id: str | None
    op: str
    changed: Mapping[str, Any]
    version: int | None
    occurred_at: datetime
    actor: str
    origin: str
    task_sync: bool
    salesforce_task_id: str | None
    task_created_at: datetime | None
    first_enabled_at: datetime | None
    last_enabled_at: datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FeedEntry:
        return cls(
            seq=int(body["seq"]),
            user_id=str(body["user_id"]),
            task_id=body.get("task_id"),
            op=str(body["op"]),
            changed=dict(body.get("changed") or {}),
            version=body.get("version"),
            occurred_at=parse_utc_stamp(str(body["occurred_at"])),
            actor=str(body.get("actor") or ""),
            origin=str(body.get("origin") or "user"),
            task_sync=body.get("task_sync") == "on",
            salesforce_task_id=body.get("salesforce_task_id"),
            task_created_at=_stamp(body.get("task_created_at")),
            first_enabled_at=_stamp(body.get("first_enabled_at")),
            last_enabled_at=_stamp(body.get("last_enabled_at")),
        )

    @property
    def by_bridge(self) -> bool:
        return self.origin == SYNC_ORIGIN_SALESFORCE


@dataclass(frozen=True)
class LinkResult:
    """`linked`, `unchanged`, `not_found`, `deleted` or `conflict`, per link."""

    task_id: str
    status: str
    version: int | None


@dataclass(frozen=True)
class FeedPage:
    changes: tuple[FeedEntry, ...]
    next_after: int
    head_seq: int


class SalesConnectClient:
    """Typed calls of the JSON API over one keep-alive `requests.Session` (thread-safe for the
    simple requests made here)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        plain_url, url_token = split_credentials(base_url)
        self.base_url = plain_url.rstrip("/")
        self.token = token or url_token or configured_token()
        self.timeout = timeout
        self.http = session or requests.Session()

    def __repr__(self) -> str:
        return f"SalesConnectClient({self.base_url!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        sent = dict(headers or {})
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        response = self.http.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers=sent,
            timeout=timeout or self.timeout,
        )
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _write(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotency_key: str | None = None,
        if_match: int | None = None,
    ) -> requests.Response:
        headers = {SYNC_ORIGIN_HEADER: SYNC_ORIGIN_SALESFORCE}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        return self._request(method, path, json=json, headers=headers)

    # -- users and settings -----------------------------------------------------------------

    def users_with_sync_on(self, page_size: int = 500) -> list[SyncUser]:
        users: list[SyncUser] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"task_sync": "on", "limit": page_size}
            if after:
                params["after"] = after
            body = self._request("GET", "/api/users", params=params).json()
            users.extend(SyncUser.from_json(item) for item in body.get("users", []))
            after = body.get("next_after")
            if not after:
                return users

    def settings(self, user_id: str) -> UserSettings:
        body = self._request("GET", f"/api/users/{quote(user_id)}/settings").json()
        return UserSettings.from_json(body)

    def report_sync_state(
        self,
        user_id: str,
        *,
        first_sync: Mapping[str, Any] | None = None,
        last_sync_error: Mapping[str, Any] | bool | None = False,
    ) -> None:
        """Update what the Settings page shows; `last_sync_error=None` clears the error."""
        body: dict[str, Any] = {}
        if first_sync is not None:
            body["first_sync"] = dict(first_sync)
        if last_sync_error is not False:
            body["last_sync_error"] = last_sync_error
        self._write("PUT", f"/api/users/{quote(user_id)}/sync-state", json=body)

    # -- tasks ------------------------------------------------------------------------------

    def task(self, task_id: str, *, include_deleted: bool = True) -> SalesConnectTask | None:
        """The task, tombstone included by default; None when it never existed."""
        try:
            response = self._request(
                "GET",
                f"/api/tasks/{quote(task_id)}",
                params={"include_deleted": "true"} if include_deleted else None,
            )
        except SalesConnectApiError as exc:
            if exc.status == 404:
                return None
            raise
        return SalesConnectTask.from_json(response.json())

    def tasks(
        self,
        user_id: str,
        *,
        salesforce_task_id: str | None = None,
        include_deleted: bool = False,
        page_size: int = 500,
    ) -> Iterator[SalesConnectTask]:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if include_deleted:
                params["include_deleted"] = "true"
            if salesforce_task_id:
                params["salesforce_task_id"] = salesforce_task_id
            if after:
                params["after"] = after
            body = self._request("GET", f"/api/users/{quote(user_id)}/tasks", params=params).json()
            for item in body.get("tasks", []):
                yield SalesConnectTask.from_json(item)
            after = body.get("next_after")
            if not after:
                return

    def task_linked_to(self, user_id: str, salesforce_task_id: str) -> SalesConnectTask | None:
        found = list(
            self.tasks(user_id, salesforce_task_id=salesforce_task_id, include_deleted=True)
        )
        return found[0] if found else None

    def create_task(
        self,
        user_id: str,
        fields: Mapping[str, Any],
        *,
        salesforce_task_id: str | None,
        idempotency_key: str,
    ) -> SalesConnectTask:
        body = {"due_date": None, **fields, "salesforce_task_id": salesforce_task_id}
        response = self._write(
            "POST",
            f"/api/users/{quote(user_id)}/tasks",
            json=body,
            idempotency_key=idempotency_key,
        )
        return SalesConnectTask.from_json(response.json())

    def update_task(
        self,
        task_id: str,
        fields: Mapping[str, Any],
        *,
        if_match: int,
        idempotency_key: str,
    ) -> SalesConnectTask:
        response = self._write(
            "PATCH",
            f"/api/tasks/{quote(task_id)}",
            json=dict(fields),
            idempotency_key=idempotency_key,
            if_match=if_match,
        )
        return SalesConnectTask.from_json(response.json())

    def delete_task(self, task_id: str, *, if_match: int, idempotency_key: str) -> None:
        self._write(
            "DELETE",
            f"/api/tasks/{quote(task_id)}",
            idempotency_key=idempotency_key,
            if_match=if_match,
        )

    def restore_task(
        self, task_id: str, *, if_match: int, idempotency_key: str
    ) -> SalesConnectTask:
        response = self._write(
            "POST",
            f"/api/tasks/{quote(task_id)}/restore",
            idempotency_key=idempotency_key,
            if_match=if_match,
        )
        return SalesConnectTask.from_json(response.json())

    def set_salesforce_links(
        self, links: Sequence[tuple[str, str | None]], *, idempotency_key: str
    ) -> list[LinkResult]:
        """Link each Sales Connect task to its Salesforce Task (None unlinks), many at once."""
        results: list[LinkResult] = []
        for start in range(0, len(links), LINKS_PER_REQUEST):
            chunk = links[start : start + LINKS_PER_REQUEST]
            body = {
                "links": [
                    {"task_id": task_id, "salesforce_task_id": salesforce_task_id}
                    for task_id, salesforce_task_id in chunk
                ]
            }
            response = self._write(
                "PUT",
                "/api/salesforce-links",
                json=body,
                idempotency_key=f"{idempotency_key}:{start}",
            )
            results.extend(
                LinkResult(str(item["task_id"]), str(item["status"]), item.get("version"))
                for item in response.json()["results"]
            )
        return results

    # -- the change feed --------------------------------------------------------------------

    def changes(self, after: int, *, limit: int = 500, wait: float = 0.0) -> FeedPage:
        body = self._request(
            "GET",
            "/api/changes",
            params={"after": after, "limit": limit, "wait": wait},
            timeout=self.timeout + wait,
        ).json()
        return FeedPage(
            changes=tuple(FeedEntry.from_json(item) for item in body.get("changes", [])),
            next_after=int(body.get("next_after", after)),
            head_seq=int(body.get("head_seq", after)),
        )


def _api_error(response: requests.Response) -> SalesConnectApiError:
    code: str | None = None
    message = response.text[:300]
    try:
        error = response.json().get("error", {})
        code = error.get("code")
        message = str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    retry_after = response.headers.get("Retry-After")
    return SalesConnectApiError(
        response.status_code,
        message,
        code=code,
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )
