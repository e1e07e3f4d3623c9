"""The JSON API under `/api`: users, settings, reminder tasks, the Command Center, the feed.

Endpoints read the request on the event loop, then do their database work in the thread pool
(SQLAlchemy Core is synchronous). Every write runs in one transaction through `_write`, which
also answers retries that carry an `Idempotency-Key` from what it stored the first time.

Every endpoint but `/healthz` is guarded (`Access`, see `salesconnect.auth`): the caller is
authenticated first (401), then held to what it may do (403), before the request is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from salesconnect import api_schemas, credentials, idempotency, task_store, user_store
from salesconnect.auth import SERVICE, Authenticator, Principal, not_yours, service_only
from salesconnect.change_feed import RECHECK_INTERVAL, ChangeNotifier, read_changes
from salesconnect.command_center import CommandCenter, command_center
from salesconnect.database import Database, WriteTransaction
from salesconnect.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnprocessableRequestError,
)
from salesconnect.http_input import (
    IDEMPOTENCY_KEY_HEADER,
    SYNC_ORIGIN_HEADER,
    change_origin,
    idempotency_key,
    load,
    load_query,
    read_json_object,
)
from salesconnect.model import (
    Change,
    ChangeOrigin,
    FirstSync,
    Settings,
    SyncError,
    Task,
    User,
    UserSummary,
)
from salesconnect.stamps import datetime_to_ms, ms_to_text
from salesconnect.task_store import READ_ONLY_LINK_RULE, TaskDraft, TaskEdit, VersionPrecondition
from salesconnect.user_store import SettingsEdit, SyncStateReport, UserDraft, UserEdit
from schemas.fields import format_calendar_date

JSON_MEDIA_TYPE: Final = "application/json"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
NO_STORE: Final = {"Cache-Control": "no-store"}

Endpoint = Callable[[Request], Awaitable[Response]]


class Access(enum.Enum):
    """Who may call an endpoint (any authenticated caller sees only what is theirs)."""

    OPEN = "open"  # no credential needed
    SERVICE = "service"  # the service credential only
    OWNER = "owner"  # the service, or the user named by the path's user_id
    CALLER = "caller"  # any authenticated caller; the endpoint checks what it touches


def dump_json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def json_response(
    payload: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(dump_json(payload), status_code, headers, media_type=JSON_MEDIA_TYPE)


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "time_zone": user.time_zone,
        "salesforce_user_id": user.salesforce_user_id,
        "created_at": ms_to_text(user.created_at),
        "updated_at": ms_to_text(user.updated_at),
    }


def user_summary_json(summary: UserSummary) -> dict[str, Any]:
    return {
        **user_json(summary.user),
        "task_sync": summary.task_sync.value,
        "first_enabled_at": ms_to_text(summary.first_enabled_at),
        "last_enabled_at": ms_to_text(summary.last_enabled_at),
    }


def settings_json(settings: Settings) -> dict[str, Any]:
    last_error = settings.last_sync_error
    return {
        "user_id": settings.user_id,
        "task_sync": settings.task_sync.value,
        "activity_subject_template": settings.activity_subject_template,
        "first_enabled_at": ms_to_text(settings.first_enabled_at),
        "last_enabled_at": ms_to_text(settings.last_enabled_at),
        "first_sync": {
            "state": settings.first_sync.state.value,
            "error": settings.first_sync.error,
            "started_at": ms_to_text(settings.first_sync.started_at),
            "finished_at": ms_to_text(settings.first_sync.finished_at),
        },
        "last_sync_error": None
        if last_error is None
        else {"message": last_error.message, "occurred_at": ms_to_text(last_error.occurred_at)},
        "updated_at": ms_to_text(settings.updated_at),
    }


def task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "user_id": task.user_id,
        "name": task.name,
        "status": task.status.value,
        "priority": task.priority.value,
        "due_date": None if task.due_date is None else format_calendar_date(task.due_date),
        "details": task.details,
        "salesforce_task_id": task.salesforce_task_id,
        "version": task.version,
        "created_at": ms_to_text(task.created_at),
        "updated_at": ms_to_text(task.updated_at),
        "deleted_at": ms_to_text(task.deleted_at),
    }


def change_json(change: Change) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "user_id": change.user_id,
        "task_id": change.task_id,
        "op": change.op.value,
        "changed": change.changed,
        "version": change.version,
        "occurred_at": ms_to_text(change.occurred_at),
        "actor": change.actor,
        "origin": change.origin.value,
        "task_sync": change.task_sync.value,
        "salesforce_task_id": change.salesforce_task_id,
        "task_created_at": ms_to_text(change.task_created_at),
        "first_enabled_at": ms_to_text(change.first_enabled_at),
        "last_enabled_at": ms_to_text(change.last_enabled_at),
    }


def command_center_json(view: CommandCenter) -> dict[str, Any]:
    return {
        "user_id": view.user.id,
        "time_zone": view.user.time_zone,
        "today": format_calendar_date(view.today),
        "tomorrow": format_calendar_date(view.tomorrow),
        "tasks": [task_json(task) for task in view.tasks],
    }


@dataclass(frozen=True)
class WriteResult:
    """A write's answer, in the form it is both sent and stored for idempotent replay."""

    status_code: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def stored(self) -> idempotency.StoredResponse:
        body = "" if self.payload is None else dump_json(self.payload)
        return idempotency.StoredResponse(self.status_code, self.headers, body)


