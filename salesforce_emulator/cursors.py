"""Open query cursors: the rest of a query's result, served page by page via nextRecordsUrl.

Like Salesforce's query locators they live on the server, expire when left unused for 15
minutes, are limited in number (the least recently used is closed first) and do not survive a
restart; a stale or unknown locator answers 400 `INVALID_QUERY_LOCATOR`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from salesforce_emulator import ids
from salesforce_emulator.errors import ApiError

IDLE_SECONDS: Final = 15 * 60
MAX_OPEN: Final = 100
_ALPHABET: Final = ids.BASE62


@dataclass
class Cursor:
    records: list[dict[str, Any]]
    batch_size: int
    endpoint: str
    used_at: float = field(default_factory=time.monotonic)


class QueryCursors:
    def __init__(self) -> None:
        self._open: OrderedDict[str, Cursor] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, records: list[dict[str, Any]], batch_size: int, endpoint: str) -> str:
        locator = ids.to_18(
            ids.QUERY_LOCATOR_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(12))
        )
        with self._lock:
            self._expire()
            self._open[locator] = Cursor(records, batch_size, endpoint)
            while len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
        return locator

    def page(
        self, locator_and_offset: str, endpoint: str
    ) -> tuple[list[dict[str, Any]], int, int, str | None]:
        """(records of this page, total size, batch size, next `locator-offset` or None)."""
        locator, _, offset_text = locator_and_offset.partition("-")
        with self._lock:
            self._expire()
            cursor = self._open.get(locator)
            if cursor is None or cursor.endpoint != endpoint or not offset_text.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            cursor.used_at = time.monotonic()
            self._open.move_to_end(locator)
        offset = int(offset_text)
        end = offset + cursor.batch_size
        page = cursor.records[offset:end]
        following = f"{locator}-{end}" if end < len(cursor.records) else None
        return page, len(cursor.records), cursor.batch_size, following

    def clear(self) -> None:
        with self._lock:
            self._open.clear()

    def _expire(self) -> None:
        oldest_allowed = time.monotonic() - IDLE_SECONDS
        for locator in [k for k, c in self._open.items() if c.used_at < oldest_allowed]:
            del self._open[locator]
