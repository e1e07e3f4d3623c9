"""`/openapi.json`: the JSON API described with apispec from the marshmallow schemas.

The same schemas validate requests (`api_schemas`), so the description cannot drift from the
rules; the response shapes are held to the server's real answers by the schemathesis tests.
Every operation but `/healthz` needs a bearer token (`salesconnect.auth`); each says who may
call it.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from salesconnect import api_schemas
from salesconnect.http_input import (
    IDEMPOTENCY_KEY_HEADER,
    MAX_BODY_BYTES,
    SYNC_ORIGIN_HEADER,
)
from schemas.fields import SALESCONNECT_ID_PATTERN, CalendarDate, UtcStamp

OPENAPI_VERSION: Final = "3.1.0"

_ERRORS: Final = {
    400: ("BadRequest", "Invalid input: `fields` names each field and the rule it broke"),
    401: ("Unauthorized", "No bearer token, or one that is unknown or revoked"),
    403: (
        "Forbidden",
        "The token may not do this: another user's data, or the service credential's own calls",
    ),
    404: ("NotFound", "No such user or task (or the task is deleted, or another user's)"),
    409: ("Conflict", "A unique value is taken, or the task is deleted"),
    412: ("PreconditionFailed", "If-Match names a version the task is no longer at"),
    413: ("PayloadTooLarge", f"The body is larger than {MAX_BODY_BYTES:,} bytes"),
    415: ("UnsupportedMediaType", "The body is not application/json"),
    422: ("IdempotencyKeyReused", "The Idempotency-Key was used for a different request"),
}
_READ_ERRORS: Final = (400, 404)
_WRITE_ERRORS: Final = (400, 404, 409, 413, 415, 422)
_TASK_WRITE_ERRORS: Final = (400, 404, 409, 412, 413, 415, 422)

_HEADER_PARAMETERS: Final[dict[str, dict[str, Any]]] = {
    "SyncOrigin": {
        "in": "header",
        "name": SYNC_ORIGIN_HEADER,
        "required": False,
        "description": "`salesforce` on the bridge's writes: recorded as the change's origin, "
        "and the only way to set `salesforce_task_id`.",
        "schema": {"type": "string", "enum": ["salesforce", "user"]},
    },
    "IdempotencyKey": {
        "in": "header",
        "name": IDEMPOTENCY_KEY_HEADER,
        "required": False,
        "description": "A retry with the same key and request returns the first response "
        "(with `Idempotent-Replayed: true`); kept 24 hours.",
        "schema": {"type": "string", "pattern": "^[!-~][ -~]{0,254}$"},
    },
    "IfMatch": {
        "in": "header",
        "name": "If-Match",
        "required": False,
        "description": 'The ETag (`"<version>"`) last read; 412 when the task moved on.',
        "schema": {"type": "string"},
    },
}


def _path_parameter(name: str, what: str) -> dict[str, Any]:
    return {
        "in": "path",
        "name": name,
        "required": True,
        "description": f"The {what}'s id",
        "schema": {"type": "string", "pattern": SALESCONNECT_ID_PATTERN.pattern},
    }


USER_ID: Final = _path_parameter("user_id", "user")
TASK_ID: Final = _path_parameter("task_id", "task")
TOKEN_ID: Final = _path_parameter("token_id", "API token")
SECURITY_SCHEME: Final = "bearerToken"
UNAUTHORIZED_HEADERS: Final = {
    "WWW-Authenticate": {
        "description": 'The challenge: `Bearer realm="salesconnect"`, with the error',
        "schema": {"type": "string"},
    }
}
ETAG_HEADER: Final = {
    "ETag": {"description": 'The version, as `"<version>"`', "schema": {"type": "string"}}
}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(schema: str, description: str, *, etag: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(schema)}
    if etag:
        response["headers"] = ETAG_HEADER
    return response


def _errors(codes: tuple[int, ...]) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{_ERRORS[code][0]}"} for code in codes}


def _body(schema: str, description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": _json(schema)}


def _writes(*names: str) -> list[str]:
    """Header parameters by component name; apispec turns each into a `$ref`."""
    return list(names)


SERVICE_ONLY: Final = " Service credential only."
OWNER: Final = " The service credential, or the user's own token."


def _operations() -> dict[str, dict[str, Any]]:
    return {
        "/api/users": {
            "post": {
                "summary": "Create a user (with default settings: sync off)",
                "description": "`password` (optional) lets the user sign in to the pages."
                + SERVICE_ONLY,
                "operationId": "createUser",
                "parameters": _writes("IdempotencyKey"),
                "requestBody": _body("UserCreate", "The new user"),
                "responses": {"201": _ok("User", "Created"), **_errors(_WRITE_ERRORS)},
            },
            "get": {
                "summary": "List users, optionally only those with task sync on (the poller)",
                "description": SERVICE_ONLY.strip(),
                "operationId": "listUsers",
                "parameters": [{"in": "query", "schema": api_schemas.UserListQuerySchema}],
                "responses": {"200": _ok("UserPage", "One page, ordered by id"), **_errors((400,))},
            },
        },
        "/api/users/{user_id}": {
            "parameters": [USER_ID],
            "get": {
                "summary": "Read a user",
                "description": OWNER.strip(),
                "operationId": "getUser",
                "responses": {"200": _ok("User", "The user"), **_errors(_READ_ERRORS)},
            },
            "patch": {
                "summary": "Change a user's email, name, time zone or connected Salesforce user",
                "description": "Only the service credential may change `salesforce_user_id`."
                + OWNER,
                "operationId": "updateUser",
                "parameters": _writes("IdempotencyKey"),
                "requestBody": _body("UserPatch", "Only the fields to change"),
                "responses": {"200": _ok("User", "The user now"), **_errors(_WRITE_ERRORS)},
            },
        },
        "/api/users/{user_id}/settings": {
            "parameters": [USER_ID],
            "get": {
                "summary": "Read the user's sync settings and sync state",
                "description": OWNER.strip(),
                "operationId": "getSettings",
                "responses": {"200": _ok("Settings", "The settings"), **_errors(_READ_ERRORS)},
            },
            "put": {
                "summary": "Save task sync (off/on) and the activity subject template",
                "description": "Turning sync on or off is a change-feed entry "
                "(`sync_enabled`/`sync_disabled`); turning it on resets the first sync to idle."
                + OWNER,
                "operationId": "updateSettings",
                "parameters": _writes("SyncOrigin", "IdempotencyKey"),
                "requestBody": _body("SettingsUpdate", "The settings to change"),
                "responses": {"200": _ok("Settings", "The settings now"), **_errors(_WRITE_ERRORS)},
            },
        },
        "/api/users/{user_id}/sync-state": {
            "parameters": [USER_ID],
            "put": {
                "summary": "Bridge: report the first-sync state and the last sync error",
                "description": "Shown on the Settings page. `last_sync_error: null` clears it; "
                "an absent key leaves that part as it is. Not a change-feed entry." + SERVICE_ONLY,
                "operationId": "reportSyncState",
                "parameters": _writes("IdempotencyKey"),
                "requestBody": _body("SyncStateReport", "What the bridge reports"),
                "responses": {"200": _ok("Settings", "The settings now"), **_errors(_WRITE_ERRORS)},
            },
        },
        "/api/users/{user_id}/password": {
            "parameters": [USER_ID],
            "put": {
                "summary": "Set the user's page sign-in password",
                "description": "Stored as an argon2id hash; ends the user's page sessions."
                + SERVICE_ONLY,
                "operationId": "setPassword",
                "parameters": _writes("IdempotencyKey"),
                "requestBody": _body("Password", "The new password"),
                "responses": {"204": {"description": "Set"}, **_errors(_WRITE_ERRORS)},
            },
        },
        "/api/users/{user_id}/tokens": {
            "parameters": [USER_ID],
            "post": {
                "summary": "Create an API token for the user (shown once)",
                "description": "The answer holds the token; the service keeps only its SHA-256 "
                "digest. No Idempotency-Key: a secret is never stored for a replay." + SERVICE_ONLY,
                "operationId": "createToken",
                "requestBody": _body("TokenCreate", "What the token is for"),
                "responses": {
                    "201": _ok("NewToken", "Created; `token` is shown this once"),
                    **_errors((400, 404, 413, 415)),
                },
            },
            "get": {
                "summary": "List the user's API tokens (never the tokens themselves)",
                "description": OWNER.strip(),
                "operationId": "listTokens",
                "responses": {"200": _ok("TokenPage", "Oldest first"), **_errors((404,))},
            },
        },
        "/api/users/{user_id}/tokens/{token_id}": {
            "parameters": [USER_ID, TOKEN_ID],
            "delete": {
                "summary": "Revoke an API token at once (revoking it again changes nothing)",
                "description": OWNER.strip(),
                "operationId": "revokeToken",
                "parameters": _writes("IdempotencyKey"),
                "responses": {"204": {"description": "Revoked"}, **_errors((400, 404, 422))},
            },
        },
        "/api/me": {
            "get": {
                "summary": "Who the token belongs to: the service, or a user",
                "operationId": "whoAmI",
                "responses": {"200": _ok("Caller", "The caller")},
            },
        },
        "/api/users/{user_id}/tasks": {
            "parameters": [USER_ID],
            "post": {
                "summary": "Create a reminder task",
                "description": OWNER.strip(),
                "operationId": "createTask",
                "parameters": _writes("SyncOrigin", "IdempotencyKey"),
                "requestBody": _body("TaskCreate", "The new task; `due_date` is required"),
                "responses": {
                    "201": {
                        **_ok("Task", "Created", etag=True),
                        "headers": {
                            **ETAG_HEADER,
                            "Location": {
                                "description": "The task's URL",
                                "schema": {"type": "string"},
                            },
                        },
                    },
                    **_errors(_WRITE_ERRORS),
                },
            },
            "get": {
                "summary": "List the user's tasks (filters: due range, status, Salesforce link)",
                "description": OWNER.strip(),
                "operationId": "listTasks",
                "parameters": [{"in": "query", "schema": api_schemas.TaskListQuerySchema}],
                "responses": {
                    "200": _ok("TaskPage", "One page, ordered by id"),
                    **_errors(_READ_ERRORS),
                },
            },
        },
        "/api/users/{user_id}/command-center": {
            "parameters": [USER_ID],
            "get": {
                "summary": "Tasks due today and tomorrow in the user's time zone, open first",
                "description": OWNER.strip(),
                "operationId": "getCommandCenter",
                "responses": {
                    "200": _ok("CommandCenter", "As the page shows them"),
                    **_errors((404,)),
                },
            },
        },
        "/api/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": {
                "summary": "Read a task (a deleted one only with include_deleted=true)",
                "operationId": "getTask",
                "parameters": [{"in": "query", "schema": api_schemas.TaskGetQuerySchema}],
                "responses": {"200": _ok("Task", "The task", etag=True), **_errors(_READ_ERRORS)},
            },
            "patch": {
                "summary": "Change a task's fields",
                "description": "Only fields that differ count; a change raises the version. "
                "409 `task_deleted` for a deleted task (restore it first).",
                "operationId": "updateTask",
                "parameters": _writes("SyncOrigin", "IdempotencyKey", "IfMatch"),
                "requestBody": _body("TaskPatch", "Only the fields to change"),
                "responses": {
                    "200": _ok("Task", "The task now", etag=True),
                    **_errors(_TASK_WRITE_ERRORS),
                },
            },
            "delete": {
                "summary": "Delete a task (leaves a tombstone; deleting again is a no-op)",
                "operationId": "deleteTask",
                "parameters": _writes("SyncOrigin", "IdempotencyKey", "IfMatch"),
                "responses": {
                    "204": {"description": "Deleted", "headers": ETAG_HEADER},
                    **_errors((400, 404, 409, 412, 422)),
                },
            },
        },
        "/api/tasks/{task_id}/restore": {
            "parameters": [TASK_ID],
            "post": {
                "summary": "Restore a deleted task (a Salesforce undelete flowing back)",
                "operationId": "restoreTask",
                "parameters": _writes("SyncOrigin", "IdempotencyKey", "IfMatch"),
                "responses": {
                    "200": _ok("Task", "The task, live", etag=True),
                    **_errors((400, 404, 409, 412, 422)),
                },
            },
        },
        "/api/salesforce-links": {
            "put": {
                "summary": "Bridge: set the Salesforce link of many tasks in one transaction",
                "description": "Only with `X-Sync-Origin: salesforce`. Each link answers `linked`, "
                "`unchanged`, `not_found`, `deleted` or `conflict` (the Salesforce id is linked "
                "to another task); the others still apply." + SERVICE_ONLY,
                "operationId": "setSalesforceLinks",
                "parameters": _writes("SyncOrigin", "IdempotencyKey"),
                "requestBody": _body("SalesforceLinks", "Up to 500 links"),
                "responses": {
                    "200": _ok("SalesforceLinkResults", "One result per link, in order"),
                    **_errors((400, 413, 415, 422)),
                },
            },
        },
        "/api/changes": {
            "get": {
                "summary": "The change feed: committed changes after a sequence number, in order",
                "description": "Long-polls up to `wait` seconds when there is nothing after "
                "`after`. Sequence numbers never repeat and never skip a committed change."
                + SERVICE_ONLY,
                "operationId": "listChanges",
                "parameters": [{"in": "query", "schema": api_schemas.ChangesQuerySchema}],
                "responses": {"200": _ok("ChangePage", "Changes, oldest first"), **_errors((400,))},
            },
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the database answers",
                "description": "Open: needs no token.",
                "operationId": "health",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Healthy",
                        "content": _json("Health"),
                    }
                },
            },
        },
    }


# Nested schemas come before the schemas that nest them, so each is registered by its name.
_SCHEMAS: Final = {
    "User": api_schemas.UserSchema,
    "UserSummary": api_schemas.UserSummarySchema,
    "FirstSync": api_schemas.FirstSyncSchema,
    "SyncError": api_schemas.SyncErrorSchema,
    "FirstSyncInput": api_schemas.FirstSyncInputSchema,
    "SyncErrorInput": api_schemas.SyncErrorInputSchema,
    "Task": api_schemas.TaskSchema,
    "Change": api_schemas.ChangeSchema,
    "ErrorDetail": api_schemas.ErrorDetailSchema,
    "UserCreate": api_schemas.UserCreateSchema,
    "UserPatch": api_schemas.UserPatchSchema,
    "UserPage": api_schemas.UserPageSchema,
    "SettingsUpdate": api_schemas.SettingsUpdateSchema,
    "Settings": api_schemas.SettingsSchema,
    "SyncStateReport": api_schemas.SyncStateReportSchema,
    "TaskCreate": api_schemas.TaskCreateSchema,
    "TaskPatch": api_schemas.TaskPatchSchema,
    "TaskPage": api_schemas.TaskPageSchema,
    "SalesforceLinks": api_schemas.SalesforceLinksSchema,
    "SalesforceLinkResults": api_schemas.SalesforceLinkResultsSchema,
    "CommandCenter": api_schemas.CommandCenterSchema,
    "ChangePage": api_schemas.ChangePageSchema,
    "Password": api_schemas.PasswordSchema,
    "TokenCreate": api_schemas.TokenCreateSchema,
    "Token": api_schemas.TokenSchema,
    "NewToken": api_schemas.NewTokenSchema,
    "TokenPage": api_schemas.TokenPageSchema,
    "Caller": api_schemas.CallerSchema,
    "Error": api_schemas.ErrorSchema,
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Sales Connect",
        version="1",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": "Users' reminder tasks, their sync settings, and the change feed "
            "the tasksync bridge reads. Errors are "
            '`{"error": {"code", "message", "fields": {name: [rules]}}}`. Every operation '
            "but /healthz needs `Authorization: Bearer TOKEN`: the service credential (the "
            "bridge's; it may do everything) or a user's API token (that user's own data)."
        },
        security=[{SECURITY_SCHEME: []}],
    )
    spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "The service token, or a user's API token (`tok_<id>.<secret>`)",
        },
    )
    plugin.map_to_openapi_type(CalendarDate, "string", "date")  # type: ignore[no-untyped-call]
    plugin.map_to_openapi_type(UtcStamp, "string", None)  # type: ignore[no-untyped-call]
    for name, schema in _SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    spec.components.schema(
        "Health",
        {
            "type": "object",
            "required": ["status", "database", "head_seq"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "database": {"type": "string"},
                "head_seq": {"type": "integer"},
            },
        },
    )
    for name, parameter in _HEADER_PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], parameter)
    for code, (name, description) in _ERRORS.items():
        response: dict[str, Any] = {"description": description, "content": _json("Error")}
        if code in (401, 403):
            response["headers"] = UNAUTHORIZED_HEADERS
        spec.components.response(name, response)
    for path, operations in _operations().items():
        for method, operation in operations.items():
            if method != "parameters" and operation.get("security") != []:
                operation["responses"].update(_errors((401, 403)))
        parameters = operations.pop("parameters", None)
        spec.path(path=path, operations=operations, parameters=parameters)
    document: dict[str, Any] = spec.to_dict()
    return document
