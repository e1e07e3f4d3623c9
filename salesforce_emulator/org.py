"""The emulated org: its users and sessions, and the rules every Task save, delete and undelete
follows.

A save runs in Salesforce's order: deserialise the body (`records.py`), apply defaults and
derived fields (`IsClosed` from the status), check the owner and the unique external id, run the
admin's validation rules, then stamp `LastModifiedDate`/`SystemModstamp` (milliseconds, strictly
increasing) and `LastModifiedById` (the caller). Each operation runs in one transaction (a
savepoint when part of a collection) together with its notification for the plugin stand-in and
its write counter, so a failed save leaves nothing behind.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from salesforce_emulator import ids
from salesforce_emulator.errors import (
    AdminError,
    ApiError,
    entity_is_deleted,
    not_found,
    record_error,
)
from salesforce_emulator.records import parse_body
from salesforce_emulator.sobjects import (
    CLOSED_STATUSES,
    DEFAULT_PRIORITY,
    DEFAULT_STATUS,
    DEFAULT_TASK_SUBTYPE,
    EXTERNAL_ID_FIELD,
    TASK,
    TASK_STATUSES,
)
from salesforce_emulator.stamps import MILLIS_PER_DAY, now_ms, parse_instant
from salesforce_emulator.store import OrgStore, new_password_hash, password_matches
from salesforce_emulator.validation_rules import ValidationRule, first_violation, load_rules
from schemas.notification import MAPPED_TASK_FIELDS, TriggerOp

INTEGRATION_ROLE: Final = "integration"
SALES_REP_ROLE: Final = "sales_rep"
USER_ROLE: Final = "user"
DEFAULT_INTEGRATION_USERNAME: Final = "integration@tasksync.example"
DEFAULT_INTEGRATION_PASSWORD: Final = "Integration-Passw0rd"  # noqa: S105 (documented default)
DEFAULT_SALES_REP_USERNAME: Final = "sales.rep@tasksync.example"
DEFAULT_SALES_REP_PASSWORD: Final = "SalesRep-Passw0rd"  # noqa: S105 (documented default)
NO_CLIENT: Final = "(none)"
RECYCLE_BIN_DAYS: Final = 15
DELETE_LOG_DAYS: Final = 30
_USERNAME: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FIRST_SERIAL: Final = 2_000_000_000
_BACKDATABLE: Final = ("CreatedDate", "LastModifiedDate", "SystemModstamp", "DeletedDate")


class NotificationGate(Protocol):
    """The plugin stand-in as a save sees it."""

    def admit(self) -> bool:
        """Whether a change made now is to be notified."""
        ...

    def wake(self) -> None:
        """A notification was enqueued: send soon."""
        ...


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the session's user, and the client named in Sforce-Call-Options."""

    user_id: str
    username: str
    client: str = ""


@dataclass(frozen=True)
class ExternalIdOptions:
    """How Sales_Connect_Id__c behaves: unique or not, matching case or not."""

    unique: bool
    case_sensitive: bool

    def to_json(self) -> dict[str, bool]:
        return {"unique": self.unique, "case_sensitive": self.case_sensitive}


@dataclass(frozen=True)
class Session:
    token: str
    user_id: str
    expires_ms: int


class MultipleMatchesError(ApiError):
    """An upsert whose external id matched several records: 300 with their URLs."""

    def __init__(self, field: str, record_ids: Sequence[str], version: str) -> None:
        super().__init__(
            300,
            "DUPLICATE_EXTERNAL_ID",
            f"{field}: more than one record found for external id field: [{', '.join(record_ids)}]",
            [field],
        )
        self.urls = [f"/services/data/v{version}/sobjects/Task/{rid}" for rid in record_ids]

    def body(self) -> list[Any]:
        return list(self.urls)


