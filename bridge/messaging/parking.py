"""Retry and parking copies of a message, and the operator's view of `tasksync.parked`.

A failed message leaves its shard queue as a copy with the same body and `message_id`: to a
retry tier (the `tasksync.<direction>.retry` exchange, `tasksync-retry-tier` header) or to the
parking exchange. The copy carries `x-tasksync-error`, `x-tasksync-error-kind`,
`x-tasksync-attempts`, `x-tasksync-first-failed` and the original exchange and routing key;
parked copies also `x-tasksync-parked-at` and `x-tasksync-parked-from`.

`ParkedQueue` lists, shows, replays and drops parked messages. AMQP queues are not random
access: it takes messages with `basic.get` without acking them and closes its channel when
done, which returns every message it did not act on to its place in the (classic) queue.
Two operators browsing at once each see only what the other is not holding.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import pika

from bridge.errors import ErrorKind
from bridge.messaging.connection import connection_parameters
from bridge.messaging.envelope import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ERROR_KIND_HEADER,
    FAILURE_HEADERS,
    FIRST_FAILED_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    PARKED_AT_HEADER,
    PARKED_FROM_HEADER,
    REPLAYED_AT_HEADER,
    OutboundMessage,
    ReceivedMessage,
    broker_dead_letter_reason,
    failure_headers,
    task_key,
)
from bridge.messaging.topology import (
    PARKED_QUEUE,
    PARKING_EXCHANGE,
    RETRY_TIER_HEADER,
    SHARD_HEADER,
    Direction,
    RetryTier,
    Topology,
)
from schemas.errors import ContractError
from schemas.fields import format_utc_stamp
from schemas.task_change import load_task_change

log = logging.getLogger(__name__)

REPLAYABLE_EXCHANGE_PREFIX: Final = "tasksync."


def retry_copy(
    received: ReceivedMessage,
    topology: Topology,
    direction: Direction,
    tier: RetryTier,
    *,
    error: str,
    kind: ErrorKind,
    task_key: str,
    attempts: int,
    now: datetime,
) -> OutboundMessage:
    """The message on its way through `tier`; it expires back into its own shard."""
    headers = failure_headers(received, error=error, kind=kind.value, attempts=attempts, now=now)
    headers[RETRY_TIER_HEADER] = tier.label
    # The shard is recomputed rather than trusted: a copy without it would expire into the
    # shard exchange unroutable and circle inside RabbitMQ's at-least-once dead-lettering.
    headers[SHARD_HEADER] = str(topology.shard_of(task_key))
    return received.onward(topology.retry_exchange(direction), headers=headers)


def parked_copy(
    received: ReceivedMessage,
    *,
    error: str,
    kind: ErrorKind,
    attempts: int,
    now: datetime,
) -> OutboundMessage:
    """The message on its way to `tasksync.parked`, with the reason an operator reads."""
    headers = failure_headers(received, error=error, kind=kind.value, attempts=attempts, now=now)
    headers[PARKED_AT_HEADER] = format_utc_stamp(now)
    headers[PARKED_FROM_HEADER] = received.queue or received.exchange
    return received.onward(PARKING_EXCHANGE, headers=headers)


@dataclass(frozen=True)
class ParkedMessage:
    """One parked message as an operator reads it."""

    message_id: str
    error: str
    error_kind: str
    attempts: int
    first_failed: str
    parked_at: str
    parked_from: str
    original_exchange: str
    original_routing_key: str
    received: ReceivedMessage

    @classmethod
    def of(cls, received: ReceivedMessage) -> ParkedMessage:
        headers = received.headers
        broker_reason = broker_dead_letter_reason(headers)
        error = _text(headers.get(ERROR_HEADER)) or (
            f"dead-lettered by RabbitMQ: {broker_reason}" if broker_reason else "(no reason given)"
        )
        kind = _text(headers.get(ERROR_KIND_HEADER)) or ("broker" if broker_reason else "")
        return cls(
            message_id=received.message_id,
            error=error,
            error_kind=kind,
            attempts=received.attempts or _int(headers.get("x-delivery-count")),
            first_failed=_text(headers.get(FIRST_FAILED_HEADER)),
            parked_at=_text(headers.get(PARKED_AT_HEADER)),
            parked_from=_text(headers.get(PARKED_FROM_HEADER))
            or _text(headers.get("x-first-death-queue")),
            original_exchange=received.original_exchange,
            original_routing_key=received.original_routing_key,
            received=received,
        )

    def summary(self) -> dict[str, Any]:
        """The fields `tasksync parked list --json` prints."""
        return {
            "message_id": self.message_id,
            "error": self.error,
            "error_kind": self.error_kind,
            "attempts": self.attempts,
            "first_failed": self.first_failed,
            "parked_at": self.parked_at,
            "parked_from": self.parked_from,
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
        }

    def details(self) -> dict[str, Any]:
        """Everything `tasksync parked show` prints: summary, headers and body."""
        body_text = self.received.body.decode("utf-8", "replace")
        try:
            body: Any = json.loads(body_text)
        except json.JSONDecodeError:
            body = body_text
        return {
            **self.summary(),
            "headers": _jsonable(self.received.headers),
            "body": body,
        }

    def replay_copy(self, topology: Topology, now: datetime) -> OutboundMessage:
        """The message as published again to its original route, failure history removed."""
        if not self.original_exchange.startswith(REPLAYABLE_EXCHANGE_PREFIX):
            raise ValueError(
                f"{self.message_id}: original exchange {self.original_exchange!r} is not one of "
                "tasksync's; it cannot be replayed"
            )
        headers = {
            key: value
            for key, value in self.received.clean_headers().items()
            if key not in FAILURE_HEADERS
            and key not in (ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, ATTEMPTS_HEADER)
        }
        try:
            change = load_task_change(self.received.body)
            headers[SHARD_HEADER] = str(topology.shard_of(task_key(change)))
        except ContractError:
            pass  # replayed as it is; if it is still malformed it is parked again
        headers[REPLAYED_AT_HEADER] = format_utc_stamp(now)
        return self.received.onward(
            self.original_exchange, self.original_routing_key, headers=headers
        )


class ParkedMessageNotFoundError(LookupError):
    def __init__(self, missing: Collection[str]) -> None:
        self.missing = sorted(missing)
        super().__init__(f"not in {PARKED_QUEUE}: {', '.join(self.missing)}")


class ParkedQueue:
    """Browse, replay and drop messages in `tasksync.parked` (a short-lived connection)."""

    def __init__(self, amqp_url: str, *, topology: Topology | None = None) -> None:
        self.amqp_url = amqp_url
        self.topology = topology or Topology()

    def count(self) -> int:
        with self._connection() as (_, channel):
            return int(channel.queue_declare(queue=PARKED_QUEUE, passive=True).method.message_count)

    def browse(self, limit: int | None = None) -> list[ParkedMessage]:
        """Up to `limit` parked messages, oldest first; all stay parked."""
        found: list[ParkedMessage] = []
        with self._connection() as (_, channel):
            depth = channel.queue_declare(queue=PARKED_QUEUE, passive=True).method.message_count
            for _ in range(depth if limit is None else min(depth, limit)):
                got = self._get(channel)
                if got is None:
                    break
                found.append(ParkedMessage.of(got[1]))
        return found

    def find(self, message_id: str) -> ParkedMessage:
        for parked in self.browse():
            if parked.message_id == message_id:
                return parked
        raise ParkedMessageNotFoundError([message_id])

    def replay(self, message_ids: Collection[str] | None) -> list[str]:
        """Publish the chosen (None: all) parked messages to their original route, confirmed,
        and only then remove them from parking. Returns the ids replayed."""
        now = datetime.now(UTC)

        def act(channel: Any, parked: ParkedMessage) -> None:
            message = parked.replay_copy(self.topology, now)
            channel.basic_publish(
                exchange=message.exchange,
                routing_key=message.routing_key,
                body=message.body,
                properties=message.properties(),
                mandatory=True,
            )

        return self._act_on(message_ids, act)

    def drop(
        self, message_ids: Collection[str], record: Callable[[ParkedMessage], None]
    ) -> list[str]:
        """Remove the chosen parked messages after `record` (the audit log) succeeded."""
        return self._act_on(message_ids, lambda _channel, parked: record(parked))

    def _act_on(
        self,
        message_ids: Collection[str] | None,
        act: Callable[[Any, ParkedMessage], None],
    ) -> list[str]:
        wanted = None if message_ids is None else set(message_ids)
        done: list[str] = []
        with self._connection() as (connection, channel):
            publish_channel = connection.channel()
            publish_channel.confirm_delivery()
            depth = channel.queue_declare(queue=PARKED_QUEUE, passive=True).method.message_count
            for _ in range(depth):
                got = self._get(channel)
                if got is None:
                    break
                tag, received = got
                parked = ParkedMessage.of(received)
                if wanted is not None and parked.message_id not in wanted:
                    continue
                act(publish_channel, parked)
                channel.basic_ack(delivery_tag=tag)
                done.append(parked.message_id)
                if wanted is not None and wanted <= set(done):
                    break
        if wanted is not None and not wanted <= set(done):
            raise ParkedMessageNotFoundError(wanted - set(done))
        return done

    @staticmethod
    def _get(channel: Any) -> tuple[int, ReceivedMessage] | None:
        method, properties, body = channel.basic_get(queue=PARKED_QUEUE, auto_ack=False)
        if method is None:
            return None
        return method.delivery_tag, ReceivedMessage(
            exchange=method.exchange,
            routing_key=method.routing_key,
            body=body,
            properties=properties,
            redelivered=bool(method.redelivered),
            queue=PARKED_QUEUE,
        )

    def _connection(self) -> _ParkedConnection:
        return _ParkedConnection(self.amqp_url)


class _ParkedConnection:
    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.connection: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        self.connection = pika.BlockingConnection(
            connection_parameters(self.amqp_url, name="tasksync parked (operator)")
        )
        return self.connection, self.connection.channel()

    def __exit__(self, *_: object) -> None:
        # Closing returns every message taken but not acked to its place in the queue.
        if self.connection is not None and self.connection.is_open:
            self.connection.close()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_utc_stamp(value.astimezone(UTC))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
