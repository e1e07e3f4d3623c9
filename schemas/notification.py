"""The Salesforce-side package's notification to the bridge's ingress, and how it is signed.

The Apex package, the emulator's stand-in for it and the ingress all follow this module: the
JSON body below, POSTed with two headers,

    X-Tasksync-Timestamp: <unix seconds>
    X-Tasksync-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

which Apex computes as
`EncodingUtil.convertToHex(Crypto.generateMac('hmacSHA256', Blob.valueOf(ts + '.' + body),
Blob.valueOf(secret)))`.

Test vector (also asserted by the tests and the Apex test class): secret `tasksync-test-secret`,
timestamp `1767225600`, body `{"schema_version":1}` gives
`v1=db9fc4563a4a4db9664066bb003342bb4a012f64cd6ffe6d7ffe4638d68464e1` (`SIGNATURE_TEST_VECTOR`).

A notification says only *which* Tasks changed and how; the ingress reads their current values
itself, so a stale or forged body can never carry field values into Sales Connect.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from schemas.errors import ContractError
from schemas.fields import UtcStamp, salesforce_id

NOTIFICATION_SCHEMA_VERSION: Final = 1
MAX_NOTIFICATIONS_PER_BATCH: Final = 200
TIMESTAMP_HEADER: Final = "X-Tasksync-Timestamp"
SIGNATURE_HEADER: Final = "X-Tasksync-Signature"
SIGNATURE_SCHEME: Final = "v1"
DEFAULT_TIMESTAMP_WINDOW_SECONDS: Final = 300
MAPPED_TASK_FIELDS: Final = ("Subject", "Status", "Priority", "ActivityDate", "Description")
SIGNATURE_TEST_VECTOR: Final = {
    "secret": "tasksync-test-secret",
    "timestamp": 1767225600,
    "body": '{"schema_version":1}',
    "signature": "v1=db9fc4563a4a4db9664066bb003342bb4a012f64cd6ffe6d7ffe4638d68464e1",
}


class TriggerOp(enum.StrEnum):
    """The trigger context that saw the change."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    UNDELETE = "undelete"


@dataclass(frozen=True)
class TaskNotification:
    task_id: str
    op: TriggerOp
    owner_id: str
    actor_id: str
    system_modstamp: datetime
    changed_fields: tuple[str, ...]


@dataclass(frozen=True)
class NotificationBatch:
    org_id: str
    sent_at: datetime
    notifications: tuple[TaskNotification, ...]
    schema_version: int = NOTIFICATION_SCHEMA_VERSION


class _Strict(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


class TaskNotificationSchema(_Strict):
    class Meta(_Strict.Meta):
        description = "One Task change seen by the trigger."

    task_id = salesforce_id(required=True)
    op = fields.Enum(TriggerOp, by_value=True, required=True)
    owner_id = salesforce_id(required=True)
    actor_id = salesforce_id("LastModifiedById of the change", required=True)
    system_modstamp = UtcStamp(required=True)
    changed_fields = fields.List(
        fields.String(validate=validate.OneOf(MAPPED_TASK_FIELDS)),
        required=True,
        validate=validate.Length(max=len(MAPPED_TASK_FIELDS)),
        metadata={
            "description": (
                "Mapped Task fields whose value changed: all of them on insert and undelete, "
                "none on delete"
            )
        },
    )

    @post_load
    def _record(self, data: dict[str, Any], **_: Any) -> TaskNotification:
        data["changed_fields"] = tuple(data["changed_fields"])
        return TaskNotification(**data)


class NotificationBatchSchema(_Strict):
    class Meta(_Strict.Meta):
        title = "TaskNotificationBatch"
        description = (
            "Body the Salesforce-side package POSTs to the tasksync ingress, signed with "
            "X-Tasksync-Timestamp and X-Tasksync-Signature."
        )

    schema_version = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Equal(NOTIFICATION_SCHEMA_VERSION, error="Must be {other}."),
    )
    org_id = salesforce_id(required=True)
    sent_at = UtcStamp(required=True)
    notifications = fields.List(
        fields.Nested(TaskNotificationSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_NOTIFICATIONS_PER_BATCH),
    )

    @post_load
    def _record(self, data: dict[str, Any], **_: Any) -> NotificationBatch:
        data["notifications"] = tuple(data["notifications"])
        return NotificationBatch(**data)


_SCHEMA: Final = NotificationBatchSchema()


def load_notification_batch(raw: bytes | str | Mapping[str, Any]) -> NotificationBatch:
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractError({"_body": [f"Not valid UTF-8 JSON: {exc}."]}) from None
    if not isinstance(raw, Mapping):
        raise ContractError({"_body": ["Must be a JSON object."]})
    try:
        batch: NotificationBatch = _SCHEMA.load(raw)
    except ValidationError as exc:
        raise ContractError.from_marshmallow(exc) from None
    return batch


def dump_notification_batch(batch: NotificationBatch) -> dict[str, Any]:
    dumped: dict[str, Any] = _SCHEMA.dump(batch)
    return dumped


class SignatureError(ValueError):
    """A notification whose signature or timestamp does not check out (answer 401)."""


def sign_notification(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Tasksync-Signature` value for a body sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def verify_notification(
    secrets: tuple[str, ...] | str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float,
    window_seconds: int = DEFAULT_TIMESTAMP_WINDOW_SECONDS,
) -> int:
    """Check a received notification; returns its timestamp, or raises `SignatureError`.

    Several secrets are accepted so the signing secret can be rotated without a gap: the bridge
    trusts old and new until the org has switched.
    """
    if not timestamp_header or not signature_header:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not timestamp_header.isdigit() or len(timestamp_header) > 12:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds")
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > window_seconds:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is outside the {window_seconds}-second window "
            "(a replay, or clock skew)"
        )
    candidates = (secrets,) if isinstance(secrets, str) else secrets
    for secret in candidates:
        if hmac.compare_digest(sign_notification(secret, timestamp, body), signature_header):
            return timestamp
    raise SignatureError("signature does not match the body")
