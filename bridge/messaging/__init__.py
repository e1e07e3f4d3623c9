"""AMQP messaging for tasksync: topology, confirmed publishing, batch consuming with retries and
parking. Producers use `Publisher`; workers build a `Consumer` around a `BatchHandler`.
docs/messaging.md describes the design and how to scale it."""

from bridge.messaging.consumer import (
    APPLIED,
    DUPLICATE,
    ECHO_SKIPPED,
    SKIPPED,
    BatchHandler,
    Consumer,
    ConsumerSettings,
    ConsumerStats,
    Delivery,
    Outcome,
    OutcomeKind,
)
from bridge.messaging.envelope import OutboundMessage, ReceivedMessage, routing_key, task_key
from bridge.messaging.parking import ParkedMessage, ParkedMessageNotFoundError, ParkedQueue
from bridge.messaging.publisher import Publisher, PublishError, PublishTimeoutError
from bridge.messaging.retry import RetryPolicy, call_with_retries
from bridge.messaging.topology import (
    PARKED_QUEUE,
    PARKING_EXCHANGE,
    Direction,
    RetryTier,
    Topology,
    parse_retry_tiers,
    parse_shard_selection,
)

__all__ = [
    "APPLIED",
    "DUPLICATE",
    "ECHO_SKIPPED",
    "PARKED_QUEUE",
    "PARKING_EXCHANGE",
    "SKIPPED",
    "BatchHandler",
    "Consumer",
    "ConsumerSettings",
    "ConsumerStats",
    "Delivery",
    "Direction",
    "OutboundMessage",
    "Outcome",
    "OutcomeKind",
    "ParkedMessage",
    "ParkedMessageNotFoundError",
    "ParkedQueue",
    "PublishError",
    "PublishTimeoutError",
    "Publisher",
    "ReceivedMessage",
    "RetryPolicy",
    "RetryTier",
    "Topology",
    "call_with_retries",
    "parse_retry_tiers",
    "parse_shard_selection",
    "routing_key",
    "task_key",
]
