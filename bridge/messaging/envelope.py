"""The AMQP envelope of a `TaskChange`: routing key, properties and the headers operators read.

A message is published once by its producer and may travel again through a retry tier, the
parking queue and a replay; every hop keeps the body and `message_id` and rewrites only the
headers named here. Headers that steer routing (`tasksync-shard`, `tasksync-retry-tier`) carry
no `x-` prefix because RabbitMQ's headers exchange ignores `x-` headers when matching.

`load_received` is how a consumer reads a delivered message: the body must be at most
`MAX_BODY_BYTES` of strict UTF-8 JSON (no NaN, no key twice, no lone surrogate) holding a valid
`TaskChange` of the queue's own origin, and the AMQP properties and tasksync headers, where
present, must agree with it. Anything else raises `ContractError` naming the field and the
rule, and the consumer parks the message. A copy sent onward (retry or parking) always fits in
one AMQP frame: its error text is cut to `MAX_ERROR_CHARS`, and headers it cannot carry are
dropped (and counted in `x-tasksync-dropped-headers`).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pika

from bridge.messaging.topology import RETRY_TIER_HEADER, SHARD_HEADER, Direction, Topology
from schemas.errors import ContractError
from schemas.fields import format_utc_stamp, parse_utc_stamp
from schemas.task_change import (
    SCHEMA_VERSION,
    Origin,
    TaskChange,
    load_task_change,
    task_change_json,
)

CONTENT_TYPE: Final = "application/json"
CONTENT_ENCODING: Final = "utf-8"
MESSAGE_TYPE: Final = "tasksync.task-change"
PERSISTENT: Final = 2

SCHEMA_VERSION_HEADER: Final = "x-tasksync-schema-version"
ORIGIN_HEADER: Final = "x-tasksync-origin"
TASK_KEY_HEADER: Final = "x-tasksync-task-key"
OCCURRED_AT_HEADER: Final = "x-tasksync-occurred-at"
ERROR_HEADER: Final = "x-tasksync-error"
ERROR_KIND_HEADER: Final = "x-tasksync-error-kind"
ATTEMPTS_HEADER: Final = "x-tasksync-attempts"
FIRST_FAILED_HEADER: Final = "x-tasksync-first-failed"
ORIGINAL_EXCHANGE_HEADER: Final = "x-tasksync-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-tasksync-original-routing-key"
PARKED_AT_HEADER: Final = "x-tasksync-parked-at"
PARKED_FROM_HEADER: Final = "x-tasksync-parked-from"
REPLAYED_AT_HEADER: Final = "x-tasksync-replayed-at"
DROPPED_HEADERS_HEADER: Final = "x-tasksync-dropped-headers"

# The largest legitimate message (details of 100,000 characters, raw source values) is far
# below this; RabbitMQ itself refuses larger than its max_message_size (16 MiB by default).
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
MAX_ERROR_CHARS: Final = 2000
# The properties of a message must fit in one frame (128 KiB unless frame_max says otherwise).
MAX_HEADERS_BYTES: Final = 64 * 1024
MAX_SHORTSTR_BYTES: Final = 255  # an AMQP exchange name or routing key
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")

# Set by RabbitMQ on dead-lettering and delivery; never copied onto a message we publish.
BROKER_HEADERS: Final = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
    }
)
OWN_HEADERS: Final = frozenset(
    {
        SCHEMA_VERSION_HEADER,
        ORIGIN_HEADER,
        TASK_KEY_HEADER,
        OCCURRED_AT_HEADER,
        ERROR_HEADER,
        ERROR_KIND_HEADER,
        ATTEMPTS_HEADER,
        FIRST_FAILED_HEADER,
        ORIGINAL_EXCHANGE_HEADER,
        ORIGINAL_ROUTING_KEY_HEADER,
        PARKED_AT_HEADER,
        PARKED_FROM_HEADER,
        REPLAYED_AT_HEADER,
        SHARD_HEADER,
        RETRY_TIER_HEADER,
    }
)
FAILURE_HEADERS: Final = frozenset(
    {
        ERROR_HEADER,
        ERROR_KIND_HEADER,
        ATTEMPTS_HEADER,
        FIRST_FAILED_HEADER,
        PARKED_AT_HEADER,
        PARKED_FROM_HEADER,
        RETRY_TIER_HEADER,
    }
)


def task_key(change: TaskChange) -> str:
    """Which task, as the source system knows it: `salesconnect:<id>` or `salesforce:<id>`.

    The source id is always present (the schema requires it for the origin), so every message
    about one task carries the same key in its direction."""
    if change.origin is Origin.SALESCONNECT:
        return f"salesconnect:{change.record.salesconnect_task_id}"
    return f"salesforce:{change.record.salesforce_task_id}"


def routing_key(change: TaskChange) -> str:
    """`<op>.<owner>`: an operator binds `*.<user id>` to watch one user's traffic."""
    owner = (
        change.owner.salesconnect_user_id
        if change.origin is Origin.SALESCONNECT
        else change.owner.salesforce_user_id
    )
    return f"{change.op.value}.{owner}"


