"""Reliable consuming: batches of loaded `TaskChange`s to a handler, named outcomes back, acks
only after the effect is durable.

Threads and connections (after dramatiq's RabbitMQ broker):

* the thread that calls `Consumer.run()` owns one pika `BlockingConnection`: it consumes the
  selected shard queues, keeps heartbeats flowing (`process_data_events` every 0.2 s) however
  long a handler takes, and performs every ack and nack. It reconnects after a broker restart
  with capped, jittered backoff and redeclares this direction's topology.
* `lanes` worker threads each gather what is already buffered under the prefetch into a batch
  (up to `batch_size`, waiting at most `linger` for more, so an idle system handles one message
  at once and a backlog gets batches), call the handler, and schedule the acks back onto the
  connection thread with `add_callback_threadsafe`. Each shard queue belongs to one lane, and
  a shard holds every message of its tasks, so a task's changes are still applied one at a
  time and in order while the lanes overlap one batch's waiting (Salesforce, Sales Connect,
  the ledger) with another's work.
* a `Publisher` (its own connection) sends retries and parked messages with confirms, before
  the original is acked.

Each delivery carries the generation of the channel it came on; an ack for a channel that has
since died is dropped (RabbitMQ redelivers the message and the ledger reports it as already
processed), so a stale delivery tag is never acked on a new channel.

Per batch the ledger (`begin_batch`) filters messages already processed and leases their tasks
to this consumer, so even if two consumers ever received the same task (a network partition
during single-active-consumer failover), only one applies it at a time; the other defers its
message through the first retry tier without spending an attempt.

SIGTERM (or `stop()`) cancels the consumers, lets the batch in hand finish and be acked,
returns everything still buffered to the queue, and exits.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Final

import pika

from bridge.errors import ErrorKind, TaskSyncError, classify
from bridge.ledger import DEFAULT_PROCESSED_RETENTION, Ledger, ProcessedMessage
from bridge.messaging.connection import Backoff, connection_parameters, redact_url
from bridge.messaging.envelope import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ERROR_KIND_HEADER,
    OutboundMessage,
    ReceivedMessage,
    broker_dead_letter_reason,
    describe_briefly,
    load_received,
    shorten,
    task_key,
)
from bridge.messaging.parking import parked_copy, retry_copy
from bridge.messaging.publisher import Publisher, PublishError
from bridge.messaging.retry import Park, RetryLater, RetryNow, RetryPolicy
from bridge.messaging.topology import RETRY_TIER_HEADER, Direction, Topology
from bridge.observability.events import HandledChange, record_batch, record_received
from schemas.errors import ContractError
from schemas.task_change import TaskChange

log = logging.getLogger(__name__)

MAX_BATCH_SIZE: Final = 1000
DEFAULT_BATCH_SIZE: Final = MAX_BATCH_SIZE  # one Salesforce Composite call of 5 collections
DEFAULT_PREFETCH: Final = 2 * DEFAULT_BATCH_SIZE  # the next batch waits while one is applied
DEFAULT_LINGER: Final = 0.002
DEFAULT_LANES: Final = 2
MAX_LANES: Final = 16
PURGE_INTERVAL: Final = 3600.0
_POLL: Final = 0.2


class ConsumerCancelledError(Exception):
    """RabbitMQ cancelled one of our consumers (its queue was deleted)."""


class OutcomeKind(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    ECHO_SKIPPED = "echo-skipped"
    SKIPPED = "skipped"
    FAILED = "failed"
    PARK = "park"

    @property
    def is_done(self) -> bool:
        return self in (
            OutcomeKind.APPLIED,
            OutcomeKind.DUPLICATE,
            OutcomeKind.ECHO_SKIPPED,
            OutcomeKind.SKIPPED,
        )


@dataclass(frozen=True)
class Outcome:
    """What the handler did with one message.

    `APPLIED`, `DUPLICATE`, `ECHO_SKIPPED`, `SKIPPED` (nothing to do: the owner's sync is off,
    the task is out of scope, or every field lost to a newer change): done; the message is
    recorded as processed and acked.
    `FAILED(error)`: the error is classified (`bridge.errors.classify`) and the retry policy
    decides: retry tier, re-authenticate and retry at once, or park. `PARK(reason)`: park now.
    """

    kind: OutcomeKind
    error: BaseException | None = None
    reason: str | None = None

    @classmethod
    def failed(cls, error: BaseException) -> Outcome:
        return cls(OutcomeKind.FAILED, error=error)

    @classmethod
    def park(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.PARK, reason=reason)


APPLIED: Final = Outcome(OutcomeKind.APPLIED)
DUPLICATE: Final = Outcome(OutcomeKind.DUPLICATE)
ECHO_SKIPPED: Final = Outcome(OutcomeKind.ECHO_SKIPPED)
SKIPPED: Final = Outcome(OutcomeKind.SKIPPED)


@dataclass(frozen=True)
class Delivery:
    """One message as a handler sees it: the loaded change and its delivery metadata."""

    change: TaskChange
    task_key: str
    message_id: str
    exchange: str
    routing_key: str
    queue: str
    redelivered: bool
    attempts: int
    first_failed: datetime | None
    last_error: str | None
    published_at: datetime | None
    headers: Mapping[str, Any]


BatchHandler = Callable[[Sequence[Delivery]], Sequence[Outcome]]


@dataclass(frozen=True)
class ConsumerSettings:
    """Where and how a consumer consumes. `shards=None` means every shard of the direction."""

    amqp_url: str
    direction: Direction
    topology: Topology = field(default_factory=Topology)
    shards: tuple[int, ...] | None = None
    prefetch: int = DEFAULT_PREFETCH
    batch_size: int = DEFAULT_BATCH_SIZE
    linger: float = DEFAULT_LINGER
    lanes: int = DEFAULT_LANES
    heartbeat: int = 30
    lease_seconds: float = 30.0
    drain_timeout: float = 60.0
    processed_retention: timedelta = DEFAULT_PROCESSED_RETENTION
    name: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size: must be 1-{MAX_BATCH_SIZE}, not {self.batch_size}")
        if self.prefetch < 1:
            raise ValueError("prefetch: must be at least 1")
        if not 0 <= self.linger <= 1:
            raise ValueError("linger: must be between 0 and 1 second")
        if not 1 <= self.lanes <= MAX_LANES:
            raise ValueError(f"lanes: must be 1-{MAX_LANES}, not {self.lanes}")
        if self.shards is not None:
            for shard in self.shards:
                self.topology.shard_queue(self.direction, shard)

    @property
    def queues(self) -> list[str]:
        return self.topology.shard_queues(self.direction, self.shards)

    @property
    def display_name(self) -> str:
        return self.name or f"tasksync {self.direction.value} worker"


@dataclass
class ConsumerStats:
    """Counters for logs, tests and benchmarks (written by the worker thread only)."""

    batches: int = 0
    handled: int = 0
    applied: int = 0
    duplicates: int = 0
    echoes: int = 0
    skipped: int = 0
    retried: int = 0
    deferred: int = 0
    parked: int = 0
    connections: int = 0


@dataclass(eq=False)
class _Channel:
    """One connection's channel, and the delivery tags received on it but not yet settled."""

    number: int
    connection: Any
    channel: Any
    unsettled: set[int] = field(default_factory=set)
    alive: bool = True


