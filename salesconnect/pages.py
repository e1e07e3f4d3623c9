"""The two pages a user sees, server-rendered: the Command Center and Settings (and sign-in).

Every change is a plain HTML form POST answered with a redirect (post/redirect/get), so the
pages work without JavaScript and a reload never repeats a write. Writes go through the same
stores as the JSON API, so they feed the change feed the same way.

Signing in: `/sign-in` checks the email and password (argon2id, `credentials`), then starts a
session: a cookie (`HttpOnly`, `SameSite=Lax`, `Secure` when the page came over HTTPS) whose
value the database holds only as a digest, valid for 12 hours or until sign-out. A user sees
and changes only their own pages (another user's answer 403). Every form carries the
session's CSRF token (`form_guard`) and every POST is refused (403) unless it sends it back
(`check_form`); the sign-in form itself, before there is a session, carries a token that must
match a cookie of its own. Failed sign-ins are limited per email and per address.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from marshmallow import Schema
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from salesconnect import api_schemas, credentials, task_store, user_store
from salesconnect.command_center import command_center, user_today
from salesconnect.credentials import SESSION_LIFETIME_MS, Session
from salesconnect.database import Database
from salesconnect.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    ServiceError,
    TooManyRequestsError,
)
from salesconnect.http_input import load
from salesconnect.model import ChangeOrigin, FirstSyncState, Settings, TaskSync
from salesconnect.stamps import Millis, ms_to_datetime
from salesconnect.task_store import TaskDraft, TaskEdit
from salesconnect.user_store import SettingsEdit
from schemas.task_change import TaskPriority, TaskStatus

TEMPLATES_DIR: Final = Path(__file__).with_name("templates")
SESSION_COOKIE: Final = "salesconnect_session"
SIGN_IN_COOKIE: Final = "salesconnect_sign_in"
CSRF_FIELD: Final = "csrf_token"
SIGN_IN_FORM_SECONDS: Final = 60 * 60
FAILED_SIGN_INS_PER_EMAIL: Final = 10
FAILED_SIGN_INS_PER_ADDRESS: Final = 50
FAILED_SIGN_IN_WINDOW_SECONDS: Final = 15 * 60
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'",
}

NOTICES: Final = {
    "created": "Task created.",
    "created-later": "Task created. It is due after tomorrow, so the Command Center does not "
    "show it yet.",
    "updated": "Task saved.",
    "moved-later": "Task saved. It is no longer due today or tomorrow, so it left this list.",
    "completed": "Task completed.",
    "reopened": "Task reopened.",
    "deleted": "Task deleted.",
    "saved": "Settings saved.",
    "sync-on": "Settings saved. Sync is on: the first sync starts shortly.",
    "sync-off": "Settings saved. Sync is off: nothing was deleted on either side.",
    "signed-out": "You are signed out.",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def form_guard(request: Request) -> Mapping[str, str]:
    """The hidden fields every form of a signed-in page carries: the session's CSRF token."""
    session: Session | None = getattr(request.state, "session", None)
    return {} if session is None else {CSRF_FIELD: session.csrf_token}


