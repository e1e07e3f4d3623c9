"""What the ingress does with one POSTed notification batch, apart from HTTP.

0. Refuse a source over its rate limit (429 with Retry-After; see `ratelimit`): per client
   address before anything is read, per org once the signature checked out.
1. Check the signature and the timestamp window (`schemas.notification.verify_notification`,
   several secrets for rotation): a bad or stale one is refused (401) and nothing is read.
2. Load the body (`load_notification_batch`): a malformed one is refused (400), also one
   nested too deeply or holding a number too long for Python's JSON reader.
3. Read the current values of every notified Task of a synced owner in ONE `queryAll` (deleted
   Tasks come too): a notification says only which Tasks changed, never what they hold, so a
   forged or late body cannot carry values.
4. Turn the rows into messages (`SalesforceTaskObserver`, exactly as the poller does, so one
   modification gets one message id), publish them with confirms, remember them as known, and
   only then accept (2xx). If Salesforce, Sales Connect or RabbitMQ fails, answer 503 and the
   package sends the batch again.

A batch accepted once and delivered again with the same signature (its answer was lost) is
accepted again without any work: the signatures accepted within the timestamp window are kept
in memory. That cache is per process; with several ingress processes a repeated delivery is
merely processed again, which publishes nothing new.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bridge.ingress.ratelimit import RateLimit, Refusal, TokenBuckets
from bridge.messaging import Publisher, PublishError
from bridge.observability.events import (
    record_ingress_rate_limited,
    record_notifications,
    record_published,
)
from bridge.producers.observer import SalesforceTaskObserver
from bridge.producers.running import describe_failure
from bridge.salesforce.tasks import SalesforceTaskGateway
from bridge.sync.directory import SyncUserDirectory
from schemas.errors import ContractError
from schemas.notification import (
    DEFAULT_TIMESTAMP_WINDOW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationBatch,
    SignatureError,
    load_notification_batch,
    verify_notification,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
DEFAULT_PUBLISH_TIMEOUT: Final = 8.0
RETRY_AFTER_SECONDS: Final = 5


@dataclass(frozen=True)
class IngressSettings:
    secrets: tuple[str, ...]
    timestamp_window_seconds: int = DEFAULT_TIMESTAMP_WINDOW_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT
    rate_limit: RateLimit = field(default_factory=RateLimit)

    def __post_init__(self) -> None:
        if not self.secrets or not all(self.secrets):
            raise ValueError("secrets: give at least one non-empty signing secret")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status and JSON body (and headers)."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def error(
        cls,
        status: int,
        code: str,
        message: str,
        *,
        fields: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        error: dict[str, Any] = {"code": code, "message": message}
        if fields:
            error["fields"] = dict(fields)
        return cls(status, {"error": error}, dict(headers or {}))


def address_source(host: str | None) -> str:
    """The rate-limited source of a client address: the address, or its /64 for IPv6 (one
    machine commonly holds a whole /64)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def parse_secrets(text: str) -> tuple[str, ...]:
    """`TASKSYNC_INGRESS_SECRET`: one secret, or several separated by commas (rotation)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


class AcceptedSignatures:
    """Signatures of batches accepted within the timestamp window (see the module docstring)."""

    def __init__(self, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._accepted: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __contains__(self, signature: object) -> bool:
        with self._lock:
            self._expire()
            return signature in self._accepted

    def add(self, signature: str) -> None:
        with self._lock:
            self._accepted[signature] = self._clock()
            self._expire()

    def _expire(self) -> None:
        horizon = self._clock() - 2 * self.window
        while self._accepted and next(iter(self._accepted.values())) < horizon:
            self._accepted.popitem(last=False)


class NotificationIngress:
    """Verifies, reads, publishes; one instance serves every request of a process."""

    def __init__(
        self,
        settings: IngressSettings,
        *,
        gateway: SalesforceTaskGateway,
        directory: SyncUserDirectory,
        observer: SalesforceTaskObserver,
        publisher: Publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.directory = directory
        self.observer = observer
        self.publisher = publisher
        self._clock = clock
        self.accepted = AcceptedSignatures(settings.timestamp_window_seconds, clock)
        self.rate_limits = TokenBuckets(settings.rate_limit)

    def limit_address(self, host: str | None) -> Answer | None:
        """Step 0 for the client address (before the body is read): None, or the 429."""
        source = address_source(host)
        refusal = self.rate_limits.take(f"address {source}")
        return None if refusal is None else self._too_many("address", source, refusal)

    def limit_org(self, org_id: str, client: str) -> Answer | None:
        """Step 0 for the org of a batch whose signature checked out: None, or the 429."""
        refusal = self.rate_limits.take(f"org {org_id}")
        if refusal is None:
            return None
        return self._too_many("org", f"{org_id} (from {client})", refusal)

    def _too_many(self, scope: str, source: str, refusal: Refusal) -> Answer:
        record_ingress_rate_limited(scope)
        limit = self.settings.rate_limit
        if refusal.log_now:
            log.warning(
                "rate limited %s %s: %d request(s) refused with 429 since the last report "
                "(limit %s)",
                scope,
                source,
                refusal.refused_since_logged,
                limit.describe(),
                extra={"event": "ingress_rate_limited", "scope": scope, "source": source},
            )
        return Answer.error(
            429,
            "rate_limited",
            f"too many requests from this {scope}: at most {limit.describe()}; "
            f"retry after {refusal.retry_after} s",
            headers={"Retry-After": str(refusal.retry_after)},
        )

    def check(
        self, headers: Mapping[str, str], body: bytes, client: str
    ) -> Answer | NotificationBatch:
        """Steps 1 and 2: an error answer, or the loaded batch."""
        timestamp = headers.get(TIMESTAMP_HEADER.lower())
        signature = headers.get(SIGNATURE_HEADER.lower())
        try:
            verify_notification(
                self.settings.secrets,
                timestamp,
                signature,
                body,
                now=self._clock(),
                window_seconds=self.settings.timestamp_window_seconds,
            )
        except SignatureError as exc:
            log.warning("refused a notification from %s: %s", client, exc)
            return Answer.error(401, "signature_rejected", str(exc))
        try:
            return load_notification_batch(body)
        except ContractError as exc:
            log.warning("refused a malformed notification from %s: %s", client, exc.describe())
            return Answer.error(
                400, "invalid_notification", exc.describe(), fields=dict(exc.fields)
            )
        except (ValueError, RecursionError) as exc:
            # json.loads itself gives up on arrays nested thousands deep and on integers of
            # thousands of digits, with errors that are no JSONDecodeError.
            rule = "_body: Not valid JSON: nested too deeply or a number too long."
            log.warning("refused a malformed notification from %s: %s (%s)", client, rule, exc)
            return Answer.error(
                400, "invalid_notification", rule, fields={"_body": [rule.split(": ", 1)[1]]}
            )

    def is_repeat(self, headers: Mapping[str, str]) -> bool:
        signature = headers.get(SIGNATURE_HEADER.lower())
        return signature is not None and signature in self.accepted

    def handle(self, batch: NotificationBatch, headers: Mapping[str, str]) -> Answer:
        """Steps 3 and 4 (blocking: run it in a worker thread)."""
        started = time.monotonic()
        record_notifications(len(batch.notifications))
        try:
            self.directory.ensure_fresh()
        except Exception as exc:
            if not self.directory.loaded:
                return self._unavailable("Sales Connect (the list of synced users)", exc)
            log.warning("using the last list of synced users: %s", describe_failure(exc))
        task_ids = sorted(
            {
                notification.task_id
                for notification in batch.notifications
                if self._is_synced_owner(notification.owner_id)
            }
        )
        published = 0
        if task_ids:
            try:
                tasks = self.gateway.tasks_by_id(task_ids)
            except Exception as exc:
                return self._unavailable("Salesforce", exc)
            missing = len(task_ids) - len(tasks)
            if missing:
                log.info("%d notified Tasks no longer exist; the poller covers them", missing)
            observation = self.observer.observe(tasks.values())
            publishing = time.monotonic()
            try:
                self.publisher.publish_many(
                    observation.changes, timeout=self.settings.publish_timeout
                )
            except PublishError as exc:
                return self._unavailable("RabbitMQ", exc)
            record_published(observation.changes, time.monotonic() - publishing)
            try:
                self.observer.commit(observation)
            except Exception as exc:
                # Published but not remembered: the poller will see the rows as changed and
                # publish the same message ids again, which the workers drop.
                log.warning("could not remember what was published: %s", describe_failure(exc))
            published = len(observation.changes)
        signature = headers.get(SIGNATURE_HEADER.lower())
        if signature:
            self.accepted.add(signature)
        log.info(
            "notification batch of %d (%d of synced users): published %d changes in %.0f ms",
            len(batch.notifications),
            len(task_ids),
            published,
            (time.monotonic() - started) * 1000,
        )
        return Answer(
            200,
            {"received": len(batch.notifications), "read": len(task_ids), "published": published},
        )

    def _is_synced_owner(self, owner_id: str) -> bool:
        """An owner the list does not know may have turned sync on since it was read: read it
        again (at most once a second), or that user's first changes would wait for the poller."""
        try:
            return self.directory.by_salesforce_id(owner_id, refresh_on_miss=True) is not None
        except Exception as exc:
            log.warning("using the last list of synced users: %s", describe_failure(exc))
            return self.directory.by_salesforce_id(owner_id) is not None

    def _unavailable(self, what: str, exc: BaseException) -> Answer:
        reason = describe_failure(exc) if not isinstance(exc, PublishError) else str(exc)
        log.warning("answering 503 (the package will send again): %s failed: %s", what, reason)
        return Answer.error(
            503,
            "temporarily_unavailable",
            f"{what} failed: {reason}",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
