"""The `TaskChange` message: the one contract between every producer and every worker.

A producer publishes one message per change it saw on its side; workers load it into the
frozen records below, never into dicts, so a field that does not exist cannot be read. The
marshmallow schemas are the single definition: `schemas.jsonschema` exports the JSON Schema
from them, and a test fails when the exported file drifts.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import fastjsonschema
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    post_load,
    pre_dump,
    validate,
    validates_schema,
)

from schemas.errors import ContractError
from schemas.fields import (
    CalendarDate,
    FullMatch,
    JsonScalar,
    JsonScalarValue,
    UtcStamp,
    parse_calendar_date,
    parse_utc_stamp,
    salesconnect_id,
    salesforce_id,
)

SCHEMA_VERSION: Final = 1
NAME_MAX_LENGTH: Final = 1000
DETAILS_MAX_LENGTH: Final = 100_000
ACTOR_MAX_LENGTH: Final = 64
SOURCE_VALUES_MAX_ITEMS: Final = 64


class Origin(enum.StrEnum):
    SALESFORCE = "salesforce"
    SALESCONNECT = "salesconnect"


class Op(enum.StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"
    UNDELETE = "undelete"


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETED = "completed"


class TaskPriority(enum.StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class Unset(enum.Enum):
    """Marks a field that did not change: distinct from a change to null (a cleared due date)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET

NEUTRAL_FIELDS: Final = ("name", "status", "priority", "due_date", "details")


@dataclass(frozen=True)
class ChangedFields:
    """The neutral task fields that changed, with their new values; the rest are `UNSET`."""

    name: str | Unset = UNSET
    status: TaskStatus | Unset = UNSET
    priority: TaskPriority | Unset = UNSET
    due_date: date | Unset | None = UNSET
    details: str | Unset = UNSET

    def present(self) -> dict[str, str | TaskStatus | TaskPriority | date | None]:
        """The changed fields by name, in the order of `NEUTRAL_FIELDS`."""
        values: dict[str, str | TaskStatus | TaskPriority | date | None] = {}
        for name in NEUTRAL_FIELDS:
            value = getattr(self, name)
            if value is not UNSET:
                values[name] = value
        return values

    def is_empty(self) -> bool:
        return not self.present()


@dataclass(frozen=True)
class Owner:
    """Whose task it is, in whichever systems the producer knows the user."""

    salesconnect_user_id: str | None = None
    salesforce_user_id: str | None = None


@dataclass(frozen=True)
class RecordRef:
    """Which task, in whichever systems the producer knows it."""

    salesconnect_task_id: str | None = None
    salesforce_task_id: str | None = None


@dataclass(frozen=True)
class TaskChange:
    message_id: uuid.UUID
    origin: Origin
    op: Op
    occurred_at: datetime
    actor: str
    owner: Owner
    record: RecordRef
    trace_id: str
    changed: ChangedFields = ChangedFields()
    source_values: Mapping[str, JsonScalar] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