@dataclass(eq=False)
class _Envelope:
    channel: _Channel
    tag: int
    received: ReceivedMessage


@dataclass(eq=False)
class _Item:
    """One envelope on its way through a batch, with what will happen to it."""

    envelope: _Envelope
    delivery: Delivery | None = None
    outbound: OutboundMessage | None = None
    route: str = ""  # "retry", "deferred" or "parked" when `outbound` is set
    done_outcome: OutcomeKind | None = None
    # Already recorded as processed, or a second copy whose twin in the batch decides.
    settled_by_another: bool = False
    reauthenticated: bool = False


class Consumer:
    """Consumes one direction's shard queues and applies batches through `handler`."""

    def __init__(
        self,
        settings: ConsumerSettings,
        handler: BatchHandler,
        ledger: Ledger,
        *,
        retry_policy: RetryPolicy | None = None,
        reauthenticate: Callable[[], None] | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.ledger = ledger
        self.retry_policy = retry_policy or RetryPolicy()
        self.reauthenticate = reauthenticate
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = ConsumerStats()
        self.consuming = threading.Event()
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(
            settings.amqp_url,
            topology=settings.topology,
            name=f"{settings.display_name} retries",
            app_id=settings.display_name,
        )
        self._stop = threading.Event()
        queues = settings.queues
        lanes = max(1, min(settings.lanes, len(queues)))
        self._lane_of = {name: number % lanes for number, name in enumerate(queues)}
        self._inboxes: list[queue.Queue[_Envelope]] = [queue.Queue() for _ in range(lanes)]
        self._current: _Channel | None = None
        self._channels = 0
        self._state_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._draining = False
        self._idle = [threading.Event() for _ in range(lanes)]
        for idle in self._idle:
            idle.set()
        self._in_flight = [threading.Event() for _ in range(lanes)]
        self._renewer_stop = threading.Event()
        self._backoff = Backoff()
        self._last_purge = 0.0

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking messages, finish the batch in hand, return the rest; safe from any
        thread and from a signal handler."""
        self._stop.set()

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Consume until `stop()` or SIGTERM/SIGINT; returns after draining."""
        previous: dict[signal.Signals, Any] = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        workers = [
            threading.Thread(
                target=self._work, args=(lane,), name=f"tasksync batch lane {lane}", daemon=True
            )
            for lane in range(len(self._inboxes))
        ]
        renewer = threading.Thread(target=self._renew_leases, name="tasksync lease", daemon=True)
        for worker in workers:
            worker.start()
        renewer.start()
        try:
            while not self._stop.is_set():
                try:
                    self._serve_one_connection()
                except Exception as exc:
                    if self._stop.is_set():
                        break
                    log.warning(
                        "%s: connection to %s failed or lost (%r); reconnecting",
                        self.settings.display_name,
                        redact_url(self.settings.amqp_url),
                        exc,
                    )
                if not self._stop.is_set():
                    self._backoff.sleep(self._stop)
        finally:
            self._stop.set()
            with self._state_lock:
                self._draining = True
            deadline = time.monotonic() + self.settings.drain_timeout
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            self._renewer_stop.set()
            renewer.join(1.0)
            self._requeue_inbox()
            try:
                self.ledger.release_leases(self.holder)
            except Exception:
                log.exception("could not release task leases of %s", self.holder)
            if self._own_publisher:
                self._publisher.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s: signal %d, draining", self.settings.display_name, signum)
        self.stop()

    # -- connection thread ---------------------------------------------------------------------

    def _serve_one_connection(self) -> None:
        params = connection_parameters(
            self.settings.amqp_url,
            name=self.settings.display_name,
            heartbeat=self.settings.heartbeat,
        )
        connection = pika.BlockingConnection(params)
        current: _Channel | None = None
        try:
            channel = connection.channel()
            self.settings.topology.declare(channel, self.settings.direction)
            channel.basic_qos(prefetch_count=self.settings.prefetch)
            self._channels += 1
            current = _Channel(self._channels, connection, channel)
            self._current = current
            tags = [
                channel.basic_consume(
                    queue=queue_name,
                    on_message_callback=functools.partial(self._on_message, current, queue_name),
                    auto_ack=False,
                    consumer_tag=f"{self.settings.display_name} {self.holder} {queue_name}",
                )
                for queue_name in self.settings.queues
            ]
            cancelled: list[str] = []
            # RabbitMQ cancels a consumer whose queue was deleted: start over and redeclare.
            channel.add_on_cancel_callback(
                lambda frame: cancelled.append(frame.method.consumer_tag)
            )
            self.stats.connections += 1
            self._backoff.reset()
            self.consuming.set()
            log.info("%s consuming %s", self.settings.display_name, ", ".join(self.settings.queues))
            while not self._stop.is_set():
                connection.process_data_events(time_limit=_POLL)
                if cancelled:
                    raise ConsumerCancelledError(f"RabbitMQ cancelled {', '.join(cancelled)}")
            self._drain(current, tags)
        finally:
            self.consuming.clear()
            if current is not None:
                current.alive = False
            if self._current is current:
                self._current = None
            if connection.is_open:
                try:
                    connection.close()
                except Exception:
                    log.debug("closing the connection failed", exc_info=True)

    def _on_message(
        self,
        current: _Channel,
        queue_name: str,
        _channel: Any,
        method: Any,
        properties: Any,
        body: bytes,
    ) -> None:
        current.unsettled.add(method.delivery_tag)
        received = ReceivedMessage(
            exchange=method.exchange,
            routing_key=method.routing_key,
            body=body,
            properties=properties,
            redelivered=bool(method.redelivered),
            queue=queue_name,
        )
        self._inboxes[self._lane_of[queue_name]].put(
            _Envelope(current, method.delivery_tag, received)
        )

    def _drain(self, current: _Channel, consumer_tags: list[str]) -> None:
        """Stop deliveries, let the batch in hand finish and be acked, return the rest."""
        for tag in consumer_tags:
            current.channel.basic_cancel(tag)
        with self._state_lock:
            self._draining = True
        deadline = time.monotonic() + self.settings.drain_timeout
        while not all(idle.is_set() for idle in self._idle) and time.monotonic() < deadline:
            current.connection.process_data_events(time_limit=_POLL)
        self._requeue_inbox()
        # Let the acks and nacks scheduled above go out before the connection closes.
        current.connection.process_data_events(time_limit=0)

    def _requeue_inbox(self) -> None:
        for inbox in self._inboxes:
            while True:
                try:
                    envelope = inbox.get_nowait()
                except queue.Empty:
                    break
                self._schedule_settle(envelope.channel, acks=[], requeues=[envelope.tag])

    def _schedule_settle(self, current: _Channel, *, acks: list[int], requeues: list[int]) -> None:
        if not current.alive:
            return
        try:
            current.connection.add_callback_threadsafe(
                functools.partial(self._settle, current, acks, requeues)
            )
        except Exception:
            log.debug("channel %d is gone; RabbitMQ will redeliver", current.number)

    def _settle(self, current: _Channel, acks: list[int], requeues: list[int]) -> None:
        """Runs on the connection thread. Never touches a tag of a channel that has died."""
        if not current.alive or current is not self._current:
            return
        channel = current.channel
        try:
            known = sorted(tag for tag in acks if tag in current.unsettled)
            if known:
                highest = known[-1]
                covered = {tag for tag in current.unsettled if tag <= highest}
                if covered == set(known):
                    channel.basic_ack(delivery_tag=highest, multiple=True)
                else:
                    for tag in known:
                        channel.basic_ack(delivery_tag=tag)
                current.unsettled.difference_update(known)
            for tag in requeues:
                if tag in current.unsettled:
                    channel.basic_nack(delivery_tag=tag, requeue=True)
                    current.unsettled.discard(tag)
        except Exception:
            log.warning("settling on channel %d failed; RabbitMQ will redeliver", current.number)

    # -- worker thread ----------------------------------------------------------------------------

    def _work(self, lane: int) -> None:
        idle = self._idle[lane]
        while True:
            envelopes = self._gather(self._inboxes[lane])
            with self._state_lock:
                if self._draining or self._stop.is_set():
                    for envelope in envelopes:
                        self._schedule_settle(envelope.channel, acks=[], requeues=[envelope.tag])
                    return
                if envelopes:
                    idle.clear()
            if not envelopes:
                if lane == 0:
                    self._purge_old_processed()
                continue
            try:
                self._process([e for e in envelopes if e.channel.alive], lane)
            except Exception:
                log.exception("batch failed unexpectedly; its messages will be redelivered")
                for envelope in envelopes:
                    self._schedule_settle(envelope.channel, acks=[], requeues=[envelope.tag])
            finally:
                idle.set()

    def _gather(self, inbox: queue.Queue[_Envelope]) -> list[_Envelope]:
        try:
            batch = [inbox.get(timeout=_POLL)]
        except queue.Empty:
            return []
        size, linger = self.settings.batch_size, self.settings.linger
        deadline: float | None = None
        while len(batch) < size:
            try:
                batch.append(inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            if linger <= 0:
                break
            if deadline is None:
                deadline = time.monotonic() + linger
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _process(self, envelopes: list[_Envelope], lane: int = 0) -> None:
        if not envelopes:
            return
        started = time.monotonic()
        record_received(self.settings.direction.value, len(envelopes))
        now = datetime.now(UTC)
        items = [self._load(envelope, now) for envelope in envelopes]
        loaded = [item for item in items if item.delivery is not None]
        leased: frozenset[str] = frozenset()
        if loaded:
            claim = self._with_ledger(
                lambda: self.ledger.begin_batch(
                    holder=self.holder,
                    messages=[
                        (i.delivery.message_id, i.delivery.task_key) for i in loaded if i.delivery
                    ],
                    lease_seconds=self.settings.lease_seconds,
                )
            )
            if claim is None:
                self._requeue(items)
                return
            leased = claim.leased
            to_handle: list[_Item] = []
            in_batch: set[str] = set()
            for item in loaded:
                delivery = item.delivery
                assert delivery is not None
                if (
                    delivery.message_id in claim.already_processed
                    or delivery.message_id in in_batch
                ):
                    # A copy published twice (a producer retrying after a lost confirm) may
                    # arrive in the same batch as the first one.
                    item.done_outcome = OutcomeKind.DUPLICATE
                    item.settled_by_another = True
                    continue
                in_batch.add(delivery.message_id)
                if delivery.task_key in claim.held_elsewhere:
                    self._defer(item, now)
                else:
                    to_handle.append(item)
            self._in_flight[lane].set()
            try:
                self._handle(to_handle, now)
            finally:
                self._in_flight[lane].clear()
            processed = [
                ProcessedMessage(
                    message_id=item.delivery.message_id,
                    task_key=item.delivery.task_key,
                    outcome=item.done_outcome.value,
                    consumer=self.settings.direction.value,
                )
                for item in loaded
                if item.delivery is not None
                and item.done_outcome is not None
                and not item.settled_by_another
            ]

            def finish() -> bool:
                self.ledger.finish_batch(holder=self.holder, processed=processed, release=leased)
                return True

            if self._with_ledger(finish) is None:
                self._requeue(items)
                return
        if not self._publish_onward(items):
            return
        self._count(items, started)
        by_channel: dict[int, tuple[_Channel, list[int]]] = {}
        for item in items:
            envelope = item.envelope
            by_channel.setdefault(envelope.channel.number, (envelope.channel, []))[1].append(
                envelope.tag
            )
        for current, tags in by_channel.values():
            self._schedule_settle(current, acks=tags, requeues=[])

    def _load(self, envelope: _Envelope, now: datetime) -> _Item:
        received = envelope.received
        item = _Item(envelope)
        try:
            change = load_received(received, self.settings.direction)
        except Exception as exc:
            # A ContractError names the fields and rules; anything else (a reader bug) is
            # parked too: the same bytes would fail the same way on every redelivery.
            detail = (
                describe_briefly(exc)
                if isinstance(exc, ContractError)
                else f"unreadable: {type(exc).__name__}: {shorten(str(exc), 300)}"
            )
            reason = f"malformed message: {detail}"
            log.warning("parking %s from %s: %s", received.message_id, received.queue, reason)
            item.outbound = parked_copy(
                received,
                error=reason,
                kind=ErrorKind.MALFORMED,
                attempts=received.attempts + 1,
                now=now,
            )
            item.route = "parked"
            return item
        published = getattr(received.properties, "timestamp", None)
        item.delivery = Delivery(
            change=change,
            task_key=task_key(change),
            message_id=str(change.message_id),
            exchange=received.exchange,
            routing_key=received.routing_key,
            queue=received.queue,
            redelivered=received.redelivered,
            attempts=received.attempts,
            first_failed=received.first_failed,
            last_error=received.last_error or broker_dead_letter_reason(received.headers),
            published_at=datetime.fromtimestamp(published, UTC)
            if isinstance(published, int)
            else None,
            headers=received.headers,
        )
        return item

    def _handle(self, items: list[_Item], now: datetime) -> None:
        pending = items
        while pending:
            outcomes = self._call_handler([item.delivery for item in pending if item.delivery])
            again: list[_Item] = []
            for item, outcome in zip(pending, outcomes, strict=True):
                if self._resolve(item, outcome, now):
                    again.append(item)
            if again and self.reauthenticate is not None:
                log.info("session expired; re-authenticating and retrying %d at once", len(again))
                try:
                    self.reauthenticate()
                except Exception as exc:
                    log.warning("re-authentication failed: %r", exc)
            pending = again

    def _call_handler(self, deliveries: list[Delivery]) -> Sequence[Outcome]:
        try:
            outcomes = list(self.handler(deliveries))
        except Exception as exc:
            log.warning("handler raised for %d messages: %r", len(deliveries), exc, exc_info=True)
            return [Outcome.failed(exc)] * len(deliveries)
        if len(outcomes) != len(deliveries):
            error = TaskSyncError(
                ErrorKind.TRANSIENT,
                "HANDLER_CONTRACT",
                f"handler returned {len(outcomes)} outcomes for {len(deliveries)} messages",
            )
            log.error("%s", error)
            return [Outcome.failed(error)] * len(deliveries)
        return outcomes

    def _resolve(self, item: _Item, outcome: Outcome, now: datetime) -> bool:
        """Record what happens to one message; True when it must be handled again at once."""
        delivery = item.delivery
        assert delivery is not None
        received = item.envelope.received
        if outcome.kind.is_done:
            item.done_outcome = outcome.kind
            return False
        if outcome.kind is OutcomeKind.PARK:
            reason = outcome.reason or "parked by the handler"
            self._park(item, reason, ErrorKind.PERMANENT, delivery.attempts + 1, now)
            return False
        error = outcome.error or TaskSyncError(ErrorKind.TRANSIENT, "FAILED", "no error given")
        failure = classify(error)
        decision = self.retry_policy.decide(
            failure,
            delivery.attempts,
            self.settings.topology.retry_tiers,
            reauthenticated=item.reauthenticated or self.reauthenticate is None,
        )
        if isinstance(decision, RetryNow):
            item.reauthenticated = True
            return True
        if isinstance(decision, Park):
            self._park(item, decision.reason, failure.kind, decision.attempts, now)
            return False
        assert isinstance(decision, RetryLater)
        log.info(
            "retrying %s (task %s) in %s: %s",
            delivery.message_id,
            delivery.task_key,
            decision.tier.label,
            failure.describe(),
        )
        item.outbound = retry_copy(
            received,
            self.settings.topology,
            self.settings.direction,
            decision.tier,
            error=failure.describe(),
            kind=failure.kind,
            task_key=delivery.task_key,
            attempts=decision.attempts,
            now=now,
        )
        item.route = "retry"
        return False

    def _park(
        self, item: _Item, reason: str, kind: ErrorKind, attempts: int, now: datetime
    ) -> None:
        received = item.envelope.received
        log.warning(
            "parking %s from %s after %d attempts: %s",
            received.message_id,
            received.queue,
            attempts,
            reason,
        )
        item.outbound = parked_copy(received, error=reason, kind=kind, attempts=attempts, now=now)
        item.route = "parked"

    def _defer(self, item: _Item, now: datetime) -> None:
        delivery = item.delivery
        assert delivery is not None
        item.outbound = retry_copy(
            item.envelope.received,
            self.settings.topology,
            self.settings.direction,
            self.settings.topology.retry_tiers[0],
            error=f"task {delivery.task_key} is being applied by another consumer",
            kind=ErrorKind.RATE_LIMITED,
            task_key=delivery.task_key,
            attempts=delivery.attempts,
            now=now,
        )
        item.route = "deferred"

    def _publish_onward(self, items: list[_Item]) -> bool:
        """Publish retries and parked copies (confirmed) before their originals are acked."""
        outbound = [item.outbound for item in items if item.outbound is not None]
        backoff = Backoff(initial=0.2, cap=5.0)
        while outbound:
            try:
                self._publisher.publish_messages(outbound)
                return True
            except PublishError as exc:
                log.warning("could not publish %d retries/parked messages: %s", len(outbound), exc)
            alive = any(item.envelope.channel.alive for item in items)
            if self._stop.is_set() or not alive or backoff.sleep(self._stop):
                self._requeue(items)
                return False
        return True

    def _requeue(self, items: list[_Item]) -> None:
        for item in items:
            self._schedule_settle(item.envelope.channel, acks=[], requeues=[item.envelope.tag])

    def _with_ledger(self, call: Callable[[], Any]) -> Any:
        """Run a ledger call, retrying while the database is unreachable; None if stopped."""
        backoff = Backoff(initial=0.2, cap=10.0)
        while True:
            try:
                return call()
            except Exception as exc:
                log.warning("ledger unavailable: %r", exc)
            if backoff.sleep(self._stop):
                return None

    def _count(self, items: list[_Item], started: float) -> None:
        with self._stats_lock:
            self._count_locked(items)
        record_batch(
            self.settings.direction.value,
            [_handled(item) for item in items],
            time.monotonic() - started,
        )

    def _count_locked(self, items: list[_Item]) -> None:
        stats = self.stats
        stats.batches += 1
        for item in items:
            stats.handled += 1
            outcome = item.done_outcome
            if outcome is OutcomeKind.APPLIED:
                stats.applied += 1
            elif outcome is OutcomeKind.DUPLICATE:
                stats.duplicates += 1
            elif outcome is OutcomeKind.ECHO_SKIPPED:
                stats.echoes += 1
            elif outcome is OutcomeKind.SKIPPED:
                stats.skipped += 1
            elif item.route == "retry":
                stats.retried += 1
            elif item.route == "deferred":
                stats.deferred += 1
            elif item.route == "parked":
                stats.parked += 1

    def _renew_leases(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        while not self._renewer_stop.wait(interval):
            if any(in_flight.is_set() for in_flight in self._in_flight):
                try:
                    self.ledger.renew_leases(self.holder, self.settings.lease_seconds)
                except Exception as exc:
                    log.warning("could not renew task leases: %r", exc)

    def _purge_old_processed(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_INTERVAL:
            return
        self._last_purge = time.monotonic()
        try:
            before = datetime.now(UTC) - self.settings.processed_retention
            removed = self.ledger.forget_processed(before)
            if removed:
                log.info("forgot %d processed message ids older than %s", removed, before)
        except Exception as exc:
            log.warning("could not purge old processed message ids: %r", exc)


_ROUTE_OUTCOMES: Final = {"retry": "retried", "deferred": "deferred", "parked": "parked"}


def _handled(item: _Item) -> HandledChange:
    """One settled message as the metrics and the change log see it."""
    received = item.envelope.received
    delivery = item.delivery
    outbound = item.outbound
    headers = outbound.headers if outbound is not None else {}
    error = headers.get(ERROR_HEADER)
    change = delivery.change if delivery is not None else None
    return HandledChange(
        message_id=delivery.message_id if delivery is not None else received.message_id,
        outcome=(
            item.done_outcome.value
            if item.done_outcome is not None
            else _ROUTE_OUTCOMES.get(item.route, item.route or "unknown")
        ),
        task_key=delivery.task_key if delivery is not None else None,
        salesconnect_task_id=change.record.salesconnect_task_id if change else None,
        salesforce_task_id=change.record.salesforce_task_id if change else None,
        op=change.op.value if change else None,
        occurred_at=change.occurred_at if change else None,
        attempts=int(headers.get(ATTEMPTS_HEADER) or (delivery.attempts if delivery else 0)),
        tier=headers.get(RETRY_TIER_HEADER) if item.route in ("retry", "deferred") else None,
        error_kind=headers.get(ERROR_KIND_HEADER),
        error=str(error) if error is not None else None,
    )
