"""The exported JSON Schema files agree with the marshmallow definitions and with the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given

from schemas.jsonschema import EXPORTS, JSON_DIR, export_all
from schemas.notification import (
    SIGNATURE_TEST_VECTOR,
    NotificationBatch,
    dump_notification_batch,
    load_notification_batch,
)
from schemas.task_change import TaskChange, dump_task_change
from tests.schemas.test_task_change import valid_message
from tests.strategies import task_changes


def schema_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((JSON_DIR / name).read_text())
    return loaded


def test_committed_files_match_the_marshmallow_schemas() -> None:
    stale = export_all(check=True)
    assert stale == [], f"run `tasksync schema export`: {stale}"


def test_drift_is_detected(tmp_path: Path) -> None:
    export_all(tmp_path)
    target = tmp_path / EXPORTS[0].file_name
    target.write_text(target.read_text().replace('"maxLength": 1000', '"maxLength": 999'))
    assert export_all(tmp_path, check=True) == [target]
    assert export_all(tmp_path) == [target]
    assert export_all(tmp_path, check=True) == []


@pytest.mark.parametrize("export", EXPORTS, ids=lambda e: e.file_name)
def test_files_are_valid_json_schema(export: Any) -> None:
    document = schema_file(export.file_name)
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["additionalProperties"] is False


@given(task_changes())
def test_every_valid_message_validates_against_the_file(change: TaskChange) -> None:
    validator = jsonschema.Draft202012Validator(schema_file("task-change.v1.json"))
    validator.validate(dump_task_change(change))


@pytest.mark.parametrize(
    "overrides",
    [
        {"origin": "hubspot"},
        {"extra": 1},
        {"op": "delete"},
        {"changed": {"due_date": "20261122"}},
        {"record": {}},
        {"record": {"salesconnect_task_id": "t-1"}},
        {"schema_version": 2},
        {"trace_id": "ABC"},
    ],
)
def test_the_file_rejects_what_marshmallow_rejects(overrides: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema_file("task-change.v1.json"))
    assert list(validator.iter_errors(valid_message(**overrides)))


def test_notification_batch_round_trips_and_validates() -> None:
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
                "changed_fields": ["Status", "ActivityDate"],
            }
        ],
    }
    batch = load_notification_batch(json.dumps(body))
    assert isinstance(batch, NotificationBatch)
    assert batch.notifications[0].changed_fields == ("Status", "ActivityDate")
    assert dump_notification_batch(batch) == body
    jsonschema.Draft202012Validator(schema_file("task-notification.v1.json")).validate(body)


def test_signature_test_vector_is_pinned() -> None:
    from schemas.notification import sign_notification

    vector = SIGNATURE_TEST_VECTOR
    assert (
        sign_notification(
            str(vector["secret"]), int(str(vector["timestamp"])), str(vector["body"]).encode()
        )
        == vector["signature"]
    )
