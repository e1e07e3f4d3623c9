"""The RabbitMQ topology: every exchange, queue and binding tasksync uses, by name and argument.

Per direction (`to-salesforce` is fed by `tasksync.salesconnect.changes`, `to-salesconnect` by
`tasksync.salesforce.changes`):

    tasksync.salesconnect.changes (topic; routing key `<op>.<owner>`)
      └─ `#` ─► tasksync.to-salesforce.shards (headers; `tasksync-shard` = "0".."N-1")
                  └─► tasksync.to-salesforce.0 .. .N-1 (quorum, single active consumer)
                        └─ delivery limit ─► tasksync.parking
    tasksync.to-salesforce.retry (headers; `tasksync-retry-tier` = "5s", "30s", ...)
      └─► tasksync.to-salesforce.retry.5s ... (quorum, message TTL)
            └─ expiry (at-least-once dead-lettering) ─► tasksync.to-salesforce.shards
    tasksync.parking (topic) ─ `#` ─► tasksync.parked (classic; browsed by `tasksync parked`)

The publisher computes the shard from the task key (`shard_of`) and writes it in a header, so a
task's messages always reach the same shard queue, also after a retry dead-letters it back;
single-active-consumer on each shard queue means one consumer applies a task at a time. With
one shard the queue is named plainly `tasksync.to-salesforce`. docs/messaging.md says why the
shard is a header and not a consistent-hash ring, and how to scale.

Everything is declared idempotently by `declare` and exported by `bridge.messaging.definitions`
from the same specs, so `deploy/rabbitmq/definitions.json` and the code cannot disagree.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict

from schemas.task_change import Origin

SOURCE_EXCHANGES: Final[Mapping[Origin, str]] = {
    Origin.SALESCONNECT: "tasksync.salesconnect.changes",
    Origin.SALESFORCE: "tasksync.salesforce.changes",
}
PARKING_EXCHANGE: Final = "tasksync.parking"
PARKED_QUEUE: Final = "tasksync.parked"
SHARD_HEADER: Final = "tasksync-shard"
RETRY_TIER_HEADER: Final = "tasksync-retry-tier"
DEFAULT_SHARD_COUNT: Final = 4
MAX_SHARD_COUNT: Final = 64
DEFAULT_DELIVERY_LIMIT: Final = 20

ExchangeType = Literal["topic", "headers", "direct", "fanout"]

QuorumQueueArguments = TypedDict(
    "QuorumQueueArguments",
    {
        "x-queue-type": Literal["quorum"],
        "x-single-active-consumer": bool,
        "x-delivery-limit": int,
        "x-message-ttl": int,
        "x-dead-letter-exchange": str,
        "x-dead-letter-strategy": Literal["at-least-once", "at-most-once"],
        "x-overflow": Literal["reject-publish", "drop-head"],
    },
    total=False,
)
ClassicQueueArguments = TypedDict(
    "ClassicQueueArguments", {"x-queue-type": Literal["classic"]}, total=False
)
HeadersBindingArguments = TypedDict(
    "HeadersBindingArguments",
    {"x-match": Literal["all", "any"], "tasksync-shard": str, "tasksync-retry-tier": str},
    total=False,
)


class Direction(enum.StrEnum):
    """Which way a change travels; named after the system it is applied to."""

    TO_SALESFORCE = "to-salesforce"
    TO_SALESCONNECT = "to-salesconnect"

    @property
    def source_origin(self) -> Origin:
        return Origin.SALESCONNECT if self is Direction.TO_SALESFORCE else Origin.SALESFORCE

    @property
    def source_exchange(self) -> str:
        return SOURCE_EXCHANGES[self.source_origin]

    @classmethod
    def for_origin(cls, origin: Origin) -> Direction:
        return cls.TO_SALESFORCE if origin is Origin.SALESCONNECT else cls.TO_SALESCONNECT


_DURATION: Final = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


@dataclass(frozen=True, order=True)
class RetryTier:
    """One retry delay: a queue whose messages expire after `ttl_ms` back into the shards."""

    ttl_ms: int
    label: str

    @classmethod
    def parse(cls, text: str) -> RetryTier:
        """`500ms`, `5s`, `30s`, `5m`, `1h`: the label is the text, so it names the queue."""
        match = _DURATION.match(text.strip())
        if not match or int(match.group(1)) <= 0:
            raise ValueError(
                f"retry tier {text!r}: must be a positive whole duration like 500ms, 5s, 5m or 1h"
            )
        return cls(int(match.group(1)) * _UNIT_MS[match.group(2)], text.strip())


def parse_retry_tiers(text: str) -> tuple[RetryTier, ...]:
    """`5s,30s,5m,30m` to tiers, checked to be strictly increasing."""
    tiers = tuple(RetryTier.parse(part) for part in text.split(",") if part.strip())
    if not tiers:
        raise ValueError("retry tiers: must name at least one duration, e.g. 5s,30s,5m,30m")
    for shorter, longer in itertools.pairwise(tiers):
        if longer.ttl_ms <= shorter.ttl_ms:
            raise ValueError(
                f"retry tiers: must grow from one to the next ({shorter.label} then {longer.label})"
            )
    return tiers


DEFAULT_RETRY_TIERS: Final = parse_retry_tiers("5s,30s,5m,30m")


def parse_shard_selection(text: str, shard_count: int) -> tuple[int, ...]:
    """`all`, `0-3`, `0,2` or `1-2,5` to sorted shard numbers below `shard_count`."""
    text = text.strip()
    if text in ("", "all"):
        return tuple(range(shard_count))
    chosen: set[int] = set()
    for part in text.split(","):
        bounds = part.strip().split("-")
        if len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
            raise ValueError(f"shards {text!r}: write shard numbers like 0-3 or 0,2 or all")
        low, high = int(bounds[0]), int(bounds[-1])
        if low > high:
            raise ValueError(f"shards {text!r}: range {part.strip()} runs backwards")
        if high >= shard_count:
            raise ValueError(
                f"shards {text!r}: shard {high} does not exist; shards are 0-{shard_count - 1}"
            )
        chosen.update(range(low, high + 1))
    return tuple(sorted(chosen))


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: ExchangeType
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: QuorumQueueArguments | ClassicQueueArguments


@dataclass(frozen=True)
class BindingSpec:
    source: str
    destination: str
    destination_type: Literal["queue", "exchange"]
    routing_key: str = ""
    arguments: HeadersBindingArguments = field(default_factory=HeadersBindingArguments)


@dataclass(frozen=True)
class Topology:
    """The names and arguments for one deployment; the defaults are production's.

    `shard_count` and `retry_tiers` must be the same in every producer, worker and the broker's
    definitions (see docs/messaging.md for changing them)."""

    shard_count: int = DEFAULT_SHARD_COUNT
    retry_tiers: tuple[RetryTier, ...] = DEFAULT_RETRY_TIERS
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def __post_init__(self) -> None:
        if not 1 <= self.shard_count <= MAX_SHARD_COUNT:
            raise ValueError(f"shard count: must be 1-{MAX_SHARD_COUNT}, not {self.shard_count}")
        if not self.retry_tiers:
            raise ValueError("retry tiers: must name at least one duration")
        if self.delivery_limit < 1:
            raise ValueError("delivery limit: must be at least 1")

    # -- names ---------------------------------------------------------------------------------

    @staticmethod
    def source_exchange(direction: Direction) -> str:
        return direction.source_exchange

    @staticmethod
    def exchange_for_origin(origin: Origin) -> str:
        return SOURCE_EXCHANGES[origin]

    @staticmethod
    def shard_exchange(direction: Direction) -> str:
        return f"tasksync.{direction.value}.shards"

    @staticmethod
    def retry_exchange(direction: Direction) -> str:
        return f"tasksync.{direction.value}.retry"

    def shard_queue(self, direction: Direction, shard: int) -> str:
        if not 0 <= shard < self.shard_count:
            raise ValueError(f"shard {shard} does not exist; shards are 0-{self.shard_count - 1}")
        base = f"tasksync.{direction.value}"
        return base if self.shard_count == 1 else f"{base}.{shard}"

    def shard_queues(self, direction: Direction, shards: Iterable[int] | None = None) -> list[str]:
        chosen = range(self.shard_count) if shards is None else shards
        return [self.shard_queue(direction, shard) for shard in chosen]

    @staticmethod
    def retry_queue(direction: Direction, tier: RetryTier) -> str:
        return f"tasksync.{direction.value}.retry.{tier.label}"

    def shard_of(self, task_key: str) -> int:
        """The shard a task's messages go to: stable across processes, machines and restarts."""
        digest = hashlib.sha256(task_key.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.shard_count

    def tier(self, label: str) -> RetryTier:
        for tier in self.retry_tiers:
            if tier.label == label:
                return tier
        raise KeyError(label)

    # -- specs ---------------------------------------------------------------------------------

    def exchanges(self, direction: Direction | None = None) -> list[ExchangeSpec]:
        specs: list[ExchangeSpec] = []
        for d in _directions(direction):
            specs += [
                ExchangeSpec(d.source_exchange, "topic"),
                ExchangeSpec(self.shard_exchange(d), "headers"),
                ExchangeSpec(self.retry_exchange(d), "headers"),
            ]
        if direction is None:
            specs.append(ExchangeSpec(PARKING_EXCHANGE, "topic"))
        return specs

    def queues(self, direction: Direction | None = None) -> list[QueueSpec]:
        specs: list[QueueSpec] = []
        for d in _directions(direction):
            specs += [
                QueueSpec(self.shard_queue(d, shard), self.shard_queue_arguments())
                for shard in range(self.shard_count)
            ]
            specs += [
                QueueSpec(self.retry_queue(d, tier), self.retry_queue_arguments(d, tier))
                for tier in self.retry_tiers
            ]
        if direction is None:
            specs.append(
                QueueSpec(PARKED_QUEUE, ClassicQueueArguments({"x-queue-type": "classic"}))
            )
        return specs

    def bindings(self, direction: Direction | None = None) -> list[BindingSpec]:
        specs: list[BindingSpec] = []
        for d in _directions(direction):
            specs.append(BindingSpec(d.source_exchange, self.shard_exchange(d), "exchange", "#"))
            specs += [
                BindingSpec(
                    self.shard_exchange(d),
                    self.shard_queue(d, shard),
                    "queue",
                    "",
                    HeadersBindingArguments({"x-match": "all", SHARD_HEADER: str(shard)}),
                )
                for shard in range(self.shard_count)
            ]
            specs += [
                BindingSpec(
                    self.retry_exchange(d),
                    self.retry_queue(d, tier),
                    "queue",
                    "",
                    HeadersBindingArguments({"x-match": "all", RETRY_TIER_HEADER: tier.label}),
                )
                for tier in self.retry_tiers
            ]
        if direction is None:
            specs.append(BindingSpec(PARKING_EXCHANGE, PARKED_QUEUE, "queue", "#"))
        return specs

    def shard_queue_arguments(self) -> QuorumQueueArguments:
        # At-least-once dead-lettering needs reject-publish overflow; no length limit is set,
        # so nothing is ever rejected for length. The delivery limit parks a message that
        # keeps crashing its consumer instead of letting RabbitMQ 4.x drop it (default 20).
        return QuorumQueueArguments(
            {
                "x-queue-type": "quorum",
                "x-single-active-consumer": True,
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": PARKING_EXCHANGE,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )

    def retry_queue_arguments(self, direction: Direction, tier: RetryTier) -> QuorumQueueArguments:
        return QuorumQueueArguments(
            {
                "x-queue-type": "quorum",
                "x-message-ttl": tier.ttl_ms,
                "x-dead-letter-exchange": self.shard_exchange(direction),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )

    # -- declaring -----------------------------------------------------------------------------

    def declare(self, channel: Any, direction: Direction | None = None) -> None:
        """Declare idempotently on a pika `BlockingChannel`.

        Without `direction`: everything (what `tasksync topology declare` does). With one:
        that direction's own exchanges, queues and bindings (what a worker redeclares after
        reconnecting), after checking passively that the shared source and parking exchanges
        exist, which needs no configure permission on them."""
        if direction is not None:
            channel.exchange_declare(exchange=direction.source_exchange, passive=True)
            channel.exchange_declare(exchange=PARKING_EXCHANGE, passive=True)
        shared = {direction.source_exchange} if direction is not None else set()
        for exchange in self.exchanges(direction):
            if exchange.name in shared:
                continue
            channel.exchange_declare(
                exchange=exchange.name,
                exchange_type=exchange.type,
                durable=True,
                auto_delete=False,
                internal=False,
                arguments=dict(exchange.arguments) or None,
            )
        for queue in self.queues(direction):
            channel.queue_declare(
                queue=queue.name,
                durable=True,
                exclusive=False,
                auto_delete=False,
                arguments=dict(queue.arguments),
            )
        for binding in self.bindings(direction):
            if binding.destination_type == "exchange":
                channel.exchange_bind(
                    destination=binding.destination,
                    source=binding.source,
                    routing_key=binding.routing_key,
                    arguments=dict(binding.arguments) or None,
                )
            else:
                channel.queue_bind(
                    queue=binding.destination,
                    exchange=binding.source,
                    routing_key=binding.routing_key,
                    arguments=dict(binding.arguments) or None,
                )


def _directions(direction: Direction | None) -> Sequence[Direction]:
    return tuple(Direction) if direction is None else (direction,)