class _StrictSchema(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


class ChangedFieldsSchema(_StrictSchema):
    class Meta(_StrictSchema.Meta):
        description = "Only the neutral task fields that changed, with their new values."

    name = fields.String(
        validate=validate.Length(min=1, max=NAME_MAX_LENGTH),
        metadata={"description": "Task name (Salesforce Subject through the subject template)"},
    )
    status = fields.Enum(TaskStatus, by_value=True)
    priority = fields.Enum(TaskPriority, by_value=True)
    due_date = CalendarDate(
        allow_none=True, metadata={"description": "Calendar date YYYY-MM-DD, or null"}
    )
    details = fields.String(validate=validate.Length(max=DETAILS_MAX_LENGTH))

    @pre_dump
    def _only_present(self, record: ChangedFields, **_: Any) -> dict[str, Any]:
        return record.present()

    @post_load
    def _record(self, data: dict[str, Any], **_: Any) -> ChangedFields:
        return ChangedFields(**data)


class OwnerSchema(_StrictSchema):
    class Meta(_StrictSchema.Meta):
        description = "The task's owner: Sales Connect user id and/or Salesforce user id."

    salesconnect_user_id = salesconnect_id()
    salesforce_user_id = salesforce_id()

    @validates_schema
    def _one_id_at_least(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Must name salesconnect_user_id, salesforce_user_id or both.")

    @post_dump
    def _drop_unknown(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}

    @post_load
    def _record(self, data: dict[str, Any], **_: Any) -> Owner:
        return Owner(**data)


class RecordRefSchema(_StrictSchema):
    class Meta(_StrictSchema.Meta):
        description = "The task: Sales Connect task id and/or Salesforce Task id."

    salesconnect_task_id = salesconnect_id()
    salesforce_task_id = salesforce_id()

    @validates_schema
    def _one_id_at_least(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Must name salesconnect_task_id, salesforce_task_id or both.")

    @post_dump
    def _drop_unknown(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}

    @post_load
    def _record(self, data: dict[str, Any], **_: Any) -> RecordRef:
        return RecordRef(**data)


_SOURCE_ID_FIELD: Final = {
    Origin.SALESFORCE: ("salesforce_task_id", "salesforce_user_id"),
    Origin.SALESCONNECT: ("salesconnect_task_id", "salesconnect_user_id"),
}


class TaskChangeSchema(_StrictSchema):
    class Meta(_StrictSchema.Meta):
        title = "TaskChange"
        description = (
            "One change of one reminder task, published by a tasksync producer onto "
            "tasksync.salesconnect.changes or tasksync.salesforce.changes."
        )

    schema_version = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Equal(SCHEMA_VERSION, error="Must be {other}: the only version known."),
    )
    message_id = fields.UUID(required=True)
    origin = fields.Enum(Origin, by_value=True, required=True)
    op = fields.Enum(Op, by_value=True, required=True)
    occurred_at = UtcStamp(
        required=True,
        metadata={"description": "The source's own modification stamp, UTC, milliseconds"},
    )
    actor = fields.String(
        required=True,
        validate=validate.Length(min=1, max=ACTOR_MAX_LENGTH),
        metadata={"description": "Source user id that made the change"},
    )
    owner = fields.Nested(OwnerSchema, required=True)
    record = fields.Nested(RecordRefSchema, required=True)
    changed = fields.Nested(ChangedFieldsSchema, required=True)
    source_values = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=80)),
        values=JsonScalarValue(allow_none=True),
        required=True,
        validate=validate.Length(
            max=SOURCE_VALUES_MAX_ITEMS, error="Must hold at most {max} values."
        ),
        metadata={
            "description": "Raw source values kept for audit, mapped or not",
            "maxProperties": SOURCE_VALUES_MAX_ITEMS,
        },
    )
    trace_id = fields.String(
        required=True,
        validate=FullMatch(r"^[0-9a-f]{32}$", error="Must be 32 lowercase hex digits."),
    )

    @validates_schema(skip_on_field_errors=True)
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        origin: Origin = data["origin"]
        task_field, user_field = _SOURCE_ID_FIELD[origin]
        if getattr(data["record"], task_field) is None:
            errors["record"] = [f"Must carry {task_field} when origin is {origin.value}."]
        if getattr(data["owner"], user_field) is None:
            errors["owner"] = [f"Must carry {user_field} when origin is {origin.value}."]
        if data["op"] is Op.DELETE and not data["changed"].is_empty():
            errors["changed"] = ["Must be empty when op is delete."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _record(self, data: dict[str, Any], **_: Any) -> TaskChange:
        return TaskChange(**data)


_SCHEMA: Final = TaskChangeSchema()
_JSON_SCHEMA_FILE: Final = Path(__file__).with_name("json") / "task-change.v1.json"
_accepts_well_formed: Callable[[Any], Any] = fastjsonschema.compile(
    json.loads(_JSON_SCHEMA_FILE.read_text(encoding="utf-8"))
)


def _fast_load(raw: Mapping[str, Any]) -> TaskChange:
    """Build the records straight from a message the exported JSON Schema accepts.

    Loading through marshmallow costs ~85 µs a message, more than RabbitMQ spends delivering
    it; the compiled schema plus the same parse functions take ~20 µs. Any message this path
    does not accept goes through marshmallow, which names every bad field; a property test
    holds that this path never accepts what marshmallow rejects.
    """
    _accepts_well_formed(raw)
    if type(raw["schema_version"]) is not int:
        raise ValueError("schema_version must be an integer")
    changed: dict[str, Any] = dict(raw["changed"])
    if "status" in changed:
        changed["status"] = TaskStatus(changed["status"])
    if "priority" in changed:
        changed["priority"] = TaskPriority(changed["priority"])
    if changed.get("due_date") is not None:
        changed["due_date"] = parse_calendar_date(changed["due_date"])
    return TaskChange(
        message_id=uuid.UUID(raw["message_id"]),
        origin=Origin(raw["origin"]),
        op=Op(raw["op"]),
        occurred_at=parse_utc_stamp(raw["occurred_at"]),
        actor=raw["actor"],
        owner=Owner(**raw["owner"]),
        record=RecordRef(**raw["record"]),
        trace_id=raw["trace_id"],
        changed=ChangedFields(**changed),
        source_values=dict(raw["source_values"]),
        schema_version=raw["schema_version"],
    )


def load_task_change(raw: bytes | str | Mapping[str, Any]) -> TaskChange:
    """Parse and validate one message body; `ContractError` names every bad field and rule."""
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractError({"_body": [f"Not valid UTF-8 JSON: {exc}."]}) from None
    if not isinstance(raw, Mapping):
        raise ContractError({"_body": ["Must be a JSON object."]})
    try:
        return _fast_load(raw)
    except (fastjsonschema.JsonSchemaException, ValueError, TypeError, KeyError):
        pass
    version = raw.get("schema_version")
    if isinstance(version, bool):
        raise ContractError({"schema_version": ["Not a valid integer."]})
    if isinstance(version, int) and version != SCHEMA_VERSION:
        raise ContractError(
            {"schema_version": [f"Unsupported schema version {version}; this build reads 1."]}
        )
    try:
        loaded: TaskChange = _SCHEMA.load(raw)
    except ValidationError as exc:
        raise ContractError.from_marshmallow(exc) from None
    return loaded


def dump_task_change(change: TaskChange) -> dict[str, Any]:
    dumped: dict[str, Any] = _SCHEMA.dump(change)
    return dumped


def task_change_json(change: TaskChange) -> bytes:
    """The wire form: compact UTF-8 JSON."""
    return json.dumps(dump_task_change(change), separators=(",", ":"), ensure_ascii=False).encode()
