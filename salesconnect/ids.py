"""Ids the service hands out: a type prefix and a time-ordered random part (ULID-like).

The time-ordered part makes "order by id" roughly "order by creation", so paging a user's
tasks by id reads naturally; the random part keeps ids unguessable enough to be used in URLs.
Every id matches `schemas.fields.SALESCONNECT_ID_PATTERN`.
"""

from __future__ import annotations

import secrets
import time
from typing import Final

_CROCKFORD: Final = "0123456789abcdefghjkmnpqrstvwxyz"
USER_PREFIX: Final = "usr_"
TASK_PREFIX: Final = "tsk_"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append(_CROCKFORD[index])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`prefix` + 10 characters of milliseconds since the epoch + 16 random characters."""
    return prefix + _encode(time.time_ns() // 1_000_000, 10) + _encode(secrets.randbits(80), 16)


def new_user_id() -> str:
    return new_id(USER_PREFIX)


def new_task_id() -> str:
    return new_id(TASK_PREFIX)
