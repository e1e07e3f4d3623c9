"""The two pages a user sees, server-rendered: the Command Center and Settings (and an index).

Every change is a plain HTML form POST answered with a redirect (post/redirect/get), so the
pages work without JavaScript and a reload never repeats a write. Each form renders
`form_guard` hidden fields and each POST passes through `check_form`: today both are empty
hooks; sign-in and CSRF tokens (a later issue) plug in there without touching the templates.
Writes go through the same stores as the JSON API, so they feed the change feed the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

from salesconnect import api_schemas, task_store, user_store
from salesconnect.command_center import command_center, user_today
from salesconnect.database import Database
from salesconnect.errors import InvalidInputError, NotFoundError, ServiceError
from salesconnect.http_input import load
from salesconnect.model import ChangeOrigin, FirstSyncState, Settings, TaskSync
from salesconnect.stamps import Millis, ms_to_datetime
from salesconnect.task_store import TaskDraft, TaskEdit
from salesconnect.user_store import SettingsEdit, UserDraft
from schemas.task_change import TaskPriority, TaskStatus

TEMPLATES_DIR: Final = Path(__file__).with_name("templates")

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
}

FormGuard = Callable[[Request], Mapping[str, str]]
FormCheck = Callable[[Request, FormData], None]


def no_form_guard(_request: Request) -> Mapping[str, str]:
    return {}


def no_form_check(_request: Request, _form: FormData) -> None:
    return None


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
    def __init__(
        self,
        database: Database,
        *,
        salesforce_record_url: str = "",
        form_guard: FormGuard = no_form_guard,
        check_form: FormCheck = no_form_check,
    ) -> None:
        self.database = database
        self.salesforce_record_url = salesforce_record_url
        self.form_guard = form_guard
        self.check_form = check_form
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
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/users", self.create_user, methods=["POST"]),
            Route("/users/{user_id}", self.user_home, methods=["GET"]),
            Route("/users/{user_id}/command-center", self.command_center, methods=["GET"]),
            Route("/users/{user_id}/tasks", self.create_task, methods=["POST"]),
            Route("/users/{user_id}/tasks/{task_id}", self.edit_task, methods=["POST"]),
            Route(
                "/users/{user_id}/tasks/{task_id}/complete", self.complete_task, methods=["POST"]
            ),
            Route("/users/{user_id}/tasks/{task_id}/reopen", self.reopen_task, methods=["POST"]),
            Route("/users/{user_id}/tasks/{task_id}/delete", self.delete_task, methods=["POST"]),
            Route("/users/{user_id}/settings", self.settings, methods=["GET"]),
            Route("/users/{user_id}/settings", self.save_settings, methods=["POST"]),
        ]

    def render(
        self, request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        context = {
            "form_guard_fields": self.form_guard(request),
            "salesforce_record_url": self.salesforce_record_url,
            "user": None,
            "notice": None,
            "errors": {},
            "page": template.removesuffix(".html").replace("_", "-"),
            **context,
        }
        response: Response = self.templates.TemplateResponse(
            request, template, context, status_code=status_code
        )
        return response

    def not_found(self, request: Request, error: ServiceError) -> Response:
        return self.render(request, "error.html", {"error": error}, status_code=error.status)

    async def _form(self, request: Request) -> FormData:
        form = await request.form(max_files=0, max_fields=50, max_part_size=256 * 1024)
        self.check_form(request, form)
        return form

    # -- index ----------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return await self._users_page(request, {}, {})

    async def _users_page(
        self,
        request: Request,
        errors: dict[str, list[str]],
        values: Mapping[str, str],
        status_code: int = 200,
    ) -> Response:
        def read() -> list[Any]:
            with self.database.read() as connection:
                return user_store.list_users(connection, task_sync=None, after=None, limit=200)

        users = await run_in_threadpool(read)
        return self.render(
            request,
            "index.html",
            {"users": users, "errors": errors, "values": values},
            status_code=status_code,
        )

    async def create_user(self, request: Request) -> Response:
        form = await self._form(request)
        values = {key: str(form.get(key, "")).strip() for key in ("email", "name", "time_zone")}
        try:
            data = load(api_schemas.UserCreateSchema(), values)

            def write() -> str:
                with self.database.write() as transaction:
                    return user_store.create_user(transaction, UserDraft(**data)).id

            user_id = await run_in_threadpool(write)
        except ServiceError as error:
            return await self._users_page(request, _form_errors(error), values, error.status)
        return _see_other(f"/users/{quote(user_id)}/command-center")

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
