"""A corpus of malformed messages for the work queues, as data: each is published raw with pika
(see test_malformed_corpus.py) and must be parked by the consumer with a reason that names the
field and the rule (`expect`: text the reason must contain), never handed to a handler.

Each case starts from a well-formed change of its direction (a Sales Connect change for
`to-salesforce`, a Salesforce change for `to-salesconnect`) and breaks one thing: the bytes,
the JSON, the shape, a type, an enum, a date, an id, a required field, the schema version, the
AMQP properties (content type, encoding, message id, tasksync headers), the size, or the queue
it is sent to.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bridge.messaging import Direction
from schemas.task_change import (
    ACTOR_MAX_LENGTH,
    DETAILS_MAX_LENGTH,
    NAME_MAX_LENGTH,
    SOURCE_VALUES_MAX_ITEMS,
)

CASE_ID_PREFIX: Final = "corpus-"
SF_USER: Final = "005000000000001AAA"
SF_TASK: Final = "00T000000000001AAA"
TO_SF: Final = Direction.TO_SALESFORCE
TO_SC: Final = Direction.TO_SALESCONNECT
OVERSIZED_BYTES: Final = 5 * 1024 * 1024


@dataclass(frozen=True)
class Malformed:
    """One malformed message and what its parked reason must say."""

    name: str
    body: bytes
    expect: tuple[str, ...]
    direction: Direction = TO_SF
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"
    headers: Mapping[str, Any] = field(default_factory=dict)
    # "exchange": onto the direction's source exchange, as a producer publishes (with the
    # shard header); "queue": straight onto a shard queue through the default exchange.
    route: str = "exchange"
    drops_headers: bool = False  # too large to carry onward: parked with ours only

    @property
    def message_id(self) -> str:
        return CASE_ID_PREFIX + self.name


def sc_change() -> dict[str, Any]:
    """A well-formed Sales Connect change (travels to-salesforce)."""
    return {
        "schema_version": 1,
        "message_id": str(uuid.uuid4()),
        "origin": "salesconnect",
        "op": "upsert",
        "occurred_at": "2026-11-22T10:00:00.000Z",
        "actor": "user-1",
        "owner": {"salesconnect_user_id": "user-1"},
        "record": {"salesconnect_task_id": "task-1"},
        "changed": {"name": "Call back", "status": "open", "due_date": "2026-11-30"},
        "source_values": {"name": "Call back"},
        "trace_id": uuid.uuid4().hex,
    }


def sf_change() -> dict[str, Any]:
    """A well-formed Salesforce change (travels to-salesconnect)."""
    return {
        **sc_change(),
        "origin": "salesforce",
        "actor": SF_USER,
        "owner": {"salesforce_user_id": SF_USER},
        "record": {"salesforce_task_id": SF_TASK},
        "source_values": {"Subject": "Call back", "Status": "Not Started"},
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def good(direction: Direction = TO_SF) -> bytes:
    return dumps(sc_change() if direction is TO_SF else sf_change())


def changed(
    name: str,
    edit: Callable[[dict[str, Any]], None],
    *expect: str,
    direction: Direction = TO_SF,
    **options: Any,
) -> Malformed:
    """A well-formed change of `direction`, edited in place by `edit`."""
    message = copy.deepcopy(sc_change() if direction is TO_SF else sf_change())
    edit(message)
    return Malformed(name, dumps(message), expect, direction=direction, **options)


def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or with `...` as value, remove) the dotted `path`."""
    *parents, last = path.split(".")

    def edit(message: dict[str, Any]) -> None:
        target = message
        for part in parents:
            target = target[part]
        if value is ...:
            del target[last]
        else:
            target[last] = value

    return edit


def wrong(name: str, path: str, value: Any, *expect: str, **options: Any) -> Malformed:
    return changed(name, setter(path, value), *expect, **options)


def missing(path: str, *expect: str, **options: Any) -> Malformed:
    rule = expect or (f"{path}: Missing data for required field",)
    return changed(f"missing-{path}", setter(path, ...), *rule, **options)


JSON_BODY: Final = "_body: Not valid"