def task_result(task: Task, status_code: int = 200) -> WriteResult:
    headers = {"ETag": task.etag}
    if status_code == 201:
        headers["Location"] = f"/api/tasks/{task.id}"
    return WriteResult(status_code, task_json(task), headers)


def stored_response(stored: idempotency.StoredResponse, *, replayed: bool) -> Response:
    headers = dict(stored.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    if stored.status_code == 204:
        return Response(status_code=204, headers=headers)
    return Response(stored.body, stored.status_code, headers, media_type=JSON_MEDIA_TYPE)


def token_json(token: credentials.ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user_id": token.user_id,
        "name": token.name,
        "created_at": ms_to_text(token.created_at),
        "revoked_at": ms_to_text(token.revoked_at),
    }


def _path_id(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    return value


def principal_of(request: Request) -> Principal:
    principal: Principal = getattr(request.state, "principal", SERVICE)
    return principal


def _check_task_owner(connection: Any, request: Request, task_id: str) -> None:
    """Another user's task answers exactly as a task that does not exist."""
    principal = principal_of(request)
    if principal.is_service:
        return
    if task_store.task_owner(connection, task_id) != principal.user_id:
        raise NotFoundError("task_not_found", f"No task with id {task_id!r}.")


class JsonApi:
    """The `/api` endpoints over one database; `notifier` wakes long-polling feed readers."""

    def __init__(
        self, database: Database, notifier: ChangeNotifier, authenticator: Authenticator
    ) -> None:
        self.database = database
        self.notifier = notifier
        self.authenticator = authenticator

    def routes(self) -> list[Route]:
        service, owner, caller = Access.SERVICE, Access.OWNER, Access.CALLER
        table: list[tuple[str, str, Endpoint, Access]] = [
            ("/api/users", "POST", self.create_user, service),
            ("/api/users", "GET", self.list_users, service),
            ("/api/users/{user_id}", "GET", self.get_user, owner),
            ("/api/users/{user_id}", "PATCH", self.update_user, owner),
            ("/api/users/{user_id}/settings", "GET", self.get_settings, owner),
            ("/api/users/{user_id}/settings", "PUT", self.update_settings, owner),
            ("/api/users/{user_id}/sync-state", "PUT", self.report_sync_state, service),
            ("/api/users/{user_id}/password", "PUT", self.set_password, service),
            ("/api/users/{user_id}/tokens", "POST", self.create_token, service),
            ("/api/users/{user_id}/tokens", "GET", self.list_tokens, owner),
            ("/api/users/{user_id}/tokens/{token_id}", "DELETE", self.revoke_token, owner),
            ("/api/users/{user_id}/tasks", "POST", self.create_task, owner),
            ("/api/users/{user_id}/tasks", "GET", self.list_tasks, owner),
            ("/api/users/{user_id}/command-center", "GET", self.command_center, owner),
            ("/api/tasks/{task_id}", "GET", self.get_task, caller),
            ("/api/tasks/{task_id}", "PATCH", self.update_task, caller),
            ("/api/tasks/{task_id}", "DELETE", self.delete_task, caller),
            ("/api/tasks/{task_id}/restore", "POST", self.restore_task, caller),
            ("/api/salesforce-links", "PUT", self.set_salesforce_links, service),
            ("/api/changes", "GET", self.changes, service),
            ("/api/me", "GET", self.me, caller),
            ("/healthz", "GET", self.health, Access.OPEN),
        ]
        return [
            Route(path, self._guarded(endpoint, access), methods=[method])
            for path, method, endpoint, access in table
        ]

    def _guarded(self, endpoint: Endpoint, access: Access) -> Endpoint:
        """Authenticate, then authorize, before the endpoint reads anything."""
        if access is Access.OPEN:
            return endpoint

        async def guarded(request: Request) -> Response:
            principal = await self.authenticator.principal(request)
            if not principal.is_service:
                if SYNC_ORIGIN_HEADER.lower() in request.headers:
                    raise ForbiddenError(
                        "forbidden",
                        f"Only the service credential may send {SYNC_ORIGIN_HEADER}: it marks "
                        "the bridge's own writes, which are never synced back.",
                        fields={SYNC_ORIGIN_HEADER: ["Must not be sent with a user's token."]},
                    )
                if access is Access.SERVICE:
                    raise service_only(f"{request.method} {request.url.path}")
                user_id = request.path_params.get("user_id")
                if access is Access.OWNER and not principal.may_act_for(user_id or ""):
                    raise not_yours(user_id or "?")
            request.state.principal = principal
            return await endpoint(request)

        guarded.__name__ = endpoint.__name__
        return guarded

    # -- the write path -------------------------------------------------------------------

    async def _write(
        self,
        request: Request,
        body: Any,
        work: Callable[[WriteTransaction], WriteResult],
        *,
        allow_key: bool = True,
    ) -> Response:
        key = idempotency_key(request)
        if key is not None and not allow_key:
            raise InvalidInputError(
                {
                    IDEMPOTENCY_KEY_HEADER: [
                        "Not accepted here: the answer holds a secret shown once, which is "
                        "never stored for a replay."
                    ]
                }
            )
        if key is not None:
            key = principal_of(request).idempotency_key(key)
        if isinstance(body, dict) and "password" in body:
            # Never keep a fast digest of a password: the fingerprint notes only that one came.
            body = {**body, "password": True}
        fingerprint = idempotency.request_fingerprint(
            method=request.method,
            path=request.url.path,
            body=body,
            origin=request.headers.get(SYNC_ORIGIN_HEADER, ""),
            if_match=request.headers.get("if-match"),
        )
        return await run_in_threadpool(self._run_write, key, fingerprint, work)

    def _run_write(
        self, key: str | None, fingerprint: str, work: Callable[[WriteTransaction], WriteResult]
    ) -> Response:
        for attempt in (1, 2):
            try:
                with self.database.write() as transaction:
                    if key is not None:
                        found = idempotency.find(transaction.connection, key)
                        if found is not None:
                            return self._replay(key, fingerprint, *found)
                        idempotency.claim(transaction.connection, key, fingerprint)
                    result = work(transaction).stored()
                    if key is not None:
                        idempotency.store(transaction.connection, key, result)
                return stored_response(result, replayed=False)
            except IntegrityError:
                # A concurrent twin claimed the key or took a unique value first; the second
                # attempt replays the twin's answer or names the conflict precisely.
                if attempt == 2:
                    raise ConflictError(
                        "concurrent_write",
                        "A concurrent request changed the same data; retry the request.",
                    ) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _replay(
        key: str, fingerprint: str, stored_fingerprint: str, stored: idempotency.StoredResponse
    ) -> Response:
        if stored_fingerprint != fingerprint:
            raise UnprocessableRequestError(
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was first used for a different request (another "
                "method, path, body, origin or If-Match); use a new key for a new request.",
                fields={IDEMPOTENCY_KEY_HEADER: ["Must name one request only."]},
            )
        return stored_response(stored, replayed=True)

    @staticmethod
    def _precondition(request: Request) -> VersionPrecondition | None:
        header = request.headers.get("if-match")
        return None if header is None else VersionPrecondition.parse(header)

    # -- users and settings ---------------------------------------------------------------

    async def create_user(self, request: Request) -> Response:
        body = await read_json_object(request)
        assert body is not None
        data = load(api_schemas.UserCreateSchema(), body)
        draft = UserDraft(
            id=data.get("id"),
            email=data["email"],
            name=data["name"],
            time_zone=data["time_zone"],
            salesforce_user_id=data.get("salesforce_user_id"),
        )
        password = data.get("password")
        password_hash = (
            None
            if password is None
            else await run_in_threadpool(credentials.hash_password, password)
        )

        def work(transaction: WriteTransaction) -> WriteResult:
            user = user_store.create_user(transaction, draft)
            if password_hash is not None:
                credentials.set_password(transaction, user.id, password_hash)
            return WriteResult(201, user_json(user), {"Location": f"/api/users/{user.id}"})

        return await self._write(request, body, work)

    async def set_password(self, request: Request) -> Response:
        """Set the user's page password (and end their page sessions)."""
        user_id = _path_id(request, "user_id")
        body = await read_json_object(request)
        assert body is not None
        password = load(api_schemas.PasswordSchema(), body)["password"]
        password_hash = await run_in_threadpool(credentials.hash_password, password)

        def work(transaction: WriteTransaction) -> WriteResult:
            credentials.set_password(transaction, user_id, password_hash)
            return WriteResult(204)

        return await self._write(request, body, work)

    async def create_token(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")
        body = await read_json_object(request)
        assert body is not None
        name = load(api_schemas.TokenCreateSchema(), body)["name"]

        def work(transaction: WriteTransaction) -> WriteResult:
            token, secret = credentials.create_token(transaction, user_id, name)
            return WriteResult(201, {**token_json(token), "token": secret}, dict(NO_STORE))

        return await self._write(request, body, work, allow_key=False)

    async def list_tokens(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")

        def read() -> dict[str, Any]:
            with self.database.read() as connection:
                tokens = credentials.list_tokens(connection, user_id)
            return {"tokens": [token_json(token) for token in tokens]}

        return json_response(await run_in_threadpool(read))

    async def revoke_token(self, request: Request) -> Response:
        user_id, token_id = _path_id(request, "user_id"), _path_id(request, "token_id")

        def work(transaction: WriteTransaction) -> WriteResult:
            credentials.revoke_token(transaction, user_id, token_id)
            return WriteResult(204)

        return await self._write(request, None, work)

    async def me(self, request: Request) -> Response:
        principal = principal_of(request)
        return json_response(
            {
                "kind": "service" if principal.is_service else "user",
                "user_id": principal.user_id,
                "token_id": principal.token_id,
            }
        )

    async def list_users(self, request: Request) -> Response:
        query = load_query(api_schemas.UserListQuerySchema(), request)

        def read() -> dict[str, Any]:
            with self.database.read() as connection:
                page = user_store.list_users(
                    connection,
                    task_sync=query.get("task_sync"),
                    after=query.get("after"),
                    limit=query["limit"],
                )
            full = len(page) == query["limit"]
            return {
                "users": [user_summary_json(summary) for summary in page],
                "next_after": page[-1].user.id if full else None,
            }

        return json_response(await run_in_threadpool(read))

    async def get_user(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")

        def read() -> dict[str, Any]:
            with self.database.read() as connection:
                return user_json(user_store.get_user(connection, user_id))

        return json_response(await run_in_threadpool(read))

    async def update_user(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")
        body = await read_json_object(request)
        assert body is not None
        data = load(api_schemas.UserPatchSchema(), body)
        if "salesforce_user_id" in data and not principal_of(request).is_service:
            raise ForbiddenError(
                "forbidden",
                "Only the service credential may connect a user to a Salesforce user.",
                fields={"salesforce_user_id": ["Must not be sent with a user's token."]},
            )
        edit = UserEdit(**data)

        def work(transaction: WriteTransaction) -> WriteResult:
            return WriteResult(200, user_json(user_store.update_user(transaction, user_id, edit)))

        return await self._write(request, body, work)

    async def get_settings(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")

        def read() -> dict[str, Any]:
            with self.database.read() as connection:
                return settings_json(user_store.get_settings(connection, user_id))

        return json_response(await run_in_threadpool(read))

    async def update_settings(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")
        origin = change_origin(request)
        body = await read_json_object(request)
        assert body is not None
        edit = SettingsEdit(**load(api_schemas.SettingsUpdateSchema(), body))

        def work(transaction: WriteTransaction) -> WriteResult:
            settings = user_store.update_settings(transaction, user_id, edit, origin)
            return WriteResult(200, settings_json(settings))

        return await self._write(request, body, work)

    async def report_sync_state(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")
        body = await read_json_object(request)
        assert body is not None
        data = load(api_schemas.SyncStateReportSchema(), body)
        report = SyncStateReport()
        if "first_sync" in data:
            first = data["first_sync"]
            report = SyncStateReport(
                first_sync=FirstSync(
                    state=first["state"],
                    error=first.get("error"),
                    started_at=_stamp_ms(first.get("started_at")),
                    finished_at=_stamp_ms(first.get("finished_at")),
                )
            )
        if "last_sync_error" in data:
            error = data["last_sync_error"]
            report = SyncStateReport(
                first_sync=report.first_sync,
                last_sync_error=None
                if error is None
                else SyncError(error["message"], _required_ms(error["occurred_at"])),
            )

        def work(transaction: WriteTransaction) -> WriteResult:
            settings = user_store.report_sync_state(transaction, user_id, report)
            return WriteResult(200, settings_json(settings))

        return await self._write(request, body, work)

    # -- tasks ----------------------------------------------------------------------------

    async def create_task(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")
        origin = change_origin(request)
        body = await read_json_object(request)
        assert body is not None
        data = load(api_schemas.TaskCreateSchema(), body)
        if data.get("salesforce_task_id") is not None and origin is not ChangeOrigin.SALESFORCE:
            raise InvalidInputError({"salesforce_task_id": [READ_ONLY_LINK_RULE]})
        draft = TaskDraft(**data)

        def work(transaction: WriteTransaction) -> WriteResult:
            task = task_store.create_task(transaction, user_id, draft, origin)
            return task_result(task, 201)

        return await self._write(request, body, work)

    async def set_salesforce_links(self, request: Request) -> Response:
        """The bridge links many tasks at once after creating their Tasks in a collections call:
        one transaction, one answer per link, so a backlog costs one request per batch."""
        origin = change_origin(request)
        if origin is not ChangeOrigin.SALESFORCE:
            raise InvalidInputError({SYNC_ORIGIN_HEADER: [READ_ONLY_LINK_RULE]})
        body = await read_json_object(request)
        assert body is not None
        data = load(api_schemas.SalesforceLinksSchema(), body)

        def work(transaction: WriteTransaction) -> WriteResult:
            links = [(link["task_id"], link["salesforce_task_id"]) for link in data["links"]]
            results = [
                {"task_id": task_id, "status": status, "version": version}
                for task_id, status, version in task_store.link_tasks(transaction, links)
            ]
            return WriteResult(200, {"results": results})

        return await self._write(request, body, work)

    async def list_tasks(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")
        task_filter = task_store.TaskFilter(
            **load_query(api_schemas.TaskListQuerySchema(), request)
        )

        def read() -> dict[str, Any]:
            with self.database.read() as connection:
                page = task_store.list_tasks(connection, user_id, task_filter)
            full = len(page) == task_filter.limit
            return {
                "tasks": [task_json(task) for task in page],
                "next_after": page[-1].id if full else None,
            }

        return json_response(await run_in_threadpool(read))

    async def command_center(self, request: Request) -> Response:
        user_id = _path_id(request, "user_id")

        def read() -> dict[str, Any]:
            with self.database.read() as connection:
                return command_center_json(command_center(connection, user_id))

        return json_response(await run_in_threadpool(read))

    async def get_task(self, request: Request) -> Response:
        task_id = _path_id(request, "task_id")
        query = load_query(api_schemas.TaskGetQuerySchema(), request)

        def read() -> Task:
            with self.database.read() as connection:
                _check_task_owner(connection, request, task_id)
                return task_store.get_task(
                    connection, task_id, include_deleted=query["include_deleted"]
                )

        task = await run_in_threadpool(read)
        return json_response(task_json(task), headers={"ETag": task.etag})

    async def update_task(self, request: Request) -> Response:
        task_id = _path_id(request, "task_id")
        origin = change_origin(request)
        precondition = self._precondition(request)
        body = await read_json_object(request)
        assert body is not None
        data = load(api_schemas.TaskPatchSchema(), body)
        if "salesforce_task_id" in data and origin is not ChangeOrigin.SALESFORCE:
            raise InvalidInputError({"salesforce_task_id": [READ_ONLY_LINK_RULE]})
        edit = TaskEdit(**data)

        def work(transaction: WriteTransaction) -> WriteResult:
            _check_task_owner(transaction.connection, request, task_id)
            task = task_store.update_task(transaction, task_id, edit, origin, precondition)
            return task_result(task)

        return await self._write(request, body, work)

    async def delete_task(self, request: Request) -> Response:
        task_id = _path_id(request, "task_id")
        origin = change_origin(request)
        precondition = self._precondition(request)

        def work(transaction: WriteTransaction) -> WriteResult:
            _check_task_owner(transaction.connection, request, task_id)
            task = task_store.delete_task(transaction, task_id, origin, precondition)
            return WriteResult(204, None, {"ETag": task.etag})

        return await self._write(request, None, work)

    async def restore_task(self, request: Request) -> Response:
        task_id = _path_id(request, "task_id")
        origin = change_origin(request)
        precondition = self._precondition(request)

        def work(transaction: WriteTransaction) -> WriteResult:
            _check_task_owner(transaction.connection, request, task_id)
            return task_result(task_store.restore_task(transaction, task_id, origin, precondition))

        return await self._write(request, None, work)

    # -- the change feed ------------------------------------------------------------------

    async def changes(self, request: Request) -> Response:
        """Long-poll: answer at once when changes exist, else when one commits or `wait` ends."""
        query = load_query(api_schemas.ChangesQuerySchema(), request)
        after, limit, wait = query["after"], query["limit"], query["wait"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait

        def read() -> tuple[list[Change], int]:
            with self.database.read() as connection:
                return read_changes(connection, after=after, limit=limit)

        while True:
            woken = self.notifier.generation()
            changes, head_seq = await run_in_threadpool(read)
            remaining = deadline - loop.time()
            if changes or remaining <= 0 or await request.is_disconnected():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=min(remaining, RECHECK_INTERVAL))
        return json_response(
            {
                "changes": [change_json(change) for change in changes],
                "next_after": changes[-1].seq if changes else after,
                "head_seq": head_seq,
            }
        )

    async def health(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            with self.database.read() as connection:
                _, head_seq = read_changes(connection, after=2**62, limit=1)
            return {"status": "ok", "database": self.database.dialect, "head_seq": head_seq}

        return json_response(await run_in_threadpool(read))


def _stamp_ms(value: datetime | None) -> int | None:
    return None if value is None else datetime_to_ms(value)


def _required_ms(value: datetime) -> int:
    return datetime_to_ms(value)
