"""Routing one HTTPS request, and everything Salesforce does around an API call.

For `/services/data/vNN.N/...` the order is Salesforce's: authenticate the session (401
`INVALID_SESSION_ID`), apply this call's faults (latency, a dropped connection, 503
`SERVER_UNAVAILABLE`), refuse once the daily allowance is used up (403
`REQUEST_LIMIT_EXCEEDED`), count the call, run it (`UNABLE_TO_LOCK_ROW` injected on writes), and
answer with `Sforce-Limit-Info: api-usage=N/M`. The call's effect, its count and its statistics
commit together; a failed call rolls back its effect but is still counted, as in a real org.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final

from salesforce_emulator import composite
from salesforce_emulator.admin import ADMIN_PREFIX, AdminApi
from salesforce_emulator.auth import Authenticator
from salesforce_emulator.cursors import QueryCursors
from salesforce_emulator.errors import AdminError, ApiError, invalid_session, not_found
from salesforce_emulator.faults import CallFaults, FaultPlan
from salesforce_emulator.http_server import Request, Response
from salesforce_emulator.notifications import NotificationSender
from salesforce_emulator.org import Actor, Org
from salesforce_emulator.replies import admin_error_reply, api_error_reply, json_reply
from salesforce_emulator.rest_api import RestApi, RolledBackError
from salesforce_emulator.store import OrgStore
from salesforce_emulator.usage import CallLog, DailyApiUsage

log = logging.getLogger(__name__)
Answer = Callable[[], Response]

_DATA_PATH: Final = re.compile(r"^/services/data/v(\d{2,3}\.\d)(?:/(.*))?$")
_SOAP_PATH: Final = re.compile(r"^/services/Soap/u/(\d{2,3}\.\d)(?:/.*)?$")
_WRITE_METHODS: Final = frozenset({"POST", "PATCH", "PUT", "DELETE"})
LATEST_VERSION: Final = "62.0"
_VERSIONS: Final = (
    ("Winter '24", "59.0"),
    ("Spring '24", "60.0"),
    ("Summer '24", "61.0"),
    ("Winter '25", "62.0"),
)


def resource_name(segments: list[str]) -> str:
    """The resource a call used, with ids and values generalised, for the statistics."""
    if not segments:
        return "resources"
    head, rest = segments[0], segments[1:]
    parts = [head, *rest]
    if head == "sobjects" and len(rest) == 2 and rest[1] not in ("describe", "updated", "deleted"):
        parts = [head, rest[0], "{id}"]
    elif head == "sobjects" and len(rest) >= 3:
        parts = [head, rest[0], rest[1], "{value}"]
    elif head in ("query", "queryAll") and rest:
        parts = [head, "{locator}"]
    elif head == "composite":
        parts = [head, *rest[:3]]
    elif head != "sobjects":
        parts = [head]
    return "/".join(parts)


def _versions() -> Response:
    return json_reply(
        200,
        [
            {"label": label, "url": f"/services/data/v{version}", "version": version}
            for label, version in _VERSIONS
        ],
    )


def call_options(request: Request) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in (request.header("Sforce-Call-Options") or "").split(","):
        key, _, value = part.partition("=")
        if key.strip():
            options[key.strip().lower()] = value.strip()
    return options


class EmulatorApp:
    """The whole emulator behind one HTTPS port."""

    def __init__(
        self,
        store: OrgStore,
        org: Org,
        faults: FaultPlan,
        notifications: NotificationSender,
        *,
        client_id: str,
        client_secret: str,
    ) -> None:
        self.store = store
        self.org = org
        self.faults = faults
        self.notifications = notifications
        self.usage = DailyApiUsage(store)
        self.calls = CallLog(store)
        self.cursors = QueryCursors()
        self.auth = Authenticator(org, faults, client_id, client_secret)
        self.rest = RestApi(org, self.cursors, self.usage, faults)
        self.admin = AdminApi(
            org,
            faults=faults,
            usage=self.usage,
            calls=self.calls,
            notifications=notifications,
            on_reset=self.cursors.clear,
        )

    def set_instance_url(self, url: str) -> None:
        self.auth.instance_url = url

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            try:
                return self.admin.handle(request)
            except AdminError as error:
                return admin_error_reply(error)
        data = _DATA_PATH.match(path)
        if data is not None:
            segments = [part for part in (data.group(2) or "").split("/") if part]
            return self._api_call(request, data.group(1), segments)
        soap = _SOAP_PATH.match(path)
        answer: Answer
        if path.rstrip("/") == "/services/oauth2/token":
            resource, answer = "oauth2/token", lambda: self.auth.token(request)
        elif soap and request.method == "POST":
            version = soap.group(1)
            resource, answer = "soap/login", lambda: self.auth.soap_login(request, version)
        elif path.rstrip("/") == "/services/data":
            resource, answer = "versions", _versions
        else:
            resource, answer = "unknown", lambda: api_error_reply(not_found())
        return self._counted(resource, request, answer)

    def _counted(self, resource: str, request: Request, answer: Answer) -> Response:
        response = answer()
        with self.store.transaction():
            self.calls.record(
                call_options(request).get("client", ""),
                "",
                resource,
                request.method,
                str(response.status),
            )
        return response

    def _api_call(self, request: Request, version: str, segments: list[str]) -> Response:
        client = call_options(request).get("client", "")
        resource = resource_name(segments)
        user = self._session_user(request)
        if isinstance(user, ApiError):
            with self.store.transaction():
                self.calls.record(client, "", resource, request.method, str(user.status))
            return api_error_reply(user)
        actor = Actor(user["Id"], user["Username"], client)
        writes = request.method in _WRITE_METHODS and (
            segments != ["composite"] or composite.is_write(request.body)
        )
        faults = self.faults.draw(is_write=writes)
        if faults.latency_seconds:
            time.sleep(faults.latency_seconds)
        if faults.drop_connection:
            self._record(actor, resource, request, "dropped")
            return Response(0, drop_connection=True)
        if faults.server_unavailable:
            self._record(actor, resource, request, "503")
            return api_error_reply(
                ApiError(
                    503, "SERVER_UNAVAILABLE", "Server temporarily unavailable; try again later"
                )
            )
        response = self._within_allowance(
            request, version, segments, actor, resource=resource, faults=faults
        )
        if faults.drop_response:
            return Response(0, drop_connection=True)
        return response

    def _within_allowance(
        self,
        request: Request,
        version: str,
        segments: list[str],
        actor: Actor,
        *,
        resource: str,
        faults: CallFaults,
    ) -> Response:
        limit = self.faults.settings.daily_api_limit
        with self.store.transaction():
            used = self.usage.used()
            if used >= limit or faults.request_limit:
                response = api_error_reply(
                    ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                )
            else:
                used = self.usage.count_call()
                response = self._run(request, version, segments, actor, faults=faults)
            status = "dropped" if faults.drop_response else str(response.status)
            self.calls.record(actor.client, actor.username, resource, request.method, status)
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        return response

    def _run(
        self,
        request: Request,
        version: str,
        segments: list[str],
        actor: Actor,
        *,
        faults: CallFaults,
    ) -> Response:
        if faults.unable_to_lock_row:
            record_id = segments[2] if len(segments) >= 3 and segments[0] == "sobjects" else ""
            return api_error_reply(
                ApiError(
                    400,
                    "UNABLE_TO_LOCK_ROW",
                    f"unable to obtain exclusive access to this record or 1 records: {record_id}",
                    [],
                )
            )
        try:
            with self.store.transaction():
                return self.rest.handle(request, version, segments, actor)
        except RolledBackError as rolled_back:
            return rolled_back.response
        except ApiError as error:
            return api_error_reply(error)

    def _record(self, actor: Actor, resource: str, request: Request, status: str) -> None:
        with self.store.transaction():
            self.calls.record(actor.client, actor.username, resource, request.method, status)

    def _session_user(self, request: Request) -> dict[str, Any] | ApiError:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token.strip():
            return ApiError(401, "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE")
        user = self.org.session_user(token.strip())
        return invalid_session() if user is None else user
