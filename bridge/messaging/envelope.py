"""The AMQP envelope of a `TaskChange`: routing key, properties and the headers operators read.

A message is published once by its producer and may travel again through a retry tier, the
parking queue and a replay; every hop keeps the body and `message_id` and rewrites only the
headers named here. Headers that steer routing (`tasksync-shard`, `tasksync-retry-tier`) carry
no `x-` prefix because RabbitMQ's headers exchange ignores `x-` headers when matching.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pika

from bridge.messaging.topology import RETRY_TIER_HEADER, SHARD_HEADER, Topology
from schemas.fields import format_utc_stamp, parse_utc_stamp
from schemas.task_change import SCHEMA_VERSION, Origin, TaskChange, task_change_json

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
            text = _text(candidate)
            if text:
                return text
        return self.exchange

    @property
    def original_routing_key(self) -> str:
        headers = self.headers
        text = _text(headers.get(ORIGINAL_ROUTING_KEY_HEADER))
        if text:
            return text
        keys = _first_death(headers, "routing-keys")
        if isinstance(keys, list) and keys:
            return _text(keys[0])
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
    headers[ERROR_HEADER] = error
    headers[ERROR_KIND_HEADER] = kind
    headers[ATTEMPTS_HEADER] = attempts
    headers[FIRST_FAILED_HEADER] = format_utc_stamp(received.first_failed or now)
    headers[ORIGINAL_EXCHANGE_HEADER] = received.original_exchange
    headers[ORIGINAL_ROUTING_KEY_HEADER] = received.original_routing_key
    return headers


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
