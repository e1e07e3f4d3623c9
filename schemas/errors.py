"""The one error a contract raises: every bad field by dotted path, each with its rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError

_WHOLE = "_schema"


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested error tree to `{"changed.status": ["Must be one of: ..."]}`.

    Errors on a whole object (marshmallow's `_schema` key) are filed under the object's path.
    """
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            key_text = str(key)
            path = (
                prefix if key_text == _WHOLE else (f"{prefix}.{key_text}" if prefix else key_text)
            )
            for sub_path, rules in flatten_messages(value, path).items():
                flat.setdefault(sub_path, []).extend(rules)
    elif isinstance(messages, list | tuple):
        for item in messages:
            for sub_path, rules in flatten_messages(item, prefix).items():
                flat.setdefault(sub_path, []).extend(rules)
    else:
        flat.setdefault(prefix or "_body", []).append(str(messages))
    return flat


class ContractError(ValueError):
    """A message that breaks its contract. `fields` maps each dotted field path to its rules."""

    def __init__(self, fields: Mapping[str, list[str]]) -> None:
        self.fields: dict[str, list[str]] = {key: list(rules) for key, rules in fields.items()}
        super().__init__(self.describe())

    @classmethod
    def from_marshmallow(cls, error: ValidationError) -> ContractError:
        return cls(flatten_messages(error.messages))

    def describe(self) -> str:
        """One line an operator can read in a parked message's header."""
        return "; ".join(
            f"{path}: {' '.join(rules)}" for path, rules in sorted(self.fields.items())
        )
