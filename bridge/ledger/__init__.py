"""The dedup ledger: processed message ids, task leases, id links, per-field source stamps,
echo fingerprints, producer cursors and the operators' drop log (see `bridge.ledger.store`)."""

from bridge.ledger.records import (
    ORIGIN_RANK,
    BatchClaim,
    DroppedMessage,
    FieldClaim,
    KnownRecord,
    LinkConflictError,
    ProcessedMessage,
    ProducerCursor,
    SourceStamp,
    TaskLink,
)
from bridge.ledger.store import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_PROCESSED_RETENTION,
    Ledger,
    default_ledger_url,
    normalize_url,
    value_fingerprint,
)

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_PROCESSED_RETENTION",
    "ORIGIN_RANK",
    "BatchClaim",
    "DroppedMessage",
    "FieldClaim",
    "KnownRecord",
    "Ledger",
    "LinkConflictError",
    "ProcessedMessage",
    "ProducerCursor",
    "SourceStamp",
    "TaskLink",
    "default_ledger_url",
    "normalize_url",
    "value_fingerprint",
]