def bad_json() -> list[Malformed]:
    text = good().decode()
    return [
        Malformed("not-json", b"{not json", (JSON_BODY, "JSON")),
        Malformed("empty-body", b"", (JSON_BODY, "JSON")),
        Malformed("truncated", good()[:40], (JSON_BODY, "JSON")),
        Malformed("trailing-comma", (text[:-1] + ",}").encode(), (JSON_BODY, "JSON")),
        Malformed("single-quotes", text.replace('"', "'").encode(), (JSON_BODY, "JSON")),
        Malformed("trailing-garbage", good() + b" x", (JSON_BODY, "Extra data")),
        Malformed("two-objects", good() + good(), (JSON_BODY, "Extra data")),
        Malformed("invalid-utf8", good().replace(b"Call back", b"Call \xff back"), ("UTF-8",)),
        Malformed("utf16", text.encode("utf-16"), (JSON_BODY, "UTF-8")),
        Malformed("utf8-bom", b"\xef\xbb\xbf" + good(), (JSON_BODY, "BOM")),
        Malformed(
            "nan", good().replace(b'"source_values":{', b'"source_values":{"x":NaN,'), ("NaN",)
        ),
        Malformed(
            "infinity",
            good().replace(b'"source_values":{', b'"source_values":{"x":-Infinity,'),
            ("Infinity",),
        ),
        Malformed(
            "duplicate-key",
            good().replace(b'"op":"upsert"', b'"op":"upsert","op":"delete"'),
            ("op", "more than once"),
        ),
        Malformed("deeply-nested", b"[" * 100_000 + b"]" * 100_000, (JSON_BODY, "deep")),
        Malformed(
            "deeply-nested-value",
            good().replace(
                b'"source_values":{', b'"source_values":{"x":' + b"[" * 5000 + b"]" * 5000 + b","
            ),
            (JSON_BODY, "deep"),
        ),
        Malformed(
            "huge-integer",
            good().replace(b'"schema_version":1', b'"schema_version":' + b"1" * 5000),
            (JSON_BODY, "number"),
        ),
        Malformed(
            "lone-surrogate",
            good().replace(b'"name":"Call back"', b'"name":"Call \\ud800 back"', 1),
            ("changed.name", "Unicode"),
        ),
    ]


def not_an_object() -> list[Malformed]:
    rule = ("_body: Must be a JSON object",)
    return [
        Malformed("array", b"[" + good() + b"]", rule),
        Malformed("string", b'"upsert task-1"', rule),
        Malformed("null", b"null", rule),
        Malformed("number", b"42", rule),
        Malformed("true", b"true", rule),
    ]


UNKNOWN: Final = "Unknown field"


def unknown_fields() -> list[Malformed]:
    return [
        wrong("unknown-top", "color", "blue", f"color: {UNKNOWN}"),
        wrong("unknown-changed", "changed.color", "blue", f"changed.color: {UNKNOWN}"),
        wrong("unknown-owner", "owner.email", "a@b.example", f"owner.email: {UNKNOWN}"),
        wrong("unknown-record", "record.hubspot_id", "1", f"record.hubspot_id: {UNKNOWN}"),
        wrong("unknown-long-key", "k" * 200_000, 1, "kkkk", UNKNOWN),
        changed(
            "unknown-many-keys",
            lambda m: m.update({f"extra_{n}": n for n in range(5000)}),
            f"extra_0: {UNKNOWN}",
        ),
    ]


def wrong_types() -> list[Malformed]:
    return [
        wrong("type-message-id", "message_id", 123, "message_id: Not a valid UUID"),
        wrong("type-occurred-at", "occurred_at", 1767225600, "occurred_at: Must be an ISO 8601"),
        wrong("type-actor", "actor", 42, "actor: Not a valid string"),
        wrong("type-owner", "owner", "user-1", "owner: Invalid input type"),
        wrong("type-changed", "changed", [], "changed: Invalid input type"),
        wrong("type-source-values", "source_values", [], "source_values: Not a valid mapping"),
        wrong(
            "type-source-value",
            "source_values",
            {"x": {"nested": 1}},
            "source_values.x.value: Must be a string, number, boolean or null",
        ),
        wrong("type-schema-version-string", "schema_version", "1", "schema_version: Not a valid"),
        wrong("type-schema-version-bool", "schema_version", True, "schema_version: Not a valid"),
        wrong("type-name", "changed.name", 5, "changed.name: Not a valid string"),
        wrong("type-trace-id", "trace_id", None, "trace_id: Field may not be null"),
        wrong("type-status", "changed.status", True, "changed.status: Must be one of"),
    ]


def bad_enums() -> list[Malformed]:
    return [
        wrong("enum-op", "op", "update", "op: Must be one of: upsert, delete, undelete"),
        wrong("enum-op-case", "op", "UPSERT", "op: Must be one of"),
        wrong("enum-origin", "origin", "hubspot", "origin: Must be one of"),
        wrong("enum-status", "changed.status", "In Progress", "changed.status: Must be one of"),
        wrong("enum-priority", "changed.priority", "urgent", "changed.priority: Must be one of"),
    ]


