"""Every Prometheus metric a tasksync process exposes, and the labels that tell processes apart.

The metrics live in prometheus-client's default registry: one process, one set, whatever part
of the bridge it runs. What a process serves is `process_registry(labels)`: the same samples
with the process's own labels added (`component`, `shards` for workers, `process` =
`<host>:<metrics port>`), so the series of several processes on one machine never collide and
`sum by (direction, outcome) (rate(tasksync_changes_total[5m]))` adds them up. Each process
serves its own `/metrics` on its own port; these are separate processes, not forked workers of
one server, so prometheus-client's multiprocess mode is not needed.

Counters count events of this process since it started (Prometheus' `rate` and `increase`
handle restarts). Gauges about state every process sees alike (the ledger's rows, the org's
daily API allowance) repeat in every process: aggregate them with `max`, never `sum`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# `_created` series double every counter's lines and say little that a restart does not.
disable_created_metrics()  # type: ignore[no-untyped-call]


class KnownOnlyGauge(Collector):
    """A gauge that is absent until first set: a process that never saw the value must not
    report 0 (an allowance of 0 left would page someone)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._value: float | None = None

    def set(self, value: float) -> None:
        self._value = value

    def set_to_current_time(self) -> None:
        self._value = time.time()

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        if self._value is None:
            return []
        return [GaugeMetricFamily(self.name, self.documentation, value=self._value)]


def _known_only(name: str, documentation: str) -> KnownOnlyGauge:
    gauge = KnownOnlyGauge(name, documentation)
    REGISTRY.register(gauge)
    return gauge


# -- workers (bridge.messaging.consumer) ------------------------------------------------------