def check_form(request: Request, form: FormData) -> None:
    """Refuse (403, before anything is written) a POST without the session's CSRF token."""
    session: Session | None = getattr(request.state, "session", None)
    sent = form.get(CSRF_FIELD)
    if session is None or not isinstance(sent, str) or not _same(sent, session.csrf_token):
        raise ForbiddenError(
            "csrf_failed",
            "This form is stale or was not sent from this site's own page; reload the page "
            "and try again.",
        )


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(value: object) -> str | None:
    """A path on this site to return to after signing in; anything else is ignored."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(char) < 0x21 for char in value) or len(value) > 500:
        return None
    return value


class SignInThrottle:
    """Failed sign-ins per email and per client address in a sliding window; over the limit,
    sign-in answers 429 until the oldest failure leaves the window."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - FAILED_SIGN_IN_WINDOW_SECONDS:
            failures.popleft()
        return failures

    def retry_after(self, email: str, address: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            for key, limit in (
                (f"email:{email}", FAILED_SIGN_INS_PER_EMAIL),
                (f"address:{address}", FAILED_SIGN_INS_PER_ADDRESS),
            ):
                failures = self._recent(key, now)
                if len(failures) >= limit:
                    return max(1, int(failures[0] + FAILED_SIGN_IN_WINDOW_SECONDS - now) + 1)
        return None

    def failed(self, email: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 100_000:  # a flood of made-up emails: start over
                self._failures.clear()
            for key in (f"email:{email}", f"address:{address}"):
                self._recent(key, now).append(now)

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._failures.pop(f"email:{email}", None)


def local_time(value: Millis | None, time_zone: str) -> str:
    if value is None:
        return ""
    return ms_to_datetime(value).astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M")


def first_sync_label(settings: Settings) -> str:
    state = settings.first_sync.state
    if state is FirstSyncState.IDLE:
        if settings.task_sync is TaskSync.ON:
            return "Waiting to start"
        return "Not started" if settings.first_enabled_at is None else "Not running (sync is off)"
    return {
        FirstSyncState.RUNNING: "Running",
        FirstSyncState.DONE: "Done",
        FirstSyncState.FAILED: "Failed",
    }[state]


class Pages:
    def __init__(self, database: Database, *, salesforce_record_url: str = "") -> None:
        self.database = database
        self.salesforce_record_url = salesforce_record_url
        self.throttle = SignInThrottle()
        self.templates = Jinja2Templates(
            env=jinja2.Environment(
                loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
            )
        )
        self.templates.env.filters["local_time"] = local_time
        self.templates.env.globals["first_sync_label"] = first_sync_label

    def routes(self) -> list[Route]:
        signed_in = self._signed_in
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/sign-in", self.sign_in_page, methods=["GET"]),
            Route("/sign-in", self.sign_in, methods=["POST"]),
            Route("/sign-out", signed_in(self.sign_out), methods=["POST"]),
            Route("/users/{user_id}", signed_in(self.user_home), methods=["GET"]),
            Route(
                "/users/{user_id}/command-center", signed_in(self.command_center), methods=["GET"]
            ),
            Route("/users/{user_id}/tasks", signed_in(self.create_task), methods=["POST"]),
            Route("/users/{user_id}/tasks/{task_id}", signed_in(self.edit_task), methods=["POST"]),
            Route(
                "/users/{user_id}/tasks/{task_id}/complete",
                signed_in(self.complete_task),
                methods=["POST"],
            ),
            Route(
                "/users/{user_id}/tasks/{task_id}/reopen",
                signed_in(self.reopen_task),
                methods=["POST"],
            ),
            Route(
                "/users/{user_id}/tasks/{task_id}/delete",
                signed_in(self.delete_task),
                methods=["POST"],
            ),
            Route("/users/{user_id}/settings", signed_in(self.settings), methods=["GET"]),
            Route("/users/{user_id}/settings", signed_in(self.save_settings), methods=["POST"]),
        ]

    def render(
        self, request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        session: Session | None = getattr(request.state, "session", None)
        context = {
            "form_guard_fields": form_guard(request),
            "salesforce_record_url": self.salesforce_record_url,
            "user": None,
            "signed_in": session is not None,
            "notice": None,
            "errors": {},
            "page": template.removesuffix(".html").replace("_", "-"),
            **context,
        }
        response: Response = self.templates.TemplateResponse(
            request, template, context, status_code=status_code, headers=PAGE_HEADERS
        )
        return response

    def not_found(self, request: Request, error: ServiceError) -> Response:
        return self.render(request, "error.html", {"error": error}, status_code=error.status)

    async def _form(self, request: Request) -> FormData:
        form = await request.form(max_files=0, max_fields=50, max_part_size=256 * 1024)
        check_form(request, form)
        return form

    # -- sessions -------------------------------------------------------------------------

    async def _session(self, request: Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or len(cookie) > 100:
            return None

        def read() -> Session | None:
            with self.database.read() as connection:
                return credentials.find_session(connection, cookie)

        return await run_in_threadpool(read)

    def _signed_in(self, page: Endpoint) -> Endpoint:
        """The page for its own user only: signed out, a GET goes to sign-in (and comes back),
        anything else is refused; another user's page is refused."""

        async def guarded(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                if request.method in ("GET", "HEAD"):
                    return _see_other(f"/sign-in?{urlencode({'next': request.url.path})}")
                raise ForbiddenError("signed_out", "You are signed out: sign in, then try again.")
            user_id = request.path_params.get("user_id")
            if user_id is not None and user_id != session.user_id:
                raise ForbiddenError(
                    "forbidden",
                    "This page belongs to another user; you can see only your own pages.",
                )
            request.state.session = session
            return await page(request)

        return guarded

    async def index(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return _see_other("/sign-in")
        return _see_other(f"/users/{quote(session.user_id)}/command-center")

    async def sign_in_page(
        self,
        request: Request,
        *,
        email: str = "",
        next_path: str | None = None,
        error: str | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        if error is None:
            session = await self._session(request)
            if session is not None:
                return _see_other(f"/users/{quote(session.user_id)}/command-center")
        next_path = next_path or _safe_next(request.query_params.get("next"))
        token = secrets.token_urlsafe(32)
        response = self.render(
            request,
            "sign_in.html",
            {
                "form_guard_fields": {CSRF_FIELD: token},
                "email": email,
                "next_path": next_path or "",
                "errors": {"form": [error]} if error else {},
                "notice": NOTICES.get(request.query_params.get("notice", "")),
            },
            status_code=status_code,
        )
        response.headers.update(headers or {})
        response.set_cookie(
            SIGN_IN_COOKIE,
            token,
            max_age=SIGN_IN_FORM_SECONDS,
            path="/sign-in",
            secure=_is_https(request),
            httponly=True,
            samesite="lax",
        )
        return response

    async def sign_in(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10, max_part_size=16 * 1024)
        email = str(form.get("email", "")).strip()
        password = str(form.get("password", ""))
        next_path = _safe_next(form.get("next"))
        expected = request.cookies.get(SIGN_IN_COOKIE)
        sent = form.get(CSRF_FIELD)
        if not expected or not isinstance(sent, str) or not _same(sent, expected):
            return await self.sign_in_page(
                request,
                email=email,
                next_path=next_path,
                error="The sign-in form was stale or not sent from this site; try again.",
                status_code=403,
            )
        address = request.client.host if request.client else "?"
        key = email.lower()
        wait = self.throttle.retry_after(key, address)
        if wait is not None:
            return await self.sign_in_page(
                request,
                email=email,
                next_path=next_path,
                error=f"Too many failed sign-ins; try again in {(wait + 59) // 60} minute(s).",
                status_code=TooManyRequestsError.status,
                headers={"Retry-After": str(wait)},
            )
        user_id = (
            await run_in_threadpool(credentials.check_password, self.database.read, email, password)
            if email and password
            else None
        )
        if user_id is None:
            self.throttle.failed(key, address)
            return await self.sign_in_page(
                request,
                email=email,
                next_path=next_path,
                error="Wrong email or password.",
                status_code=400,
            )
        self.throttle.succeeded(key)
        previous = request.cookies.get(SESSION_COOKIE)
        cookie = await run_in_threadpool(self._start_session, user_id, password, previous)
        response = _see_other(next_path or f"/users/{quote(user_id)}/command-center")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_LIFETIME_MS // 1000,
            path="/",
            secure=_is_https(request),
            httponly=True,
            samesite="lax",
        )
        response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
        return response

    def _start_session(self, user_id: str, password: str, previous: str | None) -> str:
        """A new session (never the one the browser came with, which ends here)."""
        with self.database.read() as connection:
            stale = credentials.needs_rehash(connection, user_id)
        fresh = credentials.hash_password(password) if stale else None
        with self.database.write() as transaction:
            if previous:
                credentials.end_session(transaction, previous)
            if fresh is not None:
                credentials.replace_password_hash(transaction, user_id, fresh)
            cookie, _session = credentials.create_session(transaction, user_id)
        return cookie

    async def sign_out(self, request: Request) -> Response:
        await self._form(request)
        cookie = request.cookies.get(SESSION_COOKIE, "")

        def end() -> None:
            with self.database.write() as transaction:
                credentials.end_session(transaction, cookie)

        await run_in_threadpool(end)
        response = _see_other(f"/sign-in?{urlencode({'notice': 'signed-out'})}")
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=_is_https(request), httponly=True, samesite="lax"
        )
        return response

    async def user_home(self, request: Request) -> Response:
        return _see_other(f"/users/{quote(request.path_params['user_id'])}/command-center")

    # -- Command Center -------------------------------------------------------------------

    async def command_center(
        self,
        request: Request,
        errors: dict[str, list[str]] | None = None,
        values: Mapping[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        user_id: str = request.path_params["user_id"]

        def read() -> Any:
            with self.database.read() as connection:
                return command_center(connection, user_id)

        try:
            view = await run_in_threadpool(read)
        except NotFoundError as error:
            return self.not_found(request, error)
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return self.render(
            request,
            "command_center.html",
            {
                "view": view,
                "user": view.user,
                "notice": notice,
                "errors": errors or {},
                "values": values or {"due_date": view.today.isoformat()},
                "priorities": list(TaskPriority),
            },
            status_code=status_code,
        )

    async def _task_write(
        self,
        request: Request,
        *,
        schema: Schema,
        values: dict[str, str],
        apply: Callable[[dict[str, Any]], date | None],
        notice_for: Callable[[date | None, date], str],
        shown_values: Mapping[str, str] | None = None,
    ) -> Response:
        """Validate a task form, write it, and redirect; on a bad field show the page again
        with what was typed (`shown_values` also says which task's edit form to reopen)."""
        user_id: str = request.path_params["user_id"]
        try:
            data = load(schema, _form_fields(values))
            due = await run_in_threadpool(apply, data)
        except NotFoundError as error:
            return self.not_found(request, error)
        except ServiceError as error:
            return await self.command_center(
                request, _form_errors(error), shown_values or values, status_code=error.status
            )

        def user_tomorrow() -> date:
            with self.database.read() as connection:
                time_zone = user_store.get_user(connection, user_id).time_zone
            return user_today(time_zone) + timedelta(days=1)

        tomorrow = await run_in_threadpool(user_tomorrow)
        return _see_other(_command_center_url(user_id, notice_for(due, tomorrow)))

    async def create_task(self, request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        form = await self._form(request)
        values = {
            key: str(form.get(key, "")) for key in ("name", "due_date", "priority", "details")
        }

        def apply(data: dict[str, Any]) -> date | None:
            with self.database.write() as transaction:
                task = task_store.create_task(
                    transaction, user_id, TaskDraft(**data), ChangeOrigin.USER
                )
            return task.due_date

        def notice(due: date | None, tomorrow: date) -> str:
            return "created-later" if due is None or due > tomorrow else "created"

        return await self._task_write(
            request,
            schema=api_schemas.TaskCreateSchema(),
            values=values,
            apply=apply,
            notice_for=notice,
        )

    async def edit_task(self, request: Request) -> Response:
        user_id, task_id = request.path_params["user_id"], request.path_params["task_id"]
        form = await self._form(request)
        values = {
            key: str(form.get(key, "")) for key in ("name", "due_date", "priority", "details")
        }

        def apply(data: dict[str, Any]) -> date | None:
            with self.database.write() as transaction:
                self._owned(transaction.connection, user_id, task_id)
                task = task_store.update_task(
                    transaction, task_id, TaskEdit(**data), ChangeOrigin.USER
                )
            return task.due_date

        def notice(due: date | None, tomorrow: date) -> str:
            return "moved-later" if due is None or due > tomorrow else "updated"

        return await self._task_write(
            request,
            schema=api_schemas.TaskPatchSchema(),
            values=values,
            apply=apply,
            notice_for=notice,
            shown_values={**values, "task_id": task_id},
        )

    async def _set_status(self, request: Request, status: TaskStatus, notice: str) -> Response:
        user_id, task_id = request.path_params["user_id"], request.path_params["task_id"]
        await self._form(request)

        def write() -> None:
            with self.database.write() as transaction:
                self._owned(transaction.connection, user_id, task_id)
                task_store.update_task(
                    transaction, task_id, TaskEdit(status=status), ChangeOrigin.USER
                )

        return await self._simple_write(request, write, notice)

    async def complete_task(self, request: Request) -> Response:
        return await self._set_status(request, TaskStatus.COMPLETED, "completed")

    async def reopen_task(self, request: Request) -> Response:
        return await self._set_status(request, TaskStatus.OPEN, "reopened")

    async def delete_task(self, request: Request) -> Response:
        user_id, task_id = request.path_params["user_id"], request.path_params["task_id"]
        await self._form(request)

        def write() -> None:
            with self.database.write() as transaction:
                self._owned(transaction.connection, user_id, task_id)
                task_store.delete_task(transaction, task_id, ChangeOrigin.USER)

        return await self._simple_write(request, write, "deleted")

    async def _simple_write(
        self, request: Request, write: Callable[[], None], notice: str
    ) -> Response:
        try:
            await run_in_threadpool(write)
        except NotFoundError as error:
            return self.not_found(request, error)
        except ServiceError as error:
            return await self.command_center(request, _form_errors(error), status_code=error.status)
        return _see_other(_command_center_url(request.path_params["user_id"], notice))

    @staticmethod
    def _owned(connection: Any, user_id: str, task_id: str) -> None:
        task = task_store.get_task(connection, task_id)
        if task.user_id != user_id:
            raise NotFoundError("task_not_found", f"No task with id {task_id!r} for this user.")

    # -- Settings -------------------------------------------------------------------------

    async def settings(
        self,
        request: Request,
        errors: dict[str, list[str]] | None = None,
        values: Mapping[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        user_id: str = request.path_params["user_id"]

        def read() -> tuple[Any, Settings]:
            with self.database.read() as connection:
                return (
                    user_store.get_user(connection, user_id),
                    user_store.get_settings(connection, user_id),
                )

        try:
            user, settings = await run_in_threadpool(read)
        except NotFoundError as error:
            return self.not_found(request, error)
        return self.render(
            request,
            "settings.html",
            {
                "user": user,
                "settings": settings,
                "notice": NOTICES.get(request.query_params.get("notice", "")),
                "errors": errors or {},
                "values": values
                or {
                    "task_sync": settings.task_sync.value,
                    "activity_subject_template": settings.activity_subject_template,
                },
            },
            status_code=status_code,
        )

    async def save_settings(self, request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        form = await self._form(request)
        values = {key: str(form.get(key, "")) for key in ("task_sync", "activity_subject_template")}
        try:
            data = load(api_schemas.SettingsUpdateSchema(), _form_fields(values))

            def write() -> tuple[Settings, Settings]:
                with self.database.write() as transaction:
                    before = user_store.get_settings(transaction.connection, user_id)
                    after = user_store.update_settings(
                        transaction, user_id, SettingsEdit(**data), ChangeOrigin.USER
                    )
                return before, after

            before, after = await run_in_threadpool(write)
        except NotFoundError as error:
            return self.not_found(request, error)
        except ServiceError as error:
            return await self.settings(
                request, _form_errors(error), values, status_code=error.status
            )
        notice = "saved"
        if before.task_sync is not after.task_sync:
            notice = "sync-on" if after.task_sync is TaskSync.ON else "sync-off"
        return _see_other(f"/users/{quote(user_id)}/settings?{urlencode({'notice': notice})}")


def _form_fields(values: Mapping[str, str]) -> dict[str, Any]:
    """Form strings to API field values: an empty optional field is left out."""
    return {key: value for key, value in values.items() if value != "" or key == "details"}


def _form_errors(error: ServiceError) -> dict[str, list[str]]:
    if isinstance(error, InvalidInputError) or error.fields:
        return error.fields
    return {"form": [error.message]}


def _command_center_url(user_id: str, notice: str) -> str:
    return f"/users/{quote(user_id)}/command-center?{urlencode({'notice': notice})}"


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
