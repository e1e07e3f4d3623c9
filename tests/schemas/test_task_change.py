"""The TaskChange contract: exact round trips, and every bad input named by field and rule."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given

from schemas.errors import ContractError
from schemas.task_change import (
    UNSET,
    ChangedFields,
    Op,
    Origin,
    TaskChange,
    TaskPriority,
    TaskStatus,
    dump_task_change,
    load_task_change,
    task_change_json,
)
from tests.strategies import task_changes


def valid_message(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "schema_version": 1,
        "message_id": "6f1c2a7e-3d0b-4b8e-9a51-2f0d7c9e8b11",
        "origin": "salesforce",
        "op": "upsert",
        "occurred_at": "2026-11-22T10:15:30.123Z",
        "actor": "005000000000001AAA",
        "owner": {"salesconnect_user_id": "u-42", "salesforce_user_id": "005000000000002AAA"},
        "record": {"salesforce_task_id": "00T000000000001AAA"},
        "changed": {"status": "completed", "due_date": "2026-11-23"},
        "source_values": {"Status": "Completed", "IsClosed": True, "Priority": "Low"},
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
    }
    message.update(overrides)
    return message


def rejected(raw: Any) -> dict[str, list[str]]:
    with pytest.raises(ContractError) as caught:
        load_task_change(raw)
    return caught.value.fields


@given(task_changes())
def test_dump_then_load_gives_the_same_record(change: TaskChange) -> None:
    assert load_task_change(task_change_json(change)) == change


def test_loads_into_typed_frozen_records() -> None:
    change = load_task_change(json.dumps(valid_message()))
    assert change.origin is Origin.SALESFORCE
    assert change.op is Op.UPSERT
    assert change.message_id == uuid.UUID("6f1c2a7e-3d0b-4b8e-9a51-2f0d7c9e8b11")
    assert change.occurred_at == datetime(2026, 11, 22, 10, 15, 30, 123000, tzinfo=UTC)
    assert change.changed.status is TaskStatus.COMPLETED
    assert change.changed.due_date == date(2026, 11, 23)
    assert change.changed.name is UNSET
    assert change.source_values["Priority"] == "Low"
    with pytest.raises(AttributeError):
        change.actor = "someone else"  # type: ignore[misc]


def test_dump_writes_only_changed_fields_and_known_ids() -> None:
    dumped = dump_task_change(load_task_change(valid_message()))
    assert dumped["changed"] == {"status": "completed", "due_date": "2026-11-23"}
    assert dumped["record"] == {"salesforce_task_id": "00T000000000001AAA"}
    assert dumped["occurred_at"] == "2026-11-22T10:15:30.123Z"


def test_a_cleared_due_date_is_a_change_to_null_not_an_absent_field() -> None:
    change = load_task_change(valid_message(changed={"due_date": None}))
    assert change.changed == ChangedFields(due_date=None)
    assert dump_task_change(change)["changed"] == {"due_date": None}


def test_salesforce_stamp_format_is_read_as_utc() -> None:
    change = load_task_change(valid_message(occurred_at="2026-11-22T12:15:30.123+0200"))
    assert change.occurred_at == datetime(2026, 11, 22, 10, 15, 30, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("path", "value", "field", "rule"),
    [
        ((), {"colour": "red"}, "colour", "Unknown field"),
        (("changed",), {"subject": "x"}, "changed.subject", "Unknown field"),
        (("owner",), {"email": "a@b.c"}, "owner.email", "Unknown field"),
        ((), {"schema_version": "1"}, "schema_version", "integer"),
        ((), {"actor": 5}, "actor", "string"),
        ((), {"message_id": "not-a-uuid"}, "message_id", "UUID"),
        ((), {"origin": "hubspot"}, "origin", "salesforce, salesconnect"),
        ((), {"op": "merge"}, "op", "upsert, delete, undelete"),
        (("changed",), {"status": "In Progress"}, "changed.status", "open, completed"),
        (("changed",), {"priority": "low"}, "changed.priority", "normal, high"),
        (("changed",), {"due_date": "2026-02-30"}, "changed.due_date", "YYYY-MM-DD"),
        (("changed",), {"due_date": "20261122"}, "changed.due_date", "YYYY-MM-DD"),
        (("changed",), {"due_date": "2026-W47-7"}, "changed.due_date", "YYYY-MM-DD"),
        (("changed",), {"due_date": "2026-11-22T00:00:00Z"}, "changed.due_date", "YYYY-MM-DD"),
        (("changed",), {"name": ""}, "changed.name", "Length"),
        ((), {"occurred_at": "2026-11-22T10:15:30"}, "occurred_at", "offset"),
        ((), {"occurred_at": "2026-11-22T10:15:30.123456Z"}, "occurred_at", "millisecond"),
        ((), {"occurred_at": "2026-13-22T10:15:30Z"}, "occurred_at", "ISO 8601"),
        ((), {"trace_id": "XYZ"}, "trace_id", "32 lowercase hex"),
        ((), {"trace_id": "0af7651916cd43dd8448eb211c80319c\n"}, "trace_id", "32 lowercase hex"),
        (
            ("record",),
            {"salesforce_task_id": "00T000000000001AAA\n"},
            "record.salesforce_task_id",
            "18-character",
        ),
        (
            ("owner",),
            {"salesconnect_user_id": "u-42\n"},
            "owner.salesconnect_user_id",
            "Sales Connect id",
        ),
        (("changed",), {"due_date": "2026-11-23\n"}, "changed.due_date", "YYYY-MM-DD"),
        ((), {"occurred_at": "2026-11-22T10:15:30.123Z\n"}, "occurred_at", "ISO 8601"),
        (
            ("owner",),
            {"salesforce_user_id": "005000000000002"},
            "owner.salesforce_user_id",
            "18-character",
        ),
        (
            (),
            {"source_values": {"Status": {"nested": 1}}},
            "source_values.Status.value",
            "string, number, boolean or null",
        ),
    ],
)
def test_bad_values_are_named_with_their_rule(
    path: tuple[str, ...], value: dict[str, Any], field: str, rule: str
) -> None:
    message = valid_message()
    target = message
    for key in path:
        target = target[key]
    target.update(value)
    errors = rejected(message)
    assert field in errors, errors
    assert any(rule.lower() in text.lower() for text in errors[field]), errors[field]


def test_every_bad_field_is_reported_at_once() -> None:
    message = valid_message(origin="nowhere", actor="", changed={"status": "done"}, extra=1)
    errors = rejected(message)
    assert {"origin", "actor", "changed.status", "extra"} <= set(errors)


@pytest.mark.parametrize("missing", ["message_id", "occurred_at", "owner", "trace_id", "changed"])
def test_required_fields_are_named(missing: str) -> None:
    message = valid_message()
    del message[missing]
    assert "required" in " ".join(rejected(message)[missing]).lower()


def test_delete_carries_no_field_changes() -> None:
    errors = rejected(valid_message(op="delete"))
    assert errors["changed"] == ["Must be empty when op is delete."]


def test_the_origin_side_ids_are_required() -> None:
    message = valid_message(record={"salesconnect_task_id": "t-1"})
    assert "salesforce_task_id" in rejected(message)["record"][0]
    message = valid_message(
        origin="salesconnect",
        owner={"salesforce_user_id": "005000000000002AAA"},
        record={"salesconnect_task_id": "t-1"},
    )
    assert "salesconnect_user_id" in rejected(message)["owner"][0]


def test_owner_and_record_must_name_an_id() -> None:
    errors = rejected(valid_message(owner={}, record={}))
    assert "owner" in errors
    assert "record" in errors


def test_unknown_schema_version_is_named_as_such() -> None:
    errors = rejected(valid_message(schema_version=2))
    assert "Unsupported schema version 2" in errors["schema_version"][0]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_bodies_that_are_not_json_objects(body: bytes) -> None:
    assert "_body" in rejected(body)


def test_error_text_reads_as_one_line_per_field() -> None:
    with pytest.raises(ContractError) as caught:
        load_task_change(valid_message(origin="x", changed={"priority": "Low"}))
    text = str(caught.value)
    assert "origin: Must be one of: salesforce, salesconnect." in text
    assert "changed.priority:" in text
    assert "\n" not in text


def test_loading_does_not_modify_the_input() -> None:
    message = valid_message()
    before = copy.deepcopy(message)
    load_task_change(message)
    assert message == before


def test_records_compare_by_value() -> None:
    first = load_task_change(valid_message())
    second = load_task_change(valid_message())
    assert first == second
    assert first.changed == ChangedFields(status=TaskStatus.COMPLETED, due_date=date(2026, 11, 23))
    assert first.changed != ChangedFields(priority=TaskPriority.HIGH)
