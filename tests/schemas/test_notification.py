"""Notification signatures: what the ingress accepts and what it refuses."""

from __future__ import annotations

import pytest

from schemas.errors import ContractError
from schemas.notification import (
    SignatureError,
    load_notification_batch,
    sign_notification,
    verify_notification,
)

SECRET = "s3cret-for-tests"
BODY = b'{"schema_version":1}'
NOW = 1_800_000_000


def test_a_fresh_correct_signature_is_accepted() -> None:
    signature = sign_notification(SECRET, NOW, BODY)
    assert verify_notification(SECRET, str(NOW), signature, BODY, now=NOW + 10) == NOW


def test_the_previous_secret_still_verifies_during_rotation() -> None:
    signature = sign_notification("old", NOW, BODY)
    assert verify_notification(("new", "old"), str(NOW), signature, BODY, now=NOW) == NOW


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "now", "reason"),
    [
        (str(NOW), None, BODY, NOW, "missing"),
        (None, "v1=00", BODY, NOW, "missing"),
        ("12ab", "v1=00", BODY, NOW, "unix seconds"),
        (str(NOW), sign_notification(SECRET, NOW, BODY), BODY + b" ", NOW, "does not match"),
        (str(NOW), sign_notification("other", NOW, BODY), BODY, NOW, "does not match"),
        (str(NOW), sign_notification(SECRET, NOW, BODY), BODY, NOW + 301, "window"),
        (str(NOW), sign_notification(SECRET, NOW, BODY), BODY, NOW - 301, "window"),
        (str(NOW + 1), sign_notification(SECRET, NOW, BODY), BODY, NOW, "does not match"),
    ],
)
def test_bad_or_replayed_notifications_are_refused(
    timestamp: str | None, signature: str | None, body: bytes, now: int, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_notification(SECRET, timestamp, signature, body, now=now)


def test_a_batch_over_200_is_refused() -> None:
    one = {
        "task_id": "00T000000000001AAA",
        "op": "insert",
        "owner_id": "005000000000002AAA",
        "actor_id": "005000000000002AAA",
        "system_modstamp": "2026-11-22T10:15:29.512Z",
        "changed_fields": ["Subject"],
    }
    body = {
        "schema_version": 1,
        "org_id": "00D000000000001AAA",
        "sent_at": "2026-11-22T10:15:30.000Z",
        "notifications": [one] * 201,
    }
    with pytest.raises(ContractError) as caught:
        load_notification_batch(body)
    assert "notifications" in caught.value.fields


def test_an_unmapped_field_name_is_refused() -> None:
    body = {
        "schema_version": 1,
        "org_id": "00D000000000001AAA",
        "sent_at": "2026-11-22T10:15:30.000Z",
        "notifications": [
            {
                "task_id": "00T000000000001AAA",
                "op": "update",
                "owner_id": "005000000000002AAA",
                "actor_id": "005000000000002AAA",
                "system_modstamp": "2026-11-22T10:15:29.512Z",
                "changed_fields": ["OwnerId"],
            }
        ],
    }
    with pytest.raises(ContractError) as caught:
        load_notification_batch(body)
    assert "notifications.0.changed_fields.0" in caught.value.fields