@dataclass(frozen=True)
class OutboundMessage:
    """One AMQP message ready to publish, with the properties `pika.BasicProperties` takes."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    timestamp: int | None = None
    content_type: str | None = CONTENT_TYPE
    content_encoding: str | None = CONTENT_ENCODING
    type: str | None = MESSAGE_TYPE
    app_id: str | None = None
    correlation_id: str | None = None

    def properties(self) -> Any:
        return pika.BasicProperties(
            content_type=self.content_type,
            content_encoding=self.content_encoding,
            delivery_mode=PERSISTENT,
            message_id=self.message_id,
            timestamp=self.timestamp if self.timestamp is not None else _now_seconds(),
            type=self.type,
            app_id=self.app_id,
            correlation_id=self.correlation_id,
            headers=dict(self.headers),
        )


def envelope_for(change: TaskChange, topology: Topology, *, app_id: str) -> OutboundMessage:
    """The first publication of a change onto its origin's exchange."""
    key = task_key(change)
    return OutboundMessage(
        exchange=topology.exchange_for_origin(change.origin),
        routing_key=routing_key(change),
        body=task_change_json(change),
        message_id=str(change.message_id),
        headers={
            SCHEMA_VERSION_HEADER: SCHEMA_VERSION,
            ORIGIN_HEADER: change.origin.value,
            TASK_KEY_HEADER: key,
            OCCURRED_AT_HEADER: format_utc_stamp(change.occurred_at),
            SHARD_HEADER: str(topology.shard_of(key)),
        },
        app_id=app_id,
        correlation_id=change.trace_id,
    )


@dataclass(frozen=True)
class ReceivedMessage:
    """A delivered AMQP message as received: what any hop needs to publish it onward."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Any
    redelivered: bool = False
    queue: str = ""

    @functools.cached_property
    def headers(self) -> dict[str, Any]:
        """A copy of the message's headers (read once; callers must not change it)."""
        headers = getattr(self.properties, "headers", None)
        return dict(headers) if isinstance(headers, Mapping) else {}

    @property
    def message_id(self) -> str:
        value = getattr(self.properties, "message_id", None)
        return str(value) if value else ""

    @property
    def attempts(self) -> int:
        value = self.headers.get(ATTEMPTS_HEADER)
        return value if isinstance(value, int) and value >= 0 else 0

    @property
    def first_failed(self) -> datetime | None:
        return _stamp(self.headers.get(FIRST_FAILED_HEADER))

    @property
    def last_error(self) -> str | None:
        value = _text(self.headers.get(ERROR_HEADER))
        return value or None

    @property
    def original_exchange(self) -> str:
        """Where the producer published it: our header, else RabbitMQ's first death, else now."""
        headers = self.headers
        for candidate in (
            headers.get(ORIGINAL_EXCHANGE_HEADER),
            _first_death(headers, "exchange"),
            headers.get("x-first-death-exchange"),
        ):
            text = _shortstr(candidate)
            if text:
                return text
        return self.exchange

    @property
    def original_routing_key(self) -> str:
        headers = self.headers
        text = _shortstr(headers.get(ORIGINAL_ROUTING_KEY_HEADER))
        if text:
            return text
        keys = _first_death(headers, "routing-keys")
        if isinstance(keys, list) and keys and _shortstr(keys[0]):
            return _shortstr(keys[0])
        return self.routing_key

    def onward(
        self, exchange: str, routing_key: str | None = None, *, headers: Mapping[str, Any]
    ) -> OutboundMessage:
        """The same message (body, id, properties) published elsewhere with these headers."""
        props = self.properties
        return OutboundMessage(
            exchange=exchange,
            routing_key=self.original_routing_key if routing_key is None else routing_key,
            body=self.body,
            message_id=self.message_id or str(uuid.uuid4()),
            headers=headers,
            timestamp=getattr(props, "timestamp", None),
            content_type=getattr(props, "content_type", None),
            content_encoding=getattr(props, "content_encoding", None),
            type=getattr(props, "type", None),
            app_id=getattr(props, "app_id", None),
            correlation_id=getattr(props, "correlation_id", None),
        )

    def clean_headers(self) -> dict[str, Any]:
        """Our own headers without the broker's dead-letter bookkeeping."""
        return {k: v for k, v in self.headers.items() if k not in BROKER_HEADERS}