class Org:
    """One org's users, sessions and Tasks on top of its SQLite store."""

    def __init__(
        self,
        store: OrgStore,
        *,
        seed: int | None,
        notifications: NotificationGate,
    ) -> None:
        self.store = store
        self.notifications = notifications
        with store.transaction():
            if store.meta("org_id") is None:
                self._bootstrap(seed)
        self.org_id = str(store.meta("org_id"))
        self._load_external_id_options()
        self.created_ms = int(store.meta("created_ms") or 0)
        self._users: dict[str, dict[str, Any]] = {}
        self._reload_users()
        self._sessions = {
            row["token"]: Session(row["token"], row["user_id"], row["expires_ms"])
            for row in store.rows("SELECT token, user_id, expires_ms FROM sessions")
        }
        self.rules: tuple[ValidationRule, ...] = load_rules(
            [
                json.loads(r["rule"])
                for r in store.rows("SELECT rule FROM validation_rules ORDER BY position")
            ]
        )

    # -- set-up ------------------------------------------------------------------------------

    def _bootstrap(self, seed: int | None) -> None:
        chooser = random.Random(seed) if seed is not None else random.SystemRandom()
        created = now_ms()
        org_id = ids.make_id(ids.ORG_PREFIX, chooser.randrange(62**7, 62**8))
        self.store.set_meta("org_id", org_id)
        self.store.set_meta("created_ms", str(created))
        self.store.set_meta("external_id_unique", "1")
        integration = self._insert_user(
            DEFAULT_INTEGRATION_USERNAME,
            DEFAULT_INTEGRATION_PASSWORD,
            "Tasksync Integration",
            INTEGRATION_ROLE,
            creator=None,
        )
        self._insert_user(
            DEFAULT_SALES_REP_USERNAME,
            DEFAULT_SALES_REP_PASSWORD,
            "Sam Rep",
            SALES_REP_ROLE,
            creator=integration,
        )
        for order, (name, closed, default) in enumerate(TASK_STATUSES, start=1):
            stamp = self.store.next_stamp()
            self.store.insert(
                "TaskStatus",
                {
                    "Id": ids.make_id(ids.TASK_STATUS_PREFIX, _FIRST_SERIAL + order),
                    "MasterLabel": name,
                    "ApiName": name,
                    "SortOrder": order,
                    "IsDefault": int(default),
                    "IsClosed": int(closed),
                    "CreatedDate": stamp,
                    "CreatedById": integration,
                    "LastModifiedDate": stamp,
                    "LastModifiedById": integration,
                    "SystemModstamp": stamp,
                },
            )

    def _insert_user(
        self,
        username: str,
        password: str,
        name: str,
        role: str,
        *,
        creator: str | None,
        email: str | None = None,
        time_zone: str = "America/Los_Angeles",
    ) -> str:
        user_id = ids.make_id(
            ids.USER_PREFIX, self.store.next_serial(ids.USER_PREFIX, _FIRST_SERIAL)
        )
        first, _, last = name.strip().rpartition(" ")
        salt, digest = new_password_hash(password)
        stamp = self.store.next_stamp()
        self.store.insert(
            "User",
            {
                "Id": user_id,
                "Username": username,
                "username_key": username.casefold(),
                "LastName": last,
                "FirstName": first or None,
                "Name": name.strip(),
                "Email": email or username,
                "IsActive": 1,
                "TimeZoneSidKey": time_zone,
                "CreatedDate": stamp,
                "CreatedById": creator or user_id,
                "LastModifiedDate": stamp,
                "LastModifiedById": creator or user_id,
                "SystemModstamp": stamp,
                "password_salt": salt,
                "password_hash": digest,
                "role": role,
            },
        )
        return user_id

    def _reload_users(self) -> None:
        users = {row["Id"]: row for row in self.store.rows('SELECT * FROM "User"')}
        self._by_role = {
            role: min((u for u in users.values() if u["role"] == role), key=_created)
            for role in (INTEGRATION_ROLE, SALES_REP_ROLE)
        }
        self._users = users

    # -- users -------------------------------------------------------------------------------

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self._users.get(user_id)

    def users(self) -> list[dict[str, Any]]:
        return sorted(self._users.values(), key=_created)

    def user_with_role(self, role: str) -> dict[str, Any]:
        return self._by_role[role]

    @property
    def integration_user(self) -> dict[str, Any]:
        return self.user_with_role(INTEGRATION_ROLE)

    @property
    def sales_rep(self) -> dict[str, Any]:
        return self.user_with_role(SALES_REP_ROLE)

    def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        key = username.casefold()
        for user in self._users.values():
            if user["username_key"] == key:
                if user["IsActive"] and password_matches(
                    password, user["password_salt"], user["password_hash"]
                ):
                    return user
                return None
        return None

    def create_user(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise AdminError(400, "body: must be a JSON object with username, password and name")
        allowed = {"username", "password", "name", "email", "time_zone"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise AdminError(400, f"body: unknown keys {unknown}; allowed are {sorted(allowed)}")
        username, password, name = body.get("username"), body.get("password"), body.get("name")
        if not isinstance(username, str) or not _USERNAME.match(username) or len(username) > 80:
            raise AdminError(
                400, "username: must look like an email address (name@domain.tld), at most 80 chars"
            )
        if not isinstance(password, str) or len(password) < 8:
            raise AdminError(400, "password: must be a text of at least 8 characters")
        if not isinstance(name, str) or not name.strip() or len(name) > 121:
            raise AdminError(400, "name: must be a non-blank text of at most 121 characters")
        email = body.get("email")
        time_zone = body.get("time_zone", "America/Los_Angeles")
        if email is not None and (not isinstance(email, str) or not _USERNAME.match(email)):
            raise AdminError(400, "email: must be an email address")
        if not isinstance(time_zone, str) or not time_zone:
            raise AdminError(400, "time_zone: must be a time zone name such as Europe/Berlin")
        if any(u["username_key"] == username.casefold() for u in self._users.values()):
            raise AdminError(409, f"username: {username} is taken (usernames are unique)")
        with self.store.transaction():
            user_id = self._insert_user(
                username,
                password,
                name,
                USER_ROLE,
                creator=self.integration_user["Id"],
                email=email,
                time_zone=time_zone,
            )
        self._reload_users()
        return self._users[user_id]

    def update_user(self, user_id: str, body: Any) -> dict[str, Any]:
        user = self._users.get(ids.normalise_id(user_id) or "")
        if user is None:
            raise AdminError(404, f"user {user_id}: no such user")
        if not isinstance(body, Mapping) or not body:
            raise AdminError(400, "body: must be a JSON object with is_active and/or password")
        unknown = sorted(set(body) - {"is_active", "password"})
        if unknown:
            raise AdminError(400, f"body: unknown keys {unknown}; allowed are is_active, password")
        changes: dict[str, Any] = {}
        if "is_active" in body:
            if not isinstance(body["is_active"], bool):
                raise AdminError(400, "is_active: must be true or false")
            if not body["is_active"] and user["role"] == INTEGRATION_ROLE:
                raise AdminError(409, "is_active: the integration user cannot be deactivated")
            changes["IsActive"] = int(body["is_active"])
        if "password" in body:
            if not isinstance(body["password"], str) or len(body["password"]) < 8:
                raise AdminError(400, "password: must be a text of at least 8 characters")
            changes["password_salt"], changes["password_hash"] = new_password_hash(body["password"])
        with self.store.transaction():
            stamp = self.store.next_stamp()
            changes.update({"LastModifiedDate": stamp, "SystemModstamp": stamp})
            self.store.update("User", user["Id"], changes)
            if changes.get("IsActive") == 0:
                self.store.execute("DELETE FROM sessions WHERE user_id = ?", (user["Id"],))
                self._sessions = {
                    t: s for t, s in self._sessions.items() if s.user_id != user["Id"]
                }
        self._reload_users()
        return self._users[user["Id"]]

    # -- sessions ----------------------------------------------------------------------------

    def issue_session(self, user_id: str, lifetime_seconds: int) -> tuple[str, int]:
        issued = now_ms()
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        session = Session(token, user_id, issued + lifetime_seconds * 1000)
        with self.store.transaction():
            self.store.execute("DELETE FROM sessions WHERE expires_ms < ?", (issued,))
            self.store.insert(
                "sessions",
                {
                    "token": token,
                    "user_id": user_id,
                    "issued_ms": issued,
                    "expires_ms": session.expires_ms,
                },
            )
            # Under the store's lock, so concurrent logins never lose each other's session.
            live = {t: s for t, s in self._sessions.items() if s.expires_ms >= issued}
            live[token] = session
            self._sessions = live
        return token, issued

    def session_user(self, token: str) -> dict[str, Any] | None:
        session = self._sessions.get(token)
        if session is None or session.expires_ms <= now_ms():
            return None
        user = self._users.get(session.user_id)
        return user if user is not None and user["IsActive"] else None

    def expire_sessions(self) -> int:
        with self.store.transaction():
            expired = self.store.execute("DELETE FROM sessions")
            self._sessions = {}
        return expired

    # -- reading Tasks -----------------------------------------------------------------------

    def task(self, record_id: str) -> dict[str, Any] | None:
        return self.store.row("SELECT * FROM Task WHERE Id = ?", (record_id,))

    def live_task(self, record_id: str) -> dict[str, Any]:
        """The Task with this id; 404 NOT_FOUND or ENTITY_IS_DELETED otherwise."""
        normalised = ids.normalise_id(record_id)
        row = self.task(normalised) if normalised else None
        if row is None:
            raise not_found()
        if row["IsDeleted"]:
            raise entity_is_deleted()
        return row

    def tasks_by_external_id(self, value: str) -> list[dict[str, Any]]:
        return self.store.rows(
            "SELECT * FROM Task WHERE external_id_key = ? AND IsDeleted = 0 ORDER BY Id",
            (self.external_id_key(value),),
        )

    @property
    def external_id_options(self) -> ExternalIdOptions:
        return self._external_id_options

    def _load_external_id_options(self) -> None:
        self._external_id_options = ExternalIdOptions(
            unique=self.store.meta("external_id_unique") != "0",
            # The Salesforce-side package deploys the field case-sensitive; match it by default.
            case_sensitive=self.store.meta("external_id_case_sensitive") != "0",
        )

    @property
    def external_id_unique(self) -> bool:
        return self.external_id_options.unique

    def external_id_key(self, value: str | None) -> str | None:
        """What upserts match on: the value itself, or folded when the field ignores case."""
        if value is None or self.external_id_options.case_sensitive:
            return value
        return value.casefold()

    def set_external_id_options(self, body: Any) -> ExternalIdOptions:
        """Change whether Sales_Connect_Id__c is unique and whether it matches case."""
        if not isinstance(body, Mapping) or not body or set(body) - {"unique", "case_sensitive"}:
            raise AdminError(
                400, 'body: {"unique": <bool>, "case_sensitive": <bool>}, either or both'
            )
        if any(not isinstance(value, bool) for value in body.values()):
            raise AdminError(400, "unique, case_sensitive: must be true or false")
        current = self.external_id_options
        wanted = ExternalIdOptions(
            unique=body.get("unique", current.unique),
            case_sensitive=body.get("case_sensitive", current.case_sensitive),
        )
        with self.store.lock:
            self._external_id_options = wanted
            try:
                self._store_external_id_options(wanted)
            except AdminError:
                self._external_id_options = current
                raise
        return wanted

    def _store_external_id_options(self, wanted: ExternalIdOptions) -> None:
        with self.store.transaction():
            self.store.set_meta("external_id_unique", "1" if wanted.unique else "0")
            self.store.set_meta("external_id_case_sensitive", "1" if wanted.case_sensitive else "0")
            for row in self.store.rows(
                f"SELECT Id, {EXTERNAL_ID_FIELD} FROM Task WHERE {EXTERNAL_ID_FIELD} IS NOT NULL"
            ):
                self.store.update(
                    "Task",
                    row["Id"],
                    {"external_id_key": self.external_id_key(row[EXTERNAL_ID_FIELD])},
                )
            if not wanted.unique:
                return
            duplicate = self.store.row(
                "SELECT external_id_key, COUNT(*) AS n FROM Task WHERE IsDeleted = 0 AND "
                "external_id_key IS NOT NULL GROUP BY external_id_key HAVING n > 1 LIMIT 1"
            )
            if duplicate is not None:
                raise AdminError(
                    409,
                    f"unique: {duplicate['n']} Tasks share {EXTERNAL_ID_FIELD} "
                    f"{duplicate['external_id_key']!r}; make them distinct first",
                )

    # -- saving Tasks ------------------------------------------------------------------------

    def create_task(
        self, body: Any, text: str, actor: Actor, *, external_id: str | None = None
    ) -> dict[str, Any]:
        values = parse_body(TASK, body, text, creating=True)
        if external_id is not None:
            values[EXTERNAL_ID_FIELD] = external_id
        with self.store.transaction():
            row: dict[str, Any] = {name: None for name in TASK.field_names}
            row.update(
                {
                    "Status": DEFAULT_STATUS,
                    "Priority": DEFAULT_PRIORITY,
                    "OwnerId": actor.user_id,
                    "TaskSubtype": DEFAULT_TASK_SUBTYPE,
                    "IsRecurrence": 0,
                    "IsDeleted": 0,
                }
            )
            row.update(values)
            self._check_owner(row["OwnerId"])
            row["IsClosed"] = int(row["Status"] in CLOSED_STATUSES)
            self._check_rules_and_uniqueness(row)
            serial = self.store.next_serial(ids.TASK_PREFIX, _FIRST_SERIAL)
            stamp = self.store.next_stamp()
            row.update(
                {
                    "Id": ids.make_id(ids.TASK_PREFIX, serial),
                    "CreatedDate": stamp,
                    "CreatedById": actor.user_id,
                    "LastModifiedDate": stamp,
                    "LastModifiedById": actor.user_id,
                    "SystemModstamp": stamp,
                }
            )
            self.store.insert(
                "Task", {**row, "external_id_key": self.external_id_key(row[EXTERNAL_ID_FIELD])}
            )
            self._notify(row, TriggerOp.INSERT, MAPPED_TASK_FIELDS, actor)
            self._count_write(actor, "create")
        return row

    def update_task(
        self,
        record_id: str,
        body: Any,
        text: str,
        actor: Actor,
        *,
        unmodified_since_ms: int | None = None,
        current: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        values = parse_body(TASK, body, text, creating=False)
        with self.store.transaction():
            before = current or self.live_task(record_id)
            if unmodified_since_ms is not None and (
                before["LastModifiedDate"] // 1000 > unmodified_since_ms // 1000
            ):
                raise ApiError(
                    412,
                    "PRECONDITION_FAILED",
                    "The requested resource has been modified since the time given in the "
                    "If-Unmodified-Since header",
                )
            row = {**before, **values}
            if "OwnerId" in values and values["OwnerId"] != before["OwnerId"]:
                self._check_owner(row["OwnerId"])
            row["IsClosed"] = int(row["Status"] in CLOSED_STATUSES)
            self._check_rules_and_uniqueness(row)
            stamp = self.store.next_stamp()
            row.update(
                {
                    "LastModifiedDate": stamp,
                    "LastModifiedById": actor.user_id,
                    "SystemModstamp": stamp,
                }
            )
            changes = {name: row[name] for name in row if row[name] != before[name]}
            if EXTERNAL_ID_FIELD in changes:
                changes["external_id_key"] = self.external_id_key(row[EXTERNAL_ID_FIELD])
            self.store.update("Task", before["Id"], changes)
            changed = tuple(name for name in MAPPED_TASK_FIELDS if row[name] != before[name])
            if changed:
                self._notify(row, TriggerOp.UPDATE, changed, actor)
            self._count_write(actor, "update")
        return row

    def upsert_task(
        self,
        field_name: str,
        value: str,
        body: Any,
        text: str,
        actor: Actor,
        *,
        version: str,
        update_only: bool = False,
        unmodified_since_ms: int | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Create or update by external id; returns the record and whether it was created."""
        spec = TASK.get_field(field_name)
        if spec is None or not (spec.external_id or spec.name == "Id"):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        if spec.name == "Id":
            row = self.update_task(
                value, body, text, actor, unmodified_since_ms=unmodified_since_ms
            )
            return row, False
        if isinstance(body, Mapping):
            sent = next((v for k, v in body.items() if k.lower() == spec.name.lower()), None)
            if sent is not None and self.external_id_key(str(sent)) != self.external_id_key(value):
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"The value of {spec.name} in the request body ({sent}) differs from the "
                    f"external id in the URL ({value})",
                )
        with self.store.transaction():
            matches = self.tasks_by_external_id(value)
            if len(matches) > 1:
                raise MultipleMatchesError(spec.name, [m["Id"] for m in matches], version)
            if matches:
                row = self.update_task(
                    matches[0]["Id"],
                    body,
                    text,
                    actor,
                    unmodified_since_ms=unmodified_since_ms,
                    current=matches[0],
                )
                return row, False
            if update_only:
                raise not_found()
            return self.create_task(body, text, actor, external_id=value), True

    def delete_task(self, record_id: str, actor: Actor) -> None:
        with self.store.transaction():
            row = self.live_task(record_id)
            stamp = self.store.next_stamp()
            changes = {
                "IsDeleted": 1,
                "deleted_at": stamp,
                "LastModifiedDate": stamp,
                "LastModifiedById": actor.user_id,
                "SystemModstamp": stamp,
            }
            self.store.update("Task", row["Id"], changes)
            self.store.execute(
                "INSERT INTO deleted_log (Id, deleted_date) VALUES (?, ?) "
                "ON CONFLICT (Id) DO UPDATE SET deleted_date = excluded.deleted_date",
                (row["Id"], stamp),
            )
            self._notify({**row, **changes}, TriggerOp.DELETE, (), actor)
            self._count_write(actor, "delete")

    def undelete_task(self, record_id: str, actor: Actor) -> dict[str, Any]:
        """The recycle bin's Undelete button."""
        normalised = ids.normalise_id(record_id)
        with self.store.transaction():
            row = self.task(normalised) if normalised else None
            if row is None:
                raise AdminError(404, f"task {record_id}: no such Task (never existed or purged)")
            if not row["IsDeleted"]:
                raise AdminError(409, f"task {record_id}: is not in the recycle bin")
            if self.external_id_unique and row[EXTERNAL_ID_FIELD] is not None:
                clash = self.tasks_by_external_id(row[EXTERNAL_ID_FIELD])
                if clash:
                    raise AdminError(
                        409,
                        f"task {record_id}: {EXTERNAL_ID_FIELD} {row[EXTERNAL_ID_FIELD]!r} is "
                        f"now used by {clash[0]['Id']} (DUPLICATE_VALUE)",
                    )
            stamp = self.store.next_stamp()
            changes = {
                "IsDeleted": 0,
                "deleted_at": None,
                "LastModifiedDate": stamp,
                "LastModifiedById": actor.user_id,
                "SystemModstamp": stamp,
            }
            self.store.update("Task", row["Id"], changes)
            self.store.execute("DELETE FROM deleted_log WHERE Id = ?", (row["Id"],))
            row.update(changes)
            self._notify(row, TriggerOp.UNDELETE, MAPPED_TASK_FIELDS, actor)
            self._count_write(actor, "undelete")
        return row

    def backdate_task(self, record_id: str, body: Any) -> dict[str, Any]:
        """Test data for the 24-hour and 15-day rules: move a Task's stamps into the past."""
        normalised = ids.normalise_id(record_id)
        row = self.task(normalised) if normalised else None
        if row is None:
            raise AdminError(404, f"task {record_id}: no such Task")
        if not isinstance(body, Mapping) or not body:
            raise AdminError(400, f"body: must be a JSON object with some of {list(_BACKDATABLE)}")
        unknown = sorted(set(body) - set(_BACKDATABLE))
        if unknown:
            raise AdminError(400, f"body: unknown keys {unknown}; allowed are {list(_BACKDATABLE)}")
        changes: dict[str, int] = {}
        for key, value in body.items():
            try:
                if not isinstance(value, str):
                    raise ValueError(key)
                changes[key] = parse_instant(value)
            except ValueError:
                raise AdminError(
                    400, f"{key}: must be an ISO 8601 instant such as 2026-11-01T09:30:00.000Z"
                ) from None
        deleted = changes.pop("DeletedDate", None)
        if deleted is not None and not row["IsDeleted"]:
            raise AdminError(409, "DeletedDate: the Task is not deleted")
        with self.store.transaction():
            self.store.update("Task", row["Id"], dict(changes))
            if deleted is not None:
                self.store.update("Task", row["Id"], {"deleted_at": deleted})
                self.store.execute(
                    "UPDATE deleted_log SET deleted_date = ? WHERE Id = ?", (deleted, row["Id"])
                )
        return self.task(row["Id"]) or row

    # -- rules -------------------------------------------------------------------------------

    def _check_owner(self, owner_id: str) -> None:
        if ids.key_prefix(owner_id) != ids.USER_PREFIX:
            raise record_error(
                "FIELD_INTEGRITY_EXCEPTION",
                f"Assigned To ID: id value of incorrect type: {owner_id}",
                ["OwnerId"],
            )
        owner = self._users.get(owner_id)
        if owner is None:
            raise record_error(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"]
            )
        if not owner["IsActive"]:
            raise record_error(
                "INACTIVE_OWNER_OR_USER",
                f"operation performed with inactive user [{owner_id}] as owner of task",
                ["OwnerId"],
            )

    def _check_rules_and_uniqueness(self, row: dict[str, Any]) -> None:
        violated = first_violation(self.rules, row)
        if violated is not None:
            raise violated.error()
        value = row[EXTERNAL_ID_FIELD]
        if value is not None and self.external_id_unique:
            for other in self.tasks_by_external_id(value):
                if other["Id"] != row.get("Id"):
                    raise record_error(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {EXTERNAL_ID_FIELD} duplicates value on record "
                        f"with id: {other['Id']}",
                        [EXTERNAL_ID_FIELD],
                    )

    def set_rules(self, raw: Any) -> tuple[ValidationRule, ...]:
        rules = load_rules(raw)
        with self.store.transaction():
            self.store.execute("DELETE FROM validation_rules")
            for position, rule in enumerate(rules):
                self.store.insert(
                    "validation_rules", {"position": position, "rule": json.dumps(rule.to_json())}
                )
        self.rules = rules
        return rules

    # -- notifications and counters ----------------------------------------------------------

    def _notify(
        self, row: Mapping[str, Any], op: TriggerOp, changed: Sequence[str], actor: Actor
    ) -> None:
        """What the package's trigger does: note changes by people, on plain to-do Tasks."""
        if actor.user_id == self.integration_user["Id"]:
            return
        if row["TaskSubtype"] != DEFAULT_TASK_SUBTYPE or not self.notifications.admit():
            return
        self.store.insert(
            "outbox",
            {
                "task_id": row["Id"],
                "op": op.value,
                "owner_id": row["OwnerId"],
                "actor_id": actor.user_id,
                "system_modstamp": row["SystemModstamp"],
                "changed_fields": json.dumps(list(changed)),
                "enqueued_ms": now_ms(),
            },
        )
        # The sender reads the outbox under the store's lock, so it sees the row once committed.
        self.notifications.wake()

    def _count_write(self, actor: Actor, operation: str) -> None:
        self.store.execute(
            "INSERT INTO record_writes (client, username, operation, records) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (client, username, operation) DO UPDATE SET records = records + 1",
            (actor.client or NO_CLIENT, actor.username, operation),
        )

    # -- recycle bin and replication ---------------------------------------------------------

    def purge_recycle_bin(self, now: int | None = None) -> int:
        """Empty what has been in the recycle bin longer than 15 days, as Salesforce does."""
        now = now_ms() if now is None else now
        cutoff = now - RECYCLE_BIN_DAYS * MILLIS_PER_DAY
        with self.store.transaction():
            newest = self.store.row(
                "SELECT MAX(deleted_at) AS newest FROM Task WHERE IsDeleted = 1 AND deleted_at < ?",
                (cutoff,),
            )
            purged = self.store.execute(
                "DELETE FROM Task WHERE IsDeleted = 1 AND deleted_at < ?", (cutoff,)
            )
            if newest and newest["newest"] is not None:
                earliest = max(int(self.store.meta("last_purged_ms") or 0), newest["newest"])
                self.store.set_meta("last_purged_ms", str(earliest))
            self.store.execute(
                "DELETE FROM deleted_log WHERE deleted_date < ?",
                (now - DELETE_LOG_DAYS * MILLIS_PER_DAY,),
            )
        return purged

    def updated_ids(self, start: int, end: int) -> list[str]:
        return [
            row["Id"]
            for row in self.store.rows(
                "SELECT Id FROM Task WHERE IsDeleted = 0 AND SystemModstamp >= ? AND "
                "SystemModstamp < ? ORDER BY SystemModstamp, Id",
                (start, end),
            )
        ]

    def deleted_records(self, start: int, end: int) -> list[tuple[str, int]]:
        return [
            (row["Id"], row["deleted_date"])
            for row in self.store.rows(
                "SELECT Id, deleted_date FROM deleted_log WHERE deleted_date >= ? AND "
                "deleted_date < ? ORDER BY deleted_date, Id",
                (start, end),
            )
        ]

    @property
    def earliest_deleted_ms(self) -> int:
        """Salesforce's earliestDateAvailable: when the last purged record had been deleted.

        Before anything was purged, the full 15 days before the org was created count as
        available, as they would in an org that has been in use for a while.
        """
        purged = self.store.meta("last_purged_ms")
        if purged is not None:
            return int(purged)
        return self.created_ms - RECYCLE_BIN_DAYS * MILLIS_PER_DAY

    # -- reset -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to a fresh org: no Tasks, counters or rules; only the two default users."""
        keep = (self.integration_user["Id"], self.sales_rep["Id"])
        with self.store.transaction():
            for table in (
                "Task",
                "deleted_log",
                "outbox",
                "api_usage",
                "call_counts",
                "record_writes",
                "validation_rules",
            ):
                self.store.execute(f"DELETE FROM {table}")
            self.store.execute('DELETE FROM "User" WHERE Id NOT IN (?, ?)', keep)
            self.store.execute("DELETE FROM sessions WHERE user_id NOT IN (?, ?)", keep)
            self.store.execute('UPDATE "User" SET IsActive = 1')
            self.store.set_meta("external_id_unique", "1")
            self.store.set_meta("external_id_case_sensitive", "1")
            self.store.execute("DELETE FROM meta WHERE key = 'last_purged_ms'")
            for user_id, password in zip(
                keep, (DEFAULT_INTEGRATION_PASSWORD, DEFAULT_SALES_REP_PASSWORD), strict=True
            ):
                salt, digest = new_password_hash(password)
                self.store.update("User", user_id, {"password_salt": salt, "password_hash": digest})
            self._load_external_id_options()
            self.rules = ()
            self._reload_users()
            self._sessions = {t: s for t, s in self._sessions.items() if s.user_id in keep}


def _created(user: Mapping[str, Any]) -> int:
    return int(user["CreatedDate"])
