"""Reading a record body sent to the REST API into stored field values, with Salesforce's errors.

This is the deserialisation step of a save: unknown fields (`INVALID_FIELD`), values of the
wrong JSON type (`JSON_PARSER_ERROR`, with the line and column like Salesforce's parser reports),
fields that cannot be set on this operation (`INVALID_FIELD_FOR_INSERT_UPDATE`), and the
per-field rules that need no other record: text length in UTF-16 code units
(`STRING_TOO_LONG`), restricted picklists (`INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`), required
values (`REQUIRED_FIELD_MISSING`) and id syntax (`MALFORMED_ID`). Rules that need the database
(owner is an active user, external id is unique) and validation rules run afterwards in
`org.py`. Blank text is stored as null, as Salesforce stores it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from salesforce_emulator import ids
from salesforce_emulator.errors import ApiError, json_parser_error, record_error
from salesforce_emulator.sobjects import FieldSpec, SObjectSpec
from salesforce_emulator.stamps import parse_date

_JSON_KIND: Final = {
    dict: "START_OBJECT",
    list: "START_ARRAY",
    bool: "VALUE_TRUE",
    int: "VALUE_NUMBER_INT",
    float: "VALUE_NUMBER_FLOAT",
    str: "VALUE_STRING",
}
_MESSAGE_VALUE_LIMIT: Final = 255


def utf16_length(text: str) -> int:
    """Salesforce counts text length in UTF-16 code units (an emoji counts two)."""
    return len(text.encode("utf-16-le")) // 2


def parse_json_body(raw: bytes) -> tuple[Any, str]:
    """The decoded JSON document and its text; JSON_PARSER_ERROR as Salesforce words it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json_parser_error(
            f"Invalid UTF-8 middle byte at [line:1, column:{exc.start + 1}]"
        ) from None
    if not text.strip():
        raise json_parser_error("No content to map due to end-of-input at [line:1, column:0]")
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        char = text[exc.pos : exc.pos + 1] or "EOF"
        raise json_parser_error(
            f"Unexpected character ('{char}' (code {ord(char) if len(char) == 1 else -1})): "
            f"{exc.msg} at [line:{exc.lineno}, column:{exc.colno}]"
        ) from None


def all_or_none_flag(document: Mapping[str, Any]) -> bool:
    """A body's `allOrNone` (false when absent); anything but a boolean is refused as
    Salesforce's JSON parser refuses it."""
    value = document.get("allOrNone", False)
    if not isinstance(value, bool):
        raise json_parser_error(
            f"Cannot deserialize instance of boolean from value {value} (allOrNone)"
        )
    return value


def _location(text: str, key: str) -> str:
    """`[line:L, column:C]` of the value of `key` in the raw body, as Jackson reports it."""
    lowered = text.lower()
    found = lowered.find(f'"{key.lower()}"')
    if found < 0:
        return "[line:1, column:1]"
    colon = text.find(":", found)
    position = colon + 1
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"[line:{line}, column:{column}]"


def _deserialize_error(
    spec: FieldSpec, value: Any, type_name: str, text: str, key: str
) -> ApiError:
    kind = _JSON_KIND.get(type(value), "VALUE_STRING")
    shown = (
        value if not isinstance(value, dict | list) else ("{" if isinstance(value, dict) else "[")
    )
    return json_parser_error(
        f"Cannot deserialize instance of {type_name} from {kind} value {shown} or request may be "
        f"missing a required field at {_location(text, key)}"
    )


def parse_body(sobject: SObjectSpec, body: Any, text: str, *, creating: bool) -> dict[str, Any]:
    """Stored values for the fields a create (`creating`) or update body sets.

    `attributes` is ignored and `Id` is left to the caller; everything else must be a field
    that this operation may set.
    """
    if not isinstance(body, Mapping):
        kind = (
            "START_ARRAY" if isinstance(body, list) else _JSON_KIND.get(type(body), "VALUE_STRING")
        )
        raise json_parser_error(
            f"Cannot deserialize instance of SObject from {kind} value or request may be missing "
            "a required field at [line:1, column:1]"
        )
    values: dict[str, Any] = {}
    not_settable: list[str] = []
    for key, value in body.items():
        if key == "attributes" or key.lower() == "id":
            continue
        spec = sobject.get_field(key)
        if spec is None:
            raise ApiError(
                400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}"
            )
        settable = spec.createable if creating else spec.updateable
        if not settable:
            not_settable.append(spec.name)
            continue
        values[spec.name] = _coerce(spec, value, text, key)
    if not_settable:
        raise record_error(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {', '.join(not_settable)}. Please check the security "
            "settings of this field and verify that it is read/write for your profile or "
            "permission set.",
            not_settable,
        )
    return values


def _coerce(spec: FieldSpec, value: Any, text: str, key: str) -> Any:
    if spec.soql_kind == "boolean":
        if value is None:
            return 0
        if not isinstance(value, bool):
            raise _deserialize_error(spec, value, "boolean", text, key)
        return 1 if value else 0
    if isinstance(value, dict | list):
        raise _deserialize_error(spec, value, _jackson_type(spec), text, key)
    if spec.soql_kind == "date" and value is not None and not isinstance(value, str):
        raise _deserialize_error(spec, value, "date", text, key)
    as_text = None if value is None else _as_text(value)
    if not as_text:
        return _required(spec)
    if spec.soql_kind == "date":
        try:
            return parse_date(as_text)
        except ValueError:
            raise _deserialize_error(spec, value, "date", text, key) from None
    if spec.soql_kind == "id":
        return _id_value(spec, as_text)
    if spec.restricted_picklist and as_text not in spec.picklist_values:
        raise record_error(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{spec.label}: bad value for restricted picklist field: {as_text}",
            [spec.name],
        )
    if spec.length and utf16_length(as_text) > spec.length:
        shown = (
            as_text
            if len(as_text) <= _MESSAGE_VALUE_LIMIT
            else as_text[:_MESSAGE_VALUE_LIMIT] + "..."
        )
        raise record_error(
            "STRING_TOO_LONG",
            f"{spec.label}: data value too large: {shown} (max length={spec.length})",
            [spec.name],
        )
    return as_text


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _id_value(spec: FieldSpec, text: str) -> str:
    normalised = ids.normalise_id(text)
    if normalised is None:
        raise record_error(
            "MALFORMED_ID", f"{spec.label}: id value of incorrect type: {text}", [spec.name]
        )
    return normalised


def _jackson_type(spec: FieldSpec) -> str:
    return {"date": "date", "datetime": "datetime", "boolean": "boolean"}.get(
        spec.soql_kind, "String"
    )


def _required(spec: FieldSpec) -> None:
    if not spec.nillable:
        raise record_error(
            "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{spec.name}]", [spec.name]
        )
