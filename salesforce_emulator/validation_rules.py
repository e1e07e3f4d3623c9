"""Validation rules an admin adds to the org, and the check every Task save runs them through.

A rule names a Task field and a condition its value must not meet: `matches` (a regular
expression searched in the text of the value) or `equals` (a JSON value, `null` for "is
blank"). Like a Salesforce validation rule it runs on every create and update against the
record as it would be saved, not only when the request touched the field, and a violation
answers 400 `FIELD_CUSTOM_VALIDATION_EXCEPTION` with the rule's message, shown at the field or,
with `"at_top": true`, at the top of the page (no fields).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from salesforce_emulator.errors import AdminError, ApiError, record_error
from salesforce_emulator.sobjects import TASK, FieldSpec

_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_KEYS: Final = frozenset({"name", "field", "matches", "equals", "message", "at_top", "active"})
_UNSET: Final = object()


@dataclass(frozen=True)
class ValidationRule:
    name: str
    field: FieldSpec
    message: str
    pattern: re.Pattern[str] | None
    equals: Any
    at_top: bool
    active: bool

    def violated_by(self, record: Mapping[str, Any]) -> bool:
        if not self.active:
            return False
        value = self.field.to_json(record.get(self.field.name))
        if self.pattern is not None:
            return value is not None and self.pattern.search(_text(value)) is not None
        return bool(value == self.equals)

    def error(self) -> ApiError:
        fields = [] if self.at_top else [self.field.name]
        return record_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", self.message, fields)

    def to_json(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"name": self.name, "field": self.field.name}
        if self.pattern is not None:
            rule["matches"] = self.pattern.pattern
        else:
            rule["equals"] = self.equals
        rule.update({"message": self.message, "at_top": self.at_top, "active": self.active})
        return rule


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_rules(raw: Any) -> tuple[ValidationRule, ...]:
    """Rules from the admin API's JSON (a list, or `{"rules": [...]}`); AdminError if malformed."""
    if isinstance(raw, Mapping) and set(raw) == {"rules"}:
        raw = raw["rules"]
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise AdminError(400, 'body: must be a JSON list of rules (or {"rules": [...]})')
    rules = [_load_rule(index, item) for index, item in enumerate(raw)]
    names = [rule.name.lower() for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise AdminError(400, f"rules[].name: must be unique, repeated: {', '.join(duplicates)}")
    return tuple(rules)


def _load_rule(index: int, item: Any) -> ValidationRule:
    where = f"rules[{index}]"
    if not isinstance(item, Mapping):
        raise AdminError(400, f"{where}: must be a JSON object")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise AdminError(400, f"{where}: unknown keys {unknown}; allowed are {sorted(_KEYS)}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise AdminError(
            400, f"{where}.name: must be 1-40 letters, digits or '_' starting with a letter"
        )
    field_name = item.get("field")
    spec = TASK.get_field(field_name) if isinstance(field_name, str) else None
    if spec is None:
        raise AdminError(400, f"{where}.field: must name a Task field, e.g. Subject")
    message = item.get("message")
    if not isinstance(message, str) or not message.strip() or len(message) > 255:
        raise AdminError(
            400, f"{where}.message: must be a non-blank text of at most 255 characters"
        )
    has_matches, has_equals = "matches" in item, "equals" in item
    if has_matches == has_equals:
        raise AdminError(400, f"{where}: give exactly one condition, 'matches' or 'equals'")
    pattern = None
    equals: Any = None
    if has_matches:
        if not isinstance(item["matches"], str):
            raise AdminError(400, f"{where}.matches: must be a regular expression string")
        try:
            pattern = re.compile(item["matches"])
        except re.error as exc:
            raise AdminError(
                400, f"{where}.matches: not a valid regular expression: {exc}"
            ) from None
    else:
        equals = item["equals"]
        if isinstance(equals, Mapping | list):
            raise AdminError(400, f"{where}.equals: must be a string, number, boolean or null")
    at_top = item.get("at_top", False)
    active = item.get("active", True)
    if not isinstance(at_top, bool) or not isinstance(active, bool):
        raise AdminError(400, f"{where}.at_top and .active: must be true or false")
    return ValidationRule(name, spec, message, pattern, equals, at_top, active)


def first_violation(
    rules: Sequence[ValidationRule], record: Mapping[str, Any]
) -> ValidationRule | None:
    for rule in rules:
        if rule.violated_by(record):
            return rule
    return None
