"""Confirmed publishing: `Publisher.publish_many(changes)` returns only when RabbitMQ has every
message, and raises `PublishError` naming each one it does not have.

pika's `BlockingChannel` waits for each confirm before the next publish, one broker round trip
per message. This publisher runs a pika `SelectConnection` in its own I/O thread instead and
keeps up to `window` messages unconfirmed at once: publishes are pipelined, confirms (often
`multiple`) settle them as they arrive. Every message is `mandatory` and persistent: a nack, an
unroutable return (`basic.return` arrives before its ack) or a connection lost before the
confirm fails that message, and the caller retries; nothing is dropped silently.

Callers in any thread may share one publisher. It connects on first use and again on the next
call after a connection was lost.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pika import SelectConnection, spec
from pika.adapters.select_connection import IOLoop

from bridge.messaging.connection import connection_parameters, redact_url
from bridge.messaging.envelope import OutboundMessage, envelope_for
from bridge.messaging.topology import Topology
from schemas.task_change import TaskChange

log = logging.getLogger(__name__)

DEFAULT_WINDOW: Final = 2000
DEFAULT_CONFIRM_TIMEOUT: Final = 30.0


class PublishError(Exception):
    """Some messages were not confirmed; `failures` maps each message id to why."""

    def __init__(self, failures: Mapping[str, str], total: int) -> None:
        self.failures = dict(failures)
        self.total = total
        sample = "; ".join(f"{mid}: {why}" for mid, why in list(self.failures.items())[:3])
        more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
        super().__init__(
            f"{len(self.failures)} of {total} messages not confirmed by RabbitMQ: {sample}{more}"
        )


class PublishTimeoutError(PublishError):
    pass


@dataclass(eq=False)
class _Batch:
    total: int
    remaining: int
    done: threading.Event = field(default_factory=threading.Event)
    failures: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False


@dataclass(eq=False)
class _Entry:
    batch: _Batch
    message: OutboundMessage
    returned: str | None = None


class Publisher:
    """Publishes `TaskChange`s (or prepared `OutboundMessage`s) with pipelined confirms."""

    def __init__(
        self,
        amqp_url: str,
        *,
        topology: Topology | None = None,
        name: str = "tasksync publisher",
        app_id: str = "tasksync",
        window: int = DEFAULT_WINDOW,
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
        heartbeat: int | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window: must be at least 1")
        self.amqp_url = amqp_url
        self.topology = topology or Topology()
        self.name = name
        self.app_id = app_id
        self.window = window
        self.confirm_timeout = confirm_timeout
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ioloop: Any = None
        self._closed = False
        # Owned by the I/O thread from here on.
        self._connection: Any = None
        self._channel: Any = None
        self._state = "disconnected"  # disconnected | connecting | ready | closing
        self._waiting: collections.deque[_Entry] = collections.deque()
        self._in_flight: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self._next_tag = 0

    # -- public API ----------------------------------------------------------------------------

    def publish_many(self, changes: Sequence[TaskChange], *, timeout: float | None = None) -> None:
        """Publish each change onto its origin's exchange; return when all are confirmed."""
        self.publish_messages(
            [envelope_for(change, self.topology, app_id=self.app_id) for change in changes],
            timeout=timeout,
        )

    def publish(self, change: TaskChange, *, timeout: float | None = None) -> None:
        self.publish_many([change], timeout=timeout)

    def publish_messages(
        self, messages: Sequence[OutboundMessage], *, timeout: float | None = None
    ) -> None:
        """Publish prepared messages in order; return when all are confirmed, else raise."""
        if not messages:
            return
        batch = _Batch(total=len(messages), remaining=len(messages))
        entries = [_Entry(batch, message) for message in messages]
        self._call_in_io_thread(lambda: self._submit(entries))
        wait = self.confirm_timeout if timeout is None else timeout
        if not batch.done.wait(wait):
            with batch.lock:
                batch.abandoned = True
                failures = dict(batch.failures)
            missing = {
                e.message.message_id: f"no confirm within {wait:g} s"
                for e in entries
                if e.message.message_id not in failures
            }
            raise PublishTimeoutError({**failures, **missing}, batch.total)
        if batch.failures:
            raise PublishError(batch.failures, batch.total)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, ioloop = self._thread, self._ioloop
        if thread is None:
            return
        ioloop.add_callback_threadsafe(self._shutdown)
        thread.join(timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- I/O thread ----------------------------------------------------------------------------

    def _call_in_io_thread(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("publisher is closed")
            if self._thread is None:
                self._ioloop = IOLoop()
                self._thread = threading.Thread(
                    target=self._ioloop.start, name=f"{self.name} I/O", daemon=True
                )
                self._thread.start()
            ioloop = self._ioloop
        ioloop.add_callback_threadsafe(callback)

    def _submit(self, entries: list[_Entry]) -> None:
        if self._state == "closing":
            for entry in entries:
                self._settle(entry, "publisher is closing")
            return
        self._waiting.extend(entries)
        if self._state == "disconnected":
            self._connect()
        elif self._state == "ready":
            self._pump()

    def _connect(self) -> None:
        self._state = "connecting"
        try:
            self._connection = SelectConnection(
                connection_parameters(self.amqp_url, name=self.name, heartbeat=self._heartbeat),
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_open_error,
                on_close_callback=self._on_connection_closed,
                custom_ioloop=self._ioloop,
            )
        except Exception as exc:
            self._on_connection_open_error(None, exc)

    def _on_connection_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_open_error(self, connection: Any, error: BaseException) -> None:
        if connection is not None and connection is not self._connection:
            return
        if self._state == "closing":
            self._ioloop.stop()
            return
        reason = f"cannot connect to {redact_url(self.amqp_url)}: {error!r}"
        log.warning("%s: %s", self.name, reason)
        self._lose_connection(reason)

    def _on_connection_closed(self, connection: Any, error: BaseException) -> None:
        if connection is not self._connection:
            return  # an earlier connection finishing its close after we reconnected
        if self._state == "closing":
            self._ioloop.stop()
            return
        self._lose_connection(f"connection lost before confirm: {error!r}")

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        self._next_tag = 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: Any) -> None:
        self._state = "ready"
        self._pump()

    def _on_channel_closed(self, channel: Any, error: BaseException) -> None:
        if self._state == "closing" or channel is not self._channel:
            return
        # A channel error (e.g. publishing to a missing exchange) closes only the channel; the
        # connection is closed too so the next call starts clean.
        self._lose_connection(f"channel closed before confirm: {error!r}")
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()

    def _lose_connection(self, reason: str) -> None:
        self._state = "disconnected"
        self._channel = None
        in_flight, self._in_flight = self._in_flight, collections.OrderedDict()
        waiting, self._waiting = self._waiting, collections.deque()
        for entry in [*in_flight.values(), *waiting]:
            self._settle(entry, reason)

    def _pump(self) -> None:
        channel = self._channel
        while self._waiting and len(self._in_flight) < self.window and self._state == "ready":
            entry = self._waiting.popleft()
            if entry.batch.abandoned:
                self._settle(entry, "abandoned by caller")
                continue
            message = entry.message
            try:
                channel.basic_publish(
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    body=message.body,
                    properties=message.properties(),
                    mandatory=True,
                )
            except Exception as exc:
                self._settle(entry, f"publish failed: {exc!r}")
                continue
            self._next_tag += 1
            self._in_flight[self._next_tag] = entry

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        message_id = getattr(properties, "message_id", None)
        for entry in self._in_flight.values():
            if entry.returned is None and entry.message.message_id == message_id:
                entry.returned = (
                    f"unroutable ({method.reply_code} {method.reply_text}) "
                    f"from exchange {method.exchange!r} with routing key {method.routing_key!r}"
                )
                return

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, spec.Basic.Ack)
        tag = method.delivery_tag
        settled: list[_Entry] = []
        if method.multiple:
            while self._in_flight:
                first = next(iter(self._in_flight))
                if first > tag:
                    break
                settled.append(self._in_flight.popitem(last=False)[1])
        else:
            entry = self._in_flight.pop(tag, None)
            if entry is not None:
                settled.append(entry)
        for entry in settled:
            if not acked:
                self._settle(entry, "nacked by RabbitMQ")
            else:
                self._settle(entry, entry.returned)
        self._pump()

    @staticmethod
    def _settle(entry: _Entry, failure: str | None) -> None:
        batch = entry.batch
        with batch.lock:
            if failure is not None:
                batch.failures[entry.message.message_id] = failure
            batch.remaining -= 1
            if batch.remaining <= 0:
                batch.done.set()

    def _shutdown(self) -> None:
        self._lose_connection("publisher closed")
        connection = self._connection
        if connection is not None and not (connection.is_closed or connection.is_closing):
            self._state = "closing"
            connection.close()
        else:
            self._state = "closing"
            self._ioloop.stop()