def bad_dates() -> list[Malformed]:
    due, stamp = "changed.due_date: Must be a calendar date", "occurred_at: Must be an ISO 8601"
    return [
        wrong("date-feb-30", "changed.due_date", "2026-02-30", due),
        wrong("date-day-first", "changed.due_date", "30/11/2026", due),
        wrong("date-compact", "changed.due_date", "20261130", due),
        wrong("date-week", "changed.due_date", "2026-W47-7", due),
        wrong("date-with-time", "changed.due_date", "2026-11-30T00:00:00Z", due),
        wrong("stamp-no-offset", "occurred_at", "2026-11-22T10:00:00", stamp),
        wrong("stamp-microseconds", "occurred_at", "2026-11-22T10:00:00.123456Z", stamp),
        wrong("stamp-month-13", "occurred_at", "2026-13-01T00:00:00.000Z", stamp),
        wrong("stamp-date-only", "occurred_at", "2026-11-22", stamp),
    ]


def bad_ids() -> list[Malformed]:
    uuid_rule = "message_id: Not a valid UUID"
    return [
        wrong("uuid-text", "message_id", "not-a-uuid", uuid_rule),
        wrong("uuid-empty", "message_id", "", uuid_rule),
        wrong("uuid-short", "message_id", str(uuid.uuid4())[:-1], uuid_rule),
        wrong("trace-id-upper", "trace_id", uuid.uuid4().hex.upper(), "trace_id: Must be 32"),
        wrong("trace-id-dashed", "trace_id", str(uuid.uuid4()), "trace_id: Must be 32"),
        wrong(
            "sf-task-id-short",
            "record.salesforce_task_id",
            "00T123",
            "record.salesforce_task_id: Must be an 18-character Salesforce id",
            direction=TO_SC,
        ),
        wrong(
            "sf-user-id-symbols",
            "owner.salesforce_user_id",
            "005000000000001AA!",
            "owner.salesforce_user_id: Must be an 18-character Salesforce id",
            direction=TO_SC,
        ),
        wrong(
            "sc-user-id-space",
            "owner.salesconnect_user_id",
            "user 1",
            "owner.salesconnect_user_id: Must be a Sales Connect id",
        ),
    ]


def missing_fields() -> list[Malformed]:
    return [
        missing("message_id"),
        missing("origin"),
        missing("op"),
        missing("occurred_at"),
        missing("owner"),
        missing("record"),
        missing("changed"),
        missing("source_values"),
        missing("trace_id"),
        wrong("owner-empty", "owner", {}, "owner: Must name salesconnect_user_id"),
        wrong(
            "record-without-source-id",
            "record",
            {"salesforce_task_id": SF_TASK},
            "record: Must carry salesconnect_task_id when origin is salesconnect",
        ),
        wrong(
            "delete-with-values",
            "op",
            "delete",
            "changed: Must be empty when op is delete",
        ),
    ]


def schema_versions() -> list[Malformed]:
    return [
        wrong("version-2", "schema_version", 2, "schema_version: Unsupported schema version 2"),
        wrong("version-0", "schema_version", 0, "schema_version: Unsupported schema version 0"),
        missing("schema_version"),
        Malformed(
            "version-header-2",
            good(),
            ("x-tasksync-schema-version", "Must be 1"),
            headers={"x-tasksync-schema-version": 2},
        ),
    ]


def wrong_properties() -> list[Malformed]:
    return [
        Malformed(
            "content-type-text",
            good(),
            ("content_type", "application/json"),
            content_type="text/plain",
        ),
        Malformed(
            "content-type-xml",
            good(),
            ("content_type", "application/json"),
            content_type="application/xml",
        ),
        Malformed(
            "content-encoding-gzip",
            good(),
            ("content_encoding", "utf-8"),
            content_encoding="gzip",
        ),
        Malformed(
            "origin-header",
            good(),
            ("x-tasksync-origin", "salesconnect"),
            headers={"x-tasksync-origin": "salesforce"},
        ),
    ]


