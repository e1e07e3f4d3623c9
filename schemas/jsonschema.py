"""Exports the message contracts as JSON Schema files under `schemas/json/`.

The marshmallow schemas are the definition; these files are derived from them for operators
and for the Salesforce-side package. `tasksync schema export` rewrites them and
`tasksync schema export --check` (run by the tests) fails when they drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from schemas.fields import (
    CALENDAR_DATE_PATTERN,
    UTC_STAMP_PATTERN,
    CalendarDate,
    JsonScalarValue,
    UtcStamp,
)
from schemas.notification import NotificationBatchSchema
from schemas.task_change import TaskChangeSchema

JSON_DIR: Final = Path(__file__).with_name("json")
SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_BASE: Final = "https://tasksync.invalid/schemas/"


@dataclass(frozen=True)
class ExportedSchema:
    file_name: str
    schema: type[Schema]
    conditions: tuple[dict[str, Any], ...] = ()


EXPORTS: Final = (
    ExportedSchema(
        "task-change.v1.json",
        TaskChangeSchema,
        conditions=(
            {
                "if": {"properties": {"op": {"const": "delete"}}},
                "then": {"properties": {"changed": {"maxProperties": 0}}},
            },
            {
                "if": {"properties": {"origin": {"const": "salesforce"}}},
                "then": {
                    "properties": {
                        "record": {"required": ["salesforce_task_id"]},
                        "owner": {"required": ["salesforce_user_id"]},
                    }
                },
            },
            {
                "if": {"properties": {"origin": {"const": "salesconnect"}}},
                "then": {
                    "properties": {
                        "record": {"required": ["salesconnect_task_id"]},
                        "owner": {"required": ["salesconnect_user_id"]},
                    }
                },
            },
        ),
    ),
    ExportedSchema("task-notification.v1.json", NotificationBatchSchema),
)


def _converter() -> Any:
    # A resolver that names no schema makes apispec inline every nested schema.
    def inline(_schema: type[Schema]) -> str | None:
        return None

    plugin = MarshmallowPlugin(schema_name_resolver=cast(Any, inline))
    APISpec(title="tasksync", version="1", openapi_version="3.1.0", plugins=[plugin])
    return plugin.converter


def _custom_field_properties(converter: Any) -> None:
    def describe(_self: Any, field: Any, **_: Any) -> dict[str, Any]:
        if isinstance(field, CalendarDate):
            return {
                "type": ["string", "null"] if field.allow_none else "string",
                "pattern": CALENDAR_DATE_PATTERN.pattern,
                "format": "date",
            }
        if isinstance(field, UtcStamp):
            return {"type": "string", "pattern": UTC_STAMP_PATTERN.pattern, "format": "date-time"}
        if isinstance(field, JsonScalarValue):
            return {"type": ["string", "number", "boolean", "null"]}
        return {}

    converter.add_attribute_function(describe)


def _close_objects(node: Any) -> None:
    """Every contract schema rejects unknown fields (marshmallow `RAISE`); say so in the file.

    apispec leaves `additionalProperties` out when a schema has a description.
    """
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for item in node:
            _close_objects(item)


def build(export: ExportedSchema) -> dict[str, Any]:
    converter = _converter()
    _custom_field_properties(converter)
    body: dict[str, Any] = converter.schema2jsonschema(export.schema())
    _close_objects(body)
    for name in ("owner", "record"):
        nested = body.get("properties", {}).get(name)
        if nested is not None:
            nested["minProperties"] = 1
    # marshmallow's Length also bounds dicts; JSON Schema calls that maxProperties.
    source_values = body.get("properties", {}).get("source_values")
    if source_values is not None:
        source_values.pop("maxLength", None)
    document: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": ID_BASE + export.file_name,
        **body,
    }
    if export.conditions:
        document["allOf"] = list(export.conditions)
    return document


def render(export: ExportedSchema) -> str:
    return json.dumps(build(export), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def export_all(directory: Path = JSON_DIR, check: bool = False) -> list[Path]:
    """Write every schema file, or with `check` return the files that differ (nothing written)."""
    stale: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)
    for export in EXPORTS:
        path = directory / export.file_name
        text = render(export)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    return stale