def failure_headers(
    received: ReceivedMessage,
    *,
    error: str,
    kind: str,
    attempts: int,
    now: datetime,
) -> dict[str, Any]:
    """Headers for a message leaving its queue after a failure (to a retry tier or parking)."""
    headers = received.clean_headers()
    headers.pop(RETRY_TIER_HEADER, None)
    headers[ERROR_HEADER] = shorten(error, MAX_ERROR_CHARS)
    headers[ERROR_KIND_HEADER] = kind
    headers[ATTEMPTS_HEADER] = attempts
    headers[FIRST_FAILED_HEADER] = format_utc_stamp(received.first_failed or now)
    headers[ORIGINAL_EXCHANGE_HEADER] = received.original_exchange
    headers[ORIGINAL_ROUTING_KEY_HEADER] = received.original_routing_key
    return fit_headers(headers)


def fit_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """`headers`, made small enough to publish: a message delivered with huge headers of
    someone else's would otherwise make its retry or parked copy unpublishable, and stall its
    consumer on it forever. When too large, only tasksync's own headers are kept, their text
    cut to `MAX_ERROR_CHARS`, and the rest are named in `x-tasksync-dropped-headers`."""
    size = _encoded_size(headers)
    if size <= MAX_HEADERS_BYTES:
        return headers
    kept = {
        key: shorten(_text(value), MAX_ERROR_CHARS) if isinstance(value, str | bytes) else value
        for key, value in headers.items()
        if key in OWN_HEADERS and isinstance(value, str | bytes | int | float | datetime)
    }
    dropped = sorted(str(key) for key in headers if key not in kept)
    names = shorten(", ".join(shorten(name, 60) for name in dropped), 500)
    kept[DROPPED_HEADERS_HEADER] = (
        f"{len(dropped)} header(s) dropped: {size:,} bytes of headers were too large to "
        f"carry on: {names or 'none; our own were shortened'}"
    )
    return kept