def oversized() -> list[Malformed]:
    return [
        wrong(
            "oversized-body",
            "source_values",
            {"Description": "x" * OVERSIZED_BYTES},
            "body: Must be at most",
        ),
        wrong(
            "oversized-details",
            "changed.details",
            "d" * (DETAILS_MAX_LENGTH + 1),
            f"changed.details: Longer than maximum length {DETAILS_MAX_LENGTH}",
        ),
        wrong(
            "oversized-name",
            "changed.name",
            "n" * (NAME_MAX_LENGTH + 1),
            f"changed.name: Length must be between 1 and {NAME_MAX_LENGTH}",
        ),
        wrong("empty-name", "changed.name", "", "changed.name: Length must be between 1"),
        wrong(
            "oversized-actor",
            "actor",
            "a" * (ACTOR_MAX_LENGTH + 1),
            f"actor: Length must be between 1 and {ACTOR_MAX_LENGTH}",
        ),
        wrong(
            "oversized-source-values",
            "source_values",
            {f"field_{n}": n for n in range(SOURCE_VALUES_MAX_ITEMS + 1)},
            f"source_values: Must hold at most {SOURCE_VALUES_MAX_ITEMS} values",
        ),
    ]


def wrong_queue() -> list[Malformed]:
    return [
        Malformed(
            "salesforce-change-to-salesforce",
            good(TO_SC),
            ("origin: Must be salesconnect", "to-salesforce"),
            direction=TO_SF,
        ),
        Malformed(
            "salesconnect-change-to-salesconnect",
            good(TO_SF),
            ("origin: Must be salesforce", "to-salesconnect"),
            direction=TO_SC,
        ),
        Malformed(
            "salesforce-change-straight-onto-a-to-salesforce-queue",
            good(TO_SC),
            ("origin: Must be salesconnect",),
            direction=TO_SF,
            route="queue",
        ),
        Malformed(
            "message-id-property-differs",
            good(),
            ("message_id", "differs"),
        ),
    ]


def salesforce_side() -> list[Malformed]:
    """The same kinds of damage to Salesforce changes, on the to-salesconnect queues."""
    return [
        Malformed("sf-not-json", b'{"origin":"salesforce"', (JSON_BODY, "JSON"), direction=TO_SC),
        wrong(
            "sf-salesforce-field-name",
            "changed.Subject",
            "Call back",
            f"changed.Subject: {UNKNOWN}",
            direction=TO_SC,
        ),
        wrong(
            "sf-salesforce-status",
            "changed.status",
            "Not Started",
            "changed.status: Must be one of",
            direction=TO_SC,
        ),
        wrong(
            "sf-record-without-salesforce-id",
            "record",
            {"salesconnect_task_id": "task-1"},
            "record: Must carry salesforce_task_id when origin is salesforce",
            direction=TO_SC,
        ),
        wrong(
            "sf-owner-without-salesforce-id",
            "owner",
            {"salesconnect_user_id": "user-1"},
            "owner: Must carry salesforce_user_id when origin is salesforce",
            direction=TO_SC,
        ),
        wrong(
            "sf-stamp-short-offset",
            "occurred_at",
            "2026-11-22T10:00:00.000+00",
            "occurred_at: Must be an ISO 8601",
            direction=TO_SC,
        ),
        Malformed(
            "sf-content-type-form",
            good(TO_SC),
            ("content_type", "application/json"),
            direction=TO_SC,
            content_type="application/x-www-form-urlencoded",
        ),
        wrong(
            "sf-oversized-body",
            "source_values",
            {"Description": "x" * OVERSIZED_BYTES},
            "body: Must be at most",
            direction=TO_SC,
        ),
    ]


def hostile_headers() -> list[Malformed]:
    """Headers a producer never writes, on a malformed body: parking must still work."""
    return [
        Malformed(
            "huge-foreign-header",
            b"{",
            (JSON_BODY,),
            headers={"x-junk": "j" * 130_000},
            drops_headers=True,
        ),
        Malformed(
            "many-own-looking-headers",
            b"{",
            (JSON_BODY,),
            headers={f"x-tasksync-junk-{n}": "v" * 100 for n in range(900)},
            drops_headers=True,
        ),
        Malformed(
            "bogus-attempts-header",
            b"{",
            (JSON_BODY,),
            headers={"x-tasksync-attempts": "many", "x-tasksync-first-failed": "yesterday"},
        ),
        Malformed(
            "bogus-x-death",
            b"{",
            (JSON_BODY,),
            headers={"x-death": ["not a table"], "x-first-death-reason": 7},
        ),
        Malformed(
            "huge-original-routing-key-header",
            b"{",
            (JSON_BODY,),
            headers={"x-tasksync-original-routing-key": "r" * 1000},
        ),
    ]


def corpus() -> list[Malformed]:
    cases = [
        *bad_json(),
        *not_an_object(),
        *unknown_fields(),
        *wrong_types(),
        *bad_enums(),
        *bad_dates(),
        *bad_ids(),
        *missing_fields(),
        *schema_versions(),
        *wrong_properties(),
        *oversized(),
        *wrong_queue(),
        *salesforce_side(),
        *hostile_headers(),
    ]
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return cases
