"""Salesforce record ids: 15-character case-sensitive ids and their 18-character case-safe form.

An id is a 3-character key prefix (`00T` Task, `005` User, `00D` org), a 2-character pod, a
reserved `0` and a 9-character base-62 serial; the 18-character form appends a checksum of three
letters, each encoding which of five characters are upper case, so the id survives
case-insensitive systems.
"""

from __future__ import annotations

import re
from typing import Final

TASK_PREFIX: Final = "00T"
USER_PREFIX: Final = "005"
ORG_PREFIX: Final = "00D"
TASK_STATUS_PREFIX: Final = "01J"
QUERY_LOCATOR_PREFIX: Final = "01g"
POD: Final = "5E"

BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECKSUM_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID15_PATTERN: Final = re.compile(r"^[a-zA-Z0-9]{15}$")
_ID18_PATTERN: Final = re.compile(r"^[a-zA-Z0-9]{15}[a-zA-Z0-5]{3}$")
SERIAL_DIGITS: Final = 9


def checksum(id15: str) -> str:
    suffix = ""
    for chunk_start in range(0, 15, 5):
        bits = 0
        for position, char in enumerate(id15[chunk_start : chunk_start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _CHECKSUM_ALPHABET[bits]
    return suffix


def to_18(id15: str) -> str:
    return id15 + checksum(id15)


def make_id(prefix: str, serial: int) -> str:
    """The 18-character id for the `serial`-th record with key prefix `prefix`."""
    if serial < 0 or serial >= 62**SERIAL_DIGITS:
        raise ValueError(f"serial {serial} does not fit in an id")
    digits = ""
    for _ in range(SERIAL_DIGITS):
        serial, digit = divmod(serial, 62)
        digits = BASE62[digit] + digits
    return to_18(f"{prefix}{POD}0{digits}")


def normalise_id(text: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None when `text` is not an id.

    An 18-character id is read case-insensitively, as Salesforce reads it: its checksum says
    which characters are upper case.
    """
    if len(text) == 15:
        return to_18(text) if _ID15_PATTERN.match(text) else None
    if len(text) != 18 or not _ID18_PATTERN.match(text):
        return None
    restored = ""
    for chunk, code in enumerate(text[15:].upper()):
        bits = _CHECKSUM_ALPHABET.index(code)
        for position, char in enumerate(text[chunk * 5 : chunk * 5 + 5]):
            upper = bool(bits & (1 << position))
            if upper and not char.isalpha():
                return None
            restored += char.upper() if upper else char.lower() if char.isalpha() else char
    return to_18(restored)


def key_prefix(record_id: str) -> str:
    return record_id[:3]
