"""The JSON API's request and response shapes, as marshmallow schemas.

Requests load through these (unknown fields are refused, each error names its field and
rule); responses are built by `salesconnect.api` and described here for `/openapi.json`,
where the schemathesis tests hold them to what the server really answers. Field rules shared
with the message contract (lengths, enums, date and stamp formats, id patterns) come from
`schemas`, so a task the API accepts is one the bridge can carry.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, Final

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from marshmallow.types import ErrorMessages

from salesconnect.model import ChangeOp, ChangeOrigin, FirstSyncState, TaskSync
from schemas.fields import (
    SALESCONNECT_ID_PATTERN,
    SALESFORCE_ID_PATTERN,
    UTC_STAMP_PATTERN,
    CalendarDate,
    UtcStamp,
)
from schemas.task_change import DETAILS_MAX_LENGTH, NAME_MAX_LENGTH, TaskPriority, TaskStatus

USER_NAME_MAX_LENGTH: Final = 200
EMAIL_MAX_LENGTH: Final = 320
TEMPLATE_MAX_LENGTH: Final = 1000
SYNC_ERROR_MAX_LENGTH: Final = 10_000
PASSWORD_MIN_LENGTH: Final = 12
PASSWORD_MAX_LENGTH: Final = 1000
TOKEN_NAME_MAX_LENGTH: Final = 200
PAGE_LIMIT_MAX: Final = 1000
WAIT_MAX_SECONDS: Final = 30.0
NOT_BLANK_PATTERN: Final = r"\S"
# Spelled with explicit ranges: `\s` means different characters to Python and to the
# JSON Schema validators that read /openapi.json.
EMAIL_PATTERN: Final = r"^[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+$"


class Text(fields.String):
    """A string that every database can store: no NUL characters, no unpaired surrogates."""

    default_error_messages: ErrorMessages = {
        "nul": "Must not contain NUL characters.",
        "surrogate": "Must be valid Unicode text (no unpaired surrogate code points).",
    }

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("nul")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("surrogate") from None
        return text


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")


@functools.cache
def known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _whole(pattern: str, error: str) -> Callable[[str], None]:
    """A pattern rule over the whole value: `re.match` with `$` would let a trailing newline in."""
    compiled = re.compile(pattern)

    def rule(value: str) -> None:
        if compiled.fullmatch(value) is None:
            raise ValidationError(error)

    return rule


def _email(**kwargs: Any) -> Text:
    return Text(
        validate=[
            validate.Length(max=EMAIL_MAX_LENGTH),
            _whole(EMAIL_PATTERN, "Must be an email address: name@example.com."),
        ],
        metadata={"pattern": EMAIL_PATTERN},
        **kwargs,
    )


def _known_time_zone(value: str) -> None:
    if value not in known_time_zones():
        raise ValidationError("Must be an IANA time zone name, e.g. Europe/Berlin.")


SALESCONNECT_ID_RULE: Final = "Must be a Sales Connect id: 1-64 letters, digits, '_' or '-'."
SALESFORCE_ID_RULE: Final = "Must be an 18-character Salesforce id."


def _salesconnect_id(**kwargs: Any) -> fields.String:
    metadata = {"pattern": SALESCONNECT_ID_PATTERN.pattern, **kwargs.pop("metadata", {})}
    return fields.String(
        validate=_whole(SALESCONNECT_ID_PATTERN.pattern, SALESCONNECT_ID_RULE),
        metadata=metadata,
        **kwargs,
    )


def _salesforce_id(**kwargs: Any) -> fields.String:
    metadata = {"pattern": SALESFORCE_ID_PATTERN.pattern, **kwargs.pop("metadata", {})}
    return fields.String(
        validate=_whole(SALESFORCE_ID_PATTERN.pattern, SALESFORCE_ID_RULE),
        metadata=metadata,
        **kwargs,
    )


def _task_name(**kwargs: Any) -> Text:
    return Text(
        validate=[validate.Length(min=1, max=NAME_MAX_LENGTH), _not_blank],
        metadata={"description": "Short title; not blank", "pattern": NOT_BLANK_PATTERN},
        **kwargs,
    )


def _details(**kwargs: Any) -> Text:
    return Text(
        validate=validate.Length(max=DETAILS_MAX_LENGTH),
        metadata={"description": "Free text; empty when there is none"},
        **kwargs,
    )


def _password(**kwargs: Any) -> Text:
    return Text(
        load_only=True,
        validate=[
            validate.Length(
                min=PASSWORD_MIN_LENGTH,
                max=PASSWORD_MAX_LENGTH,
                error=f"Must be {PASSWORD_MIN_LENGTH}-{PASSWORD_MAX_LENGTH} characters long.",
            ),
            _not_blank,
        ],
        metadata={
            "description": "The page sign-in password; stored only as an argon2id hash",
            "format": "password",
            "writeOnly": True,
            "pattern": NOT_BLANK_PATTERN,
        },
        **kwargs,
    )


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


class UserCreateSchema(StrictSchema):
    id = _salesconnect_id(
        metadata={"description": "Optional; the service makes a `usr_...` id when absent"}
    )
    email = _email(required=True)
    name = Text(
        required=True,
        validate=[validate.Length(min=1, max=USER_NAME_MAX_LENGTH), _not_blank],
        metadata={"pattern": NOT_BLANK_PATTERN},
    )
    time_zone = fields.String(
        required=True,
        validate=_known_time_zone,
        metadata={
            "description": "IANA time zone name, e.g. Europe/Berlin",
            "enum": sorted(known_time_zones()),
        },
    )
    salesforce_user_id = _salesforce_id(
        allow_none=True,
        metadata={"description": "The Salesforce user this user is connected to"},
    )
    password = _password()


class PasswordSchema(StrictSchema):
    password = _password(required=True)


class TokenCreateSchema(StrictSchema):
    name = Text(
        required=True,
        validate=[validate.Length(min=1, max=TOKEN_NAME_MAX_LENGTH), _not_blank],
        metadata={"description": "What the token is for, e.g. the script using it"},
    )


class UserPatchSchema(StrictSchema):
    email = _email()
    name = Text(
        validate=[validate.Length(min=1, max=USER_NAME_MAX_LENGTH), _not_blank],
        metadata={"pattern": NOT_BLANK_PATTERN},
    )
    time_zone = fields.String(
        validate=_known_time_zone,
        metadata={"description": "IANA time zone name", "enum": sorted(known_time_zones())},
    )
    salesforce_user_id = _salesforce_id(allow_none=True)


class SettingsUpdateSchema(StrictSchema):
    task_sync = fields.Enum(
        TaskSync,
        by_value=True,
        metadata={"description": "off: Do not sync; on: Sync reminder tasks to Salesforce tasks"},
    )
    activity_subject_template = Text(
        validate=[validate.Length(min=1, max=TEMPLATE_MAX_LENGTH), _not_blank],
        metadata={
            "description": "Salesforce Subject template; {{activity_subject}} is the task name",
            "pattern": NOT_BLANK_PATTERN,
        },
    )


class FirstSyncInputSchema(StrictSchema):
    state = fields.Enum(FirstSyncState, by_value=True, required=True)
    error = Text(allow_none=True, validate=validate.Length(max=SYNC_ERROR_MAX_LENGTH))
    started_at = UtcStamp(allow_none=True, metadata={"pattern": UTC_STAMP_PATTERN.pattern})
    finished_at = UtcStamp(allow_none=True, metadata={"pattern": UTC_STAMP_PATTERN.pattern})


class SyncErrorInputSchema(StrictSchema):
    message = Text(
        required=True,
        validate=[validate.Length(min=1, max=SYNC_ERROR_MAX_LENGTH), _not_blank],
        metadata={"pattern": NOT_BLANK_PATTERN},
    )
    occurred_at = UtcStamp(required=True, metadata={"pattern": UTC_STAMP_PATTERN.pattern})


class SyncStateReportSchema(StrictSchema):
    first_sync = fields.Nested(FirstSyncInputSchema)
    last_sync_error = fields.Nested(
        SyncErrorInputSchema,
        allow_none=True,
        metadata={"description": "The error to show the user, or null to clear it"},
    )


class TaskCreateSchema(StrictSchema):
    name = _task_name(required=True)
    due_date = CalendarDate(
        required=True,
        allow_none=True,
        metadata={"description": "YYYY-MM-DD, or null for no due date (the key is required)"},
    )
    status = fields.Enum(TaskStatus, by_value=True, load_default=TaskStatus.OPEN)
    priority = fields.Enum(TaskPriority, by_value=True, load_default=TaskPriority.NORMAL)
    details = _details(load_default="")
    salesforce_task_id = _salesforce_id(
        allow_none=True,
        metadata={"description": "Only with X-Sync-Origin: salesforce (the bridge's link)"},
    )


class TaskPatchSchema(StrictSchema):
    name = _task_name()
    due_date = CalendarDate(allow_none=True, metadata={"description": "YYYY-MM-DD or null"})
    status = fields.Enum(TaskStatus, by_value=True)
    priority = fields.Enum(TaskPriority, by_value=True)
    details = _details()
    salesforce_task_id = _salesforce_id(
        allow_none=True,
        metadata={"description": "Only with X-Sync-Origin: salesforce; null unlinks"},
    )


LINKS_PER_REQUEST_MAX: Final = 500


class SalesforceLinkSchema(StrictSchema):
    task_id = _salesconnect_id(required=True)
    salesforce_task_id = _salesforce_id(
        required=True, allow_none=True, metadata={"description": "The Task's id; null unlinks"}
    )


class SalesforceLinksSchema(StrictSchema):
    links = fields.List(
        fields.Nested(SalesforceLinkSchema),
        required=True,
        validate=validate.Length(min=1, max=LINKS_PER_REQUEST_MAX),
    )


class SalesforceLinkResultSchema(StrictSchema):
    task_id = fields.String(required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf(["linked", "unchanged", "not_found", "deleted", "conflict"]),
    )
    version = fields.Integer(allow_none=True)


class SalesforceLinkResultsSchema(StrictSchema):
    results = fields.List(fields.Nested(SalesforceLinkResultSchema), required=True)


class _QuerySchema(Schema):
    class Meta:
        ordered = True


class TaskListQuerySchema(_QuerySchema):
    due_from = CalendarDate(metadata={"description": "Due on or after this date"})
    due_to = CalendarDate(metadata={"description": "Due on or before this date"})
    status = fields.Enum(TaskStatus, by_value=True)
    include_deleted = fields.Boolean(load_default=False)
    salesforce_task_id = _salesforce_id(metadata={"description": "The task linked to this id"})
    after = _salesconnect_id(metadata={"description": "Page after this task id"})
    limit = fields.Integer(
        load_default=100, strict=False, validate=validate.Range(min=1, max=PAGE_LIMIT_MAX)
    )

    @validates_schema
    def _ordered_range(self, data: dict[str, Any], **_: Any) -> None:
        due_from, due_to = data.get("due_from"), data.get("due_to")
        if due_from is not None and due_to is not None and due_from > due_to:
            raise ValidationError("Must not be before due_from.", field_name="due_to")


class TaskGetQuerySchema(_QuerySchema):
    include_deleted = fields.Boolean(load_default=False)


class UserListQuerySchema(_QuerySchema):
    task_sync = fields.Enum(TaskSync, by_value=True)
    after = _salesconnect_id(metadata={"description": "Page after this user id"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=PAGE_LIMIT_MAX))


class ChangesQuerySchema(_QuerySchema):
    after = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=2**62),
        metadata={"description": "Return changes with seq greater than this"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=PAGE_LIMIT_MAX))
    wait = fields.Float(
        load_default=0.0,
        allow_nan=False,
        validate=validate.Range(min=0, max=WAIT_MAX_SECONDS),
        metadata={"description": "Seconds to wait for a change when there is none yet"},
    )


# Response shapes: documentation for /openapi.json, checked against real answers by the tests.


def _stamp(**kwargs: Any) -> fields.String:
    return fields.String(
        metadata={
            "format": "date-time",
            "description": "UTC, milliseconds, e.g. ...T10:00:00.000Z",
        },
        **kwargs,
    )


class UserSchema(StrictSchema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    time_zone = fields.String(required=True)
    salesforce_user_id = fields.String(required=True, allow_none=True)
    created_at = _stamp(required=True)
    updated_at = _stamp(required=True)


class UserSummarySchema(UserSchema):
    task_sync = fields.Enum(TaskSync, by_value=True, required=True)
    first_enabled_at = _stamp(required=True, allow_none=True)
    last_enabled_at = _stamp(required=True, allow_none=True)


class UserPageSchema(StrictSchema):
    users = fields.List(fields.Nested(UserSummarySchema), required=True)
    next_after = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as `after` for the next page; null on the last page"},
    )


class FirstSyncSchema(StrictSchema):
    state = fields.Enum(FirstSyncState, by_value=True, required=True)
    error = fields.String(required=True, allow_none=True)
    started_at = _stamp(required=True, allow_none=True)
    finished_at = _stamp(required=True, allow_none=True)


class SyncErrorSchema(StrictSchema):
    message = fields.String(required=True)
    occurred_at = _stamp(required=True)


class SettingsSchema(StrictSchema):
    user_id = fields.String(required=True)
    task_sync = fields.Enum(TaskSync, by_value=True, required=True)
    activity_subject_template = fields.String(required=True)
    first_enabled_at = _stamp(required=True, allow_none=True)
    last_enabled_at = _stamp(required=True, allow_none=True)
    first_sync = fields.Nested(FirstSyncSchema, required=True)
    last_sync_error = fields.Nested(SyncErrorSchema, required=True, allow_none=True)
    updated_at = _stamp(required=True)


class TaskSchema(StrictSchema):
    id = fields.String(required=True)
    user_id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.Enum(TaskStatus, by_value=True, required=True)
    priority = fields.Enum(TaskPriority, by_value=True, required=True)
    due_date = fields.String(required=True, allow_none=True, metadata={"format": "date"})
    details = fields.String(required=True)
    salesforce_task_id = fields.String(
        required=True, allow_none=True, metadata={"description": "Linked Salesforce Task id"}
    )
    version = fields.Integer(required=True, metadata={"description": "Rises on every change"})
    created_at = _stamp(required=True)
    updated_at = _stamp(required=True)
    deleted_at = _stamp(required=True, allow_none=True)


class TaskPageSchema(StrictSchema):
    tasks = fields.List(fields.Nested(TaskSchema), required=True)
    next_after = fields.String(required=True, allow_none=True)


class CommandCenterSchema(StrictSchema):
    user_id = fields.String(required=True)
    time_zone = fields.String(required=True)
    today = fields.String(required=True, metadata={"format": "date"})
    tomorrow = fields.String(required=True, metadata={"format": "date"})
    tasks = fields.List(
        fields.Nested(TaskSchema),
        required=True,
        metadata={"description": "Due today or tomorrow; open first, then by due date"},
    )


class ChangeSchema(StrictSchema):
    seq = fields.Integer(required=True)
    user_id = fields.String(required=True)
    task_id = fields.String(required=True, allow_none=True)
    op = fields.Enum(ChangeOp, by_value=True, required=True)
    changed = fields.Dict(
        keys=fields.String(),
        required=True,
        metadata={"description": "Changed fields with their new values (all fields on create)"},
    )
    version = fields.Integer(required=True, allow_none=True)
    occurred_at = _stamp(required=True)
    actor = fields.String(required=True)
    origin = fields.Enum(ChangeOrigin, by_value=True, required=True)
    task_sync = fields.Enum(TaskSync, by_value=True, required=True)
    salesforce_task_id = fields.String(required=True, allow_none=True)
    task_created_at = _stamp(required=True, allow_none=True)
    first_enabled_at = _stamp(required=True, allow_none=True)
    last_enabled_at = _stamp(required=True, allow_none=True)


class ChangePageSchema(StrictSchema):
    changes = fields.List(fields.Nested(ChangeSchema), required=True)
    next_after = fields.Integer(
        required=True, metadata={"description": "Pass as `after` next time"}
    )
    head_seq = fields.Integer(
        required=True, metadata={"description": "The newest seq committed when this was read"}
    )


class TokenSchema(StrictSchema):
    id = fields.String(required=True)
    user_id = fields.String(required=True)
    name = fields.String(required=True)
    created_at = _stamp(required=True)
    revoked_at = _stamp(required=True, allow_none=True)


class NewTokenSchema(TokenSchema):
    token = fields.String(
        required=True,
        metadata={
            "description": "The token: send it as `Authorization: Bearer TOKEN`. Shown "
            "this once; the service keeps only its digest"
        },
    )


class TokenPageSchema(StrictSchema):
    tokens = fields.List(fields.Nested(TokenSchema), required=True)


class CallerSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(["service", "user"]))
    user_id = fields.String(required=True, allow_none=True)
    token_id = fields.String(required=True, allow_none=True)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.List(fields.String()),
        required=True,
        metadata={"description": "Each offending field with the rules it broke"},
    )
    current_version = fields.Integer(metadata={"description": "On 409/412 for a task"})
    task_id = fields.String(metadata={"description": "The task a Salesforce id is linked to"})


class ErrorSchema(StrictSchema):
    error = fields.Nested(ErrorDetailSchema, required=True)
