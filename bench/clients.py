"""Clients the benchmarks and the soak use to act as people and operators: a Sales Connect user
over the JSON API, a Salesforce user through simple-salesforce, and the emulator's admin API.

They are deliberately not the bridge's own clients (`bridge.salesconnect`, `bridge.salesforce`):
a user's writes carry no `X-Sync-Origin` and a user's Salesforce calls are counted under their
own `Sforce-Call-Options` client, so the bridge's counters never include them. The Sales Connect
client sends `BENCH_SERVICE_TOKEN` (the service credential every Sales Connect the benchmarks
start accepts, see `bench.system.hermetic_environment`) unless given a user's token.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import requests
from simple_salesforce.api import Salesforce, SFType

from salesconnect.stamps import text_to_ms

USER_CLIENT: Final = "user"
BENCH_CLIENT: Final = "bench"
# One per process, so no run's credential is ever written down anywhere.
BENCH_SERVICE_TOKEN: Final = "sc-bench-" + secrets.token_urlsafe(32)


class ApiError(Exception):
    """A non-2xx answer: `status`, the error `code` and the response text."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.text = response.text[:500]
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        self.code: str | None = error.get("code") if isinstance(error, dict) else None
        super().__init__(f"{response.request.method} {response.url}: {self.status} {self.text}")


def http_session(ca_path: str | Path, client: str | None = None) -> requests.Session:
    """A session that trusts the emulator's CA. `trust_env` is off because REQUESTS_CA_BUNDLE
    would otherwise override `verify` (docs/salesforce-emulator.md)."""
    session = requests.Session()
    session.verify = str(ca_path)
    session.trust_env = False
    if client:
        session.headers["Sforce-Call-Options"] = f"client={client}"
    return session


def stamp_ms(text: str) -> int:
    """A Sales Connect stamp (`2026-11-22T10:00:00.000Z`) as epoch milliseconds."""
    return int(text_to_ms(text))


class SalesConnectUser:
    """The Sales Connect JSON API as its users (and its admin pages) use it."""

    def __init__(
        self, base_url: str, *, token: str = BENCH_SERVICE_TOKEN, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        response = self.session.request(
            method,
            self.base_url + path,
            json=body,
            params=params,
            headers=dict(headers or {}),
            timeout=self.timeout,
        )
        if response.status_code >= 300:
            raise ApiError(response)
        return response

    def create_user(
        self,
        *,
        email: str,
        name: str,
        time_zone: str = "UTC",
        salesforce_user_id: str | None = None,
    ) -> dict[str, Any]:
        body = {"email": email, "name": name, "time_zone": time_zone}
        if salesforce_user_id is not None:
            body["salesforce_user_id"] = salesforce_user_id
        return cast(dict[str, Any], self.request("POST", "/api/users", body=body).json())

    def settings(self, user_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", f"/api/users/{user_id}/settings").json())

    def update_settings(self, user_id: str, **fields: Any) -> dict[str, Any]:
        response = self.request("PUT", f"/api/users/{user_id}/settings", body=fields)
        return cast(dict[str, Any], response.json())

    def create_task(
        self, user_id: str, fields: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self.request(
            "POST", f"/api/users/{user_id}/tasks", body=dict(fields), headers=headers
        )
        return cast(dict[str, Any], response.json())

    def task(self, task_id: str, *, include_deleted: bool = True) -> dict[str, Any]:
        params = {"include_deleted": "true"} if include_deleted else None
        response = self.request("GET", f"/api/tasks/{task_id}", params=params)
        return cast(dict[str, Any], response.json())

    def update_task(self, task_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        response = self.request("PATCH", f"/api/tasks/{task_id}", body=dict(fields))
        return cast(dict[str, Any], response.json())

    def delete_task(self, task_id: str) -> None:
        self.request("DELETE", f"/api/tasks/{task_id}")

    def restore_task(self, task_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("POST", f"/api/tasks/{task_id}/restore").json())

    def tasks(self, user_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every task of the user matching `params`, paging through the list."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            query = {**params, "limit": 500, **({"after": after} if after else {})}
            page = self.request("GET", f"/api/users/{user_id}/tasks", params=query).json()
            found.extend(page["tasks"])
            after = page.get("next_after")
            if not after or not page["tasks"]:
                return found

    def changes(self, after: int, *, limit: int = 1000, wait: float = 0.0) -> dict[str, Any]:
        """One page of the change feed; with `wait`, a long-poll."""
        params = {"after": after, "limit": limit, "wait": wait}
        response = self.session.get(
            f"{self.base_url}/api/changes", params=params, timeout=wait + self.timeout
        )
        if response.status_code >= 300:
            raise ApiError(response)
        return cast(dict[str, Any], response.json())

    def all_changes(self, after: int = 0) -> list[dict[str, Any]]:
        collected: list[dict[str, Any]] = []
        while True:
            page = self.changes(after)
            if not page["changes"]:
                return collected
            collected.extend(page["changes"])
            after = int(page["next_after"])

    def head_seq(self) -> int:
        return int(self.request("GET", "/healthz").json()["head_seq"])


class EmulatorAdmin:
    """The emulator's `/_emulator` API (docs/salesforce-emulator.md)."""

    def __init__(self, admin_url: str, ca_path: str) -> None:
        self.url = admin_url.rstrip("/")
        self.session = http_session(ca_path)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(method, f"{self.url}/{path}", json=body, timeout=60)
        if response.status_code >= 300:
            raise ApiError(response)
        return response.json()

    def stats(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "stats"))

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("PUT", "faults", changes))

    def expire_sessions(self) -> int:
        return int(self.request("POST", "expire-sessions")["expired"])

    def create_user(self, username: str, password: str, name: str) -> str:
        body = {"username": username, "password": password, "name": name}
        return str(self.request("POST", "users", body)["Id"])

    def undelete(self, task_id: str, user_id: str) -> dict[str, Any]:
        return cast(
            dict[str, Any], self.request("POST", f"tasks/{task_id}/undelete", {"user_id": user_id})
        )

    def set_validation_rules(self, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.request("PUT", "validation-rules", list(rules)))

    def notifications(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "notifications"))


def access_token(emulator: Mapping[str, Any], username: str, password: str) -> str:
    """An OAuth access token for a person (password grant) from the emulator's token URL."""
    session = http_session(emulator["ca_path"])
    response = session.post(
        emulator["token_url"],
        data={
            "grant_type": "password",
            "client_id": emulator["client_id"],
            "client_secret": emulator["client_secret"],
            "username": username,
            "password": password,
        },
        timeout=60,
    )
    if response.status_code != 200:
        raise ApiError(response)
    return str(response.json()["access_token"])


def salesforce_as(
    emulator: Mapping[str, Any], username: str, password: str, *, client: str = USER_CLIENT
) -> Salesforce:
    """simple-salesforce, unchanged, logged in to the emulator as a person."""
    return Salesforce(
        instance_url=emulator["instance_url"],
        session_id=access_token(emulator, username, password),
        session=http_session(emulator["ca_path"], client),
        version=str(emulator.get("api_version", "59.0")),
    )


def task_object(salesforce: Salesforce) -> SFType:
    """`salesforce.Task`, typed (simple-salesforce resolves object names dynamically)."""
    return cast(SFType, salesforce.Task)