def shorten(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters (ending in an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def describe_briefly(error: ContractError, *, max_fields: int = 20) -> str:
    """`error.describe()`, bounded: long field names and rules are cut, and at most
    `max_fields` fields are named (a message can hold thousands of unknown keys)."""
    parts = [
        f"{shorten(path, 120)}: {shorten(' '.join(rules), 300)}"
        for path, rules in sorted(error.fields.items())
    ]
    more = f"; and {len(parts) - max_fields} more field(s)" if len(parts) > max_fields else ""
    return shorten("; ".join(parts[:max_fields]) + more, MAX_ERROR_CHARS)


def load_received(received: ReceivedMessage, direction: Direction) -> TaskChange:
    """The `TaskChange` a message delivered on a `direction` queue carries; `ContractError`
    naming every field and rule it breaks (see the module docstring)."""
    body = received.body
    if len(body) > MAX_BODY_BYTES:
        raise ContractError(
            {"body": [f"Must be at most {MAX_BODY_BYTES:,} bytes; it has {len(body):,}."]}
        )
    props = received.properties
    errors: dict[str, list[str]] = {}
    content_type = _text(getattr(props, "content_type", None))
    if content_type and content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
        errors["content_type"] = [f"Must be {CONTENT_TYPE}, not {shorten(content_type, 80)!r}."]
    encoding = _text(getattr(props, "content_encoding", None))
    if encoding and encoding.strip().lower() not in ("utf-8", "utf8"):
        errors["content_encoding"] = [f"Must be utf-8 or absent, not {shorten(encoding, 80)!r}."]
    if errors:
        raise ContractError(errors)
    value = strict_json(body)
    if not isinstance(value, dict):  # a JSON string would be read as JSON text again
        raise ContractError({"_body": ["Must be a JSON object."]})
    change = load_task_change(value)
    expected = direction.source_origin
    if change.origin is not expected:
        errors["origin"] = [
            f"Must be {expected.value} on the {direction.value} queues: this "
            f"{change.origin.value} change was published to the wrong exchange or queue."
        ]
    headers = received.headers
    version = headers.get(SCHEMA_VERSION_HEADER)
    if version is not None and (type(version) is not int or version != change.schema_version):
        errors[SCHEMA_VERSION_HEADER] = [
            f"Must be {change.schema_version}, as the body says, not {shorten(repr(version), 40)}."
        ]
    origin = headers.get(ORIGIN_HEADER)
    if origin is not None and _text(origin) != change.origin.value:
        errors[ORIGIN_HEADER] = [
            f"Must be {change.origin.value}, as the body says, not {shorten(repr(origin), 40)}."
        ]
    message_id = received.message_id
    if message_id and message_id != str(change.message_id):
        errors["message_id"] = [
            f"The message_id property {shorten(message_id, 80)!r} differs from the body's "
            f"{change.message_id}."
        ]
    if errors:
        raise ContractError(errors)
    return change


class _NotJsonError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _NotJsonError(
                    f"key {shorten(key, 80)!r} appears more than once in one object"
                )
            seen.add(key)
    return value


def _no_constant(name: str) -> Any:
    raise _NotJsonError(f"{name} is not a JSON number")


def strict_json(body: bytes) -> Any:
    """Parse a message body as strict JSON: UTF-8 without a byte order mark, no NaN or
    Infinity, no key twice in one object (readers disagree on which one wins), no lone
    surrogate in a string; `ContractError` saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(
            {"_body": [f"Not valid UTF-8 JSON: {exc.reason} at byte {exc.start}."]}
        ) from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ContractError({"_body": [f"Not valid UTF-8 JSON: {exc}."]}) from None
    except _NotJsonError as exc:
        raise ContractError({"_body": [f"Not valid JSON: {exc}."]}) from None
    except RecursionError:
        raise ContractError({"_body": ["Not valid JSON here: nested too deeply."]}) from None
    except ValueError:  # Python refuses integers of more than 4,300 digits
        raise ContractError({"_body": ["Not valid JSON here: a number far too long."]}) from None
    if _SURROGATE_ESCAPE.search(text):
        path = _lone_surrogate(value, "")
        if path is not None:
            raise ContractError(
                {path or "_body": ["Must be valid Unicode: it holds a lone surrogate escape."]}
            )
    return value


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The dotted path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else key
            if _lone_surrogate(key, "") is not None:
                return path or "_body"
            items.append((inner, item))
    elif isinstance(value, list):
        items = [(f"{path}.{n}" if path else str(n), item) for n, item in enumerate(value)]
    for inner, item in items:
        found = _lone_surrogate(item, inner)
        if found is not None:
            return found
    return None


def broker_dead_letter_reason(headers: Mapping[str, Any]) -> str | None:
    """Why RabbitMQ itself dead-lettered a message (e.g. `delivery_limit`), if it did."""
    reason = _first_death(headers, "reason") or headers.get("x-first-death-reason")
    text = _text(reason)
    return text or None


def _first_death(headers: Mapping[str, Any], key: str) -> Any:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], Mapping):
        # x-death is newest first; the oldest entry says where the message first came from.
        return deaths[-1].get(key)
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def _shortstr(value: Any) -> str:
    """A header's text if it can be an exchange name or routing key (AMQP short string)."""
    text = _text(value)
    return text if len(text.encode("utf-8", "replace")) <= MAX_SHORTSTR_BYTES else ""


def _encoded_size(headers: Mapping[str, Any]) -> int:
    try:
        encoded = pika.BasicProperties(headers=dict(headers)).encode()
    except Exception:  # a value pika cannot encode: treat as too large, so it is dropped
        return MAX_HEADERS_BYTES + 1
    return sum(len(part) for part in encoded)


def _stamp(value: Any) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        return parse_utc_stamp(text)
    except ValueError:
        return None


def _now_seconds() -> int:
    return int(datetime.now(UTC).timestamp())
