"""The emulator's own admin API under `/_emulator/` (clearly not Salesforce), loopback only.

Tests, benchmarks and operators use it to add users, read call statistics, switch faults on and
off, expire sessions, press the recycle bin's Undelete button, backdate records, configure the
plugin stand-in and validation rules, and reset the org. Bad input answers 4xx with
`{"error": "<field>: <rule>"}` and changes nothing.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from salesforce_emulator import ids
from salesforce_emulator.errors import AdminError
from salesforce_emulator.faults import FaultPlan
from salesforce_emulator.http_server import Request, Response
from salesforce_emulator.notifications import NotificationSender
from salesforce_emulator.org import Actor, Org
from salesforce_emulator.replies import json_reply
from salesforce_emulator.sobjects import TASK
from salesforce_emulator.stamps import format_instant
from salesforce_emulator.usage import CallLog, DailyApiUsage

ADMIN_PREFIX: Final = "/_emulator"
ADMIN_CLIENT: Final = "(admin)"

ENDPOINTS: Final = {
    "GET /_emulator/health": "liveness and the org id",
    "GET /_emulator/users": "list users",
    "POST /_emulator/users": "add a user {username, password, name[, email, time_zone]}",
    "PATCH /_emulator/users/{id}": "change {is_active, password}",
    "GET /_emulator/stats": "API calls by resource, method, status, client and user; usage",
    "DELETE /_emulator/stats": "zero the call statistics (not the daily API usage)",
    "GET /_emulator/faults": "current fault settings",
    "PUT /_emulator/faults": "change some fault settings",
    "POST /_emulator/expire-sessions": "expire every session now",
    "POST /_emulator/tasks/{id}/undelete": "the recycle bin's Undelete button [{user_id}]",
    "PATCH /_emulator/tasks/{id}": "backdate CreatedDate, LastModifiedDate, SystemModstamp, "
    "DeletedDate",
    "POST /_emulator/recycle-bin/purge": "purge what is older than 15 days now",
    "GET /_emulator/validation-rules": "list validation rules",
    "PUT /_emulator/validation-rules": "replace validation rules",
    "GET /_emulator/notifications": "plugin stand-in settings and delivery counters",
    "PUT /_emulator/notifications": "set ingress_url, ingress_secret, batch_window_ms, "
    "ingress_ca_path",
    "GET /_emulator/external-id": "whether Sales_Connect_Id__c is unique and case-sensitive",
    "PUT /_emulator/external-id": "set {unique, case_sensitive}",
    "POST /_emulator/reset": "back to a fresh org (default users kept, everything else cleared)",
}


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class AdminApi:
    def __init__(
        self,
        org: Org,
        *,
        faults: FaultPlan,
        usage: DailyApiUsage,
        calls: CallLog,
        notifications: NotificationSender,
        on_reset: Callable[[], None],
    ) -> None:
        self.org = org
        self.faults = faults
        self.usage = usage
        self.calls = calls
        self.notifications = notifications
        self.on_reset = on_reset

    def handle(self, request: Request) -> Response:
        if not is_loopback(request.client_host):
            raise AdminError(403, "the admin API answers loopback clients only")
        path = request.path[len(ADMIN_PREFIX) :].strip("/")
        parts = path.split("/") if path else []
        route = (request.method, parts[0] if parts else "")
        handlers: dict[tuple[str, str], Callable[[Request, list[str]], Response]] = {
            ("GET", ""): lambda r, p: json_reply(200, {"endpoints": ENDPOINTS}),
            ("GET", "health"): lambda r, p: json_reply(
                200, {"ok": True, "org_id": self.org.org_id}
            ),
            ("GET", "users"): self._list_users,
            ("POST", "users"): self._create_user,
            ("PATCH", "users"): self._update_user,
            ("GET", "stats"): self._stats,
            ("DELETE", "stats"): self._clear_stats,
            ("GET", "faults"): lambda r, p: json_reply(200, self.faults.settings.to_json()),
            ("PUT", "faults"): lambda r, p: json_reply(200, self.faults.update(_json(r)).to_json()),
            ("POST", "expire-sessions"): lambda r, p: json_reply(
                200, {"expired": self.org.expire_sessions()}
            ),
            ("POST", "tasks"): self._undelete,
            ("PATCH", "tasks"): self._backdate,
            ("POST", "recycle-bin"): self._purge,
            ("GET", "validation-rules"): lambda r, p: json_reply(
                200, [rule.to_json() for rule in self.org.rules]
            ),
            ("PUT", "validation-rules"): lambda r, p: json_reply(
                200, [rule.to_json() for rule in self.org.set_rules(_json(r))]
            ),
            ("GET", "notifications"): lambda r, p: json_reply(200, self.notifications.status()),
            ("PUT", "notifications"): self._configure_notifications,
            ("GET", "external-id"): lambda r, p: json_reply(
                200, self.org.external_id_options.to_json()
            ),
            ("PUT", "external-id"): self._external_id,
            ("POST", "reset"): self._reset,
        }
        handler = handlers.get(route)
        if handler is None:
            known = sorted({name for _, name in handlers if name})
            if route[1] in known:
                raise AdminError(405, f"{request.method} is not allowed on /_emulator/{route[1]}")
            raise AdminError(404, f"/_emulator/{path}: no such endpoint; GET /_emulator lists them")
        return handler(request, parts)

    def _list_users(self, request: Request, parts: list[str]) -> Response:
        return json_reply(200, [_user_json(user) for user in self.org.users()])

    def _create_user(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 1:
            raise AdminError(404, "POST /_emulator/users takes no id")
        user = self.org.create_user(_json(request))
        return json_reply(201, {"Id": user["Id"], **_user_json(user)})

    def _update_user(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 2:
            raise AdminError(404, "PATCH /_emulator/users/{id}: give the user's id")
        return json_reply(200, _user_json(self.org.update_user(parts[1], _json(request))))

    def _stats(self, request: Request, parts: list[str]) -> Response:
        stats = self.calls.snapshot()
        stats["api_usage"] = {
            "used": self.usage.used(),
            "max": self.faults.settings.daily_api_limit,
        }
        stats["notifications"] = self.notifications.status()
        return json_reply(200, stats)

    def _clear_stats(self, request: Request, parts: list[str]) -> Response:
        self.calls.clear()
        return json_reply(200, {"cleared": True})

    def _undelete(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 3 or parts[2] != "undelete":
            raise AdminError(404, "use POST /_emulator/tasks/{id}/undelete")
        body = _json(request, default={})
        if not isinstance(body, Mapping) or set(body) - {"user_id"}:
            raise AdminError(
                400, 'body: optional {"user_id": "<id of the user pressing Undelete>"}'
            )
        user = self.org.sales_rep
        if "user_id" in body:
            chosen = body["user_id"]
            found = (
                self.org.user(ids.normalise_id(chosen) or "") if isinstance(chosen, str) else None
            )
            if found is None:
                raise AdminError(400, f"user_id: {chosen!r} is not a user of this org")
            user = found
        row = self.org.undelete_task(parts[1], Actor(user["Id"], user["Username"], ADMIN_CLIENT))
        return json_reply(200, TASK.row_to_json(row, "59.0"))

    def _backdate(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 2:
            raise AdminError(404, "use PATCH /_emulator/tasks/{id}")
        row = self.org.backdate_task(parts[1], _json(request))
        result = TASK.row_to_json(row, "59.0")
        deleted_at = row["deleted_at"]
        result["DeletedDate"] = None if deleted_at is None else format_instant(deleted_at)
        return json_reply(200, result)

    def _purge(self, request: Request, parts: list[str]) -> Response:
        if parts[1:] != ["purge"]:
            raise AdminError(404, "use POST /_emulator/recycle-bin/purge")
        return json_reply(200, {"purged": self.org.purge_recycle_bin()})

    def _configure_notifications(self, request: Request, parts: list[str]) -> Response:
        self.notifications.configure(_json(request))
        return json_reply(200, self.notifications.status())

    def _external_id(self, request: Request, parts: list[str]) -> Response:
        return json_reply(200, self.org.set_external_id_options(_json(request)).to_json())

    def _reset(self, request: Request, parts: list[str]) -> Response:
        self.org.reset()
        self.usage.clear()
        self.faults.reset()
        self.notifications.reset()
        self.on_reset()
        return json_reply(200, {"reset": True})


def _json(request: Request, default: Any = None) -> Any:
    if not request.body.strip():
        if default is not None:
            return default
        raise AdminError(400, "body: a JSON document is required")
    try:
        return json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdminError(400, f"body: not valid JSON ({exc})") from None


def _user_json(user: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Id": user["Id"],
        "Username": user["Username"],
        "Name": user["Name"],
        "Email": user["Email"],
        "IsActive": bool(user["IsActive"]),
        "TimeZoneSidKey": user["TimeZoneSidKey"],
        "role": user["role"],
    }