CHANGES_RECEIVED: Final = Counter(
    "tasksync_changes_received_total",
    "Messages a worker took from its shard queues into a batch.",
    ["direction"],
)
CHANGES: Final = Counter(
    "tasksync_changes_total",
    "Messages a worker finished with, by outcome: applied, duplicate (already processed), "
    "echo-skipped, skipped (sync off, out of scope, or every field stale), retried, deferred "
    "(task leased by another consumer), parked.",
    ["direction", "outcome"],
)
RETRIES: Final = Counter(
    "tasksync_change_retries_total",
    "Messages sent to a retry tier, by tier and error kind (deferred ones included).",
    ["direction", "tier", "kind"],
)
PARKED: Final = Counter(
    "tasksync_changes_parked_total",
    "Messages a worker parked in tasksync.parked, by error kind.",
    ["direction", "kind"],
)
BATCH_DURATION: Final = Histogram(
    "tasksync_batch_duration_seconds",
    "Time a worker spent on one batch: ledger, handler (the remote writes), retries published.",
    ["direction"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SYNC_DELAY: Final = Histogram(
    "tasksync_sync_delay_seconds",
    "From a change at its source (occurred_at) until a worker applied it to the other side.",
    ["direction"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600),
)

# -- producers and the ingress (bridge.producers, bridge.ingress) -----------------------------

PUBLISHED: Final = Counter(
    "tasksync_producer_messages_published_total",
    "Task changes a producer or the ingress published and RabbitMQ confirmed, by origin and op.",
    ["origin", "op"],
)
PRODUCER_SKIPPED: Final = Counter(
    "tasksync_producer_changes_skipped_total",
    "Changes a producer saw and did not publish, by reason: echo (the bridge's own write), "
    "sync_off, not_connected, existed_before_sync, unchanged (values equal to the known ones).",
    ["origin", "reason"],
)
PRODUCER_CYCLES: Final = Counter(
    "tasksync_producer_cycles_total",
    "Polls (Salesforce) or feed reads (Sales Connect), by outcome: ok or failed.",
    ["outcome"],
)
PRODUCER_LAST_SUCCESS: Final = _known_only(
    "tasksync_producer_last_success_timestamp_seconds",
    "When this producer last completed a poll or feed read (Unix time).",
)
INGRESS_REQUESTS: Final = Counter(
    "tasksync_ingress_requests_total",
    "Notification requests the ingress answered, by HTTP status.",
    ["status"],
)
INGRESS_NOTIFICATIONS: Final = Counter(
    "tasksync_ingress_notifications_total",
    "Task notifications in the signed batches the ingress handled.",
)
INGRESS_RATE_LIMITED: Final = Counter(
    "tasksync_ingress_rate_limited_total",
    "Notification requests the ingress refused with 429, by the limit hit: address or org.",
    ["scope"],
)

# -- Salesforce (bridge.salesforce.session's HTTP adapter) ------------------------------------

SALESFORCE_REQUESTS: Final = Counter(
    "tasksync_salesforce_requests_total",
    "HTTP requests to Salesforce, by resource, method and status (error: no answer).",
    ["resource", "method", "status"],
)
SALESFORCE_DURATION: Final = Histogram(
    "tasksync_salesforce_request_duration_seconds",
    "Latency of HTTP requests to Salesforce, by resource and method.",
    ["resource", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SALESFORCE_API_USED: Final = _known_only(
    "tasksync_salesforce_daily_api_requests_used",
    "API requests the org used in the last 24 hours (Sforce-Limit-Info), as last seen.",
)
SALESFORCE_API_LIMIT: Final = _known_only(
    "tasksync_salesforce_daily_api_requests_limit",
    "The org's daily API request allowance (Sforce-Limit-Info), as last seen.",
)
SALESFORCE_API_REMAINING: Final = _known_only(
    "tasksync_salesforce_daily_api_requests_remaining",
    "API requests left of the org's daily allowance (limit minus used), as last seen.",
)

BUILD_INFO: Final = Gauge("tasksync_build_info", "The running tasksync version.", ["version"])


# -- gauges computed when scraped ---------------------------------------------------------------


class CursorPositions(Collector):
    """Where this process's producer cursors stand; the lag is computed when scraped, so an
    idle producer's lag grows visibly rather than freezing at its last value."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._positions: dict[str, float] = {}

    def record(self, cursor: str, position_at: datetime) -> None:
        with self._lock:
            self._positions[cursor] = position_at.timestamp()

    def forget(self) -> None:
        with self._lock:
            self._positions.clear()

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            positions = dict(self._positions)
        return self._families(positions)

    def _families(self, positions: Mapping[str, float]) -> list[Metric]:
        now = self._clock()
        stamp = GaugeMetricFamily(
            "tasksync_producer_cursor_timestamp_seconds",
            "The source time this producer's cursor stands for (Unix time).",
            labels=["cursor"],
        )
        lag = GaugeMetricFamily(
            "tasksync_producer_lag_seconds",
            "How far behind its source this producer's cursor is: now minus its position.",
            labels=["cursor"],
        )
        for name, at in sorted(positions.items()):
            stamp.add_metric([name], at)
            lag.add_metric([name], max(0.0, now - at))
        return [stamp, lag]


CURSORS: Final = CursorPositions()
REGISTRY.register(CURSORS)

DEFAULT_LEDGER_REFRESH_SECONDS: Final = 60.0


class LedgerSizes(Collector):
    """Rows per ledger table (`Ledger.sizes()`), read at most every `max_age` seconds so a
    scrape stays cheap however often it comes."""

    def __init__(
        self,
        sizes: Callable[[], Mapping[str, int]],
        *,
        max_age: float = DEFAULT_LEDGER_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sizes = sizes
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, int] = {}
        self._read_at: float | None = None

    def describe(self) -> Iterable[Metric]:
        return [self._family({})]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._max_age:
                try:
                    self._cached = dict(self._sizes())
                except Exception as exc:  # a scrape must answer even when the ledger does not
                    log.warning("could not count the ledger's rows: %r", exc)
                self._read_at = now
            cached = dict(self._cached)
        return [self._family(cached)]

    @staticmethod
    def _family(sizes: Mapping[str, int]) -> Metric:
        family = GaugeMetricFamily(
            "tasksync_ledger_rows",
            "Rows per ledger table (shared by every process using the ledger: use max).",
            labels=["table"],
        )
        for table, rows in sorted(sizes.items()):
            family.add_metric([table], rows)
        return family


_watched_ledger: LedgerSizes | None = None


def watch_ledger(
    sizes: Callable[[], Mapping[str, int]], *, max_age: float = DEFAULT_LEDGER_REFRESH_SECONDS
) -> LedgerSizes:
    """Expose the rows of this process's ledger (one ledger per process; a second call
    replaces the first)."""
    global _watched_ledger  # noqa: PLW0603 - one ledger gauge per process registry
    collector = LedgerSizes(sizes, max_age=max_age)
    if _watched_ledger is not None:
        REGISTRY.unregister(_watched_ledger)
    REGISTRY.register(collector)
    _watched_ledger = collector
    return collector


# -- what a process serves ------------------------------------------------------------------


class ProcessLabelled(Collector):
    """Another registry's samples with this process's labels added to each."""

    def __init__(self, source: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self.source = source
        self.labels = dict(labels)

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample._replace(labels={**self.labels, **sample.labels})
                for sample in family.samples
            ]
            yield labelled


def process_registry(
    labels: Mapping[str, str], source: CollectorRegistry = REGISTRY
) -> CollectorRegistry:
    """What `/metrics` serves: every metric of this process, each sample carrying `labels`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessLabelled(source, labels))
    return registry


def format_shards(shards: Iterable[int] | None) -> str:
    """A shard selection as the `shards` label shows it: `all`, `0-1`, `0,2`, `1-2,5`."""
    if shards is None:
        return "all"
    ordered = sorted(set(shards))
    parts: list[str] = []
    start = previous = None
    for shard in [*ordered, None]:
        if shard is not None and previous is not None and shard == previous + 1:
            previous = shard
            continue
        if start is not None and previous is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = shard
    return ",".join(parts)
