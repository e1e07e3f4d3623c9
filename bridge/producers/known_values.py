"""What producers read and record about records, a page at a time, through the ledger's batched
methods (`Ledger.fingerprints`, `links_for_*_many`, `record_known`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from bridge.ledger import KnownRecord, Ledger, TaskLink, value_fingerprint
from bridge.sync.conventions import DELETED_FIELD
from schemas.task_change import Origin

__all__ = ["DELETED_FIELD", "DELETED_HASH", "IN_LIST_CHUNK", "KnownValues", "Observed"]

IN_LIST_CHUNK: Final = 500
DELETED_HASH: Final = value_fingerprint(True)

# What a producer saw of one record and published (or found unchanged): recorded as known only
# after RabbitMQ confirmed the messages.
Observed = KnownRecord


class KnownValues:
    """The ledger's links, fingerprints and versions, a page at a time."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def fingerprints(self, system: Origin, record_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        return self.ledger.fingerprints(system, record_ids)

    def links_for_salesforce(self, task_ids: Iterable[str]) -> dict[str, TaskLink]:
        return self.ledger.links_for_salesforce_many(task_ids)

    def links_for_salesconnect(self, task_ids: Iterable[str]) -> dict[str, TaskLink]:
        return self.ledger.links_for_salesconnect_many(task_ids)

    def record(self, observed: Sequence[KnownRecord], *, now: datetime | None = None) -> None:
        self.ledger.record_known(observed, now=now)
