"""The stand-in for the tasksync Salesforce-side package: signed Task change notifications.

Saves enqueue a notification in the same transaction as the change (see `Org._notify`), so
nothing a user did is lost when the emulator is killed. A background thread collects what
arrives within a short window into batches of at most 200, signs each batch exactly as the Apex
package does (`schemas.notification`), POSTs it to the ingress and deletes it only after a 2xx
answer; failures are retried with growing, jittered pauses. A configurable share of
notifications is dropped at enqueue time, so the bridge's poller backstop has work to do.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from salesforce_emulator.errors import AdminError
from salesforce_emulator.faults import FaultPlan
from salesforce_emulator.stamps import now_ms, to_datetime
from salesforce_emulator.store import OrgStore
from schemas.notification import (
    MAX_NOTIFICATIONS_PER_BATCH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationBatch,
    TaskNotification,
    TriggerOp,
    dump_notification_batch,
    sign_notification,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH_WINDOW_MS: Final = 50
SEND_TIMEOUT_SECONDS: Final = 10
FIRST_RETRY_SECONDS: Final = 0.2
MAX_RETRY_SECONDS: Final = 30.0
IDLE_POLL_SECONDS: Final = 1.0


@dataclass(frozen=True)
class IngressSettings:
    ingress_url: str | None = None
    ingress_secret: str | None = None
    batch_window_ms: int = DEFAULT_BATCH_WINDOW_MS
    ingress_ca_path: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.ingress_url and self.ingress_secret)


@dataclass
class DeliveryCounters:
    batches_sent: int = 0
    notifications_sent: int = 0
    notifications_dropped: int = 0
    failed_attempts: int = 0
    last_error: str | None = None


class NotificationSender:
    """Delivers the outbox to the ingress from one background thread."""

    def __init__(self, store: OrgStore, faults: FaultPlan, settings: IngressSettings) -> None:
        self.store = store
        self.org_id = ""
        self.faults = faults
        self.initial = settings
        self.settings = settings
        self.counters = DeliveryCounters()
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()
        self._jitter = random.Random()

    # -- configuration -----------------------------------------------------------------------

    def configure(self, body: Any) -> IngressSettings:
        if not isinstance(body, Mapping):
            raise AdminError(400, "body: must be a JSON object of notification settings")
        allowed = {"ingress_url", "ingress_secret", "batch_window_ms", "ingress_ca_path"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise AdminError(400, f"body: unknown keys {unknown}; allowed are {sorted(allowed)}")
        changes: dict[str, Any] = {}
        if "ingress_url" in body:
            changes["ingress_url"] = check_ingress_url(body["ingress_url"])
        if "ingress_secret" in body:
            secret = body["ingress_secret"]
            if secret is not None and (not isinstance(secret, str) or not secret):
                raise AdminError(400, "ingress_secret: must be a non-empty text or null")
            changes["ingress_secret"] = secret
        if "batch_window_ms" in body:
            window = body["batch_window_ms"]
            if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 10_000:
                raise AdminError(400, "batch_window_ms: must be a whole number from 0 to 10000")
            changes["batch_window_ms"] = window
        if "ingress_ca_path" in body:
            path = body["ingress_ca_path"]
            if path is not None and (not isinstance(path, str) or not Path(path).is_file()):
                raise AdminError(400, "ingress_ca_path: must name an existing PEM file, or null")
            changes["ingress_ca_path"] = path
        self.settings = replace(self.settings, **changes)
        self._wakeup.set()
        return self.settings

    def reset(self) -> None:
        self.settings = self.initial
        self.counters = DeliveryCounters()
        self._wakeup.set()

    def admit(self) -> bool:
        """Whether a change made now is notified: the package is set up, and not dropped."""
        if not self.settings.enabled:
            return False
        if self.faults.drop_notification():
            self.counters.notifications_dropped += 1
            return False
        return True

    def status(self) -> dict[str, Any]:
        pending = self.store.row("SELECT COUNT(*) AS n FROM outbox")
        settings = asdict(self.settings)
        settings["ingress_secret_set"] = bool(settings.pop("ingress_secret"))
        return {**settings, **asdict(self.counters), "pending": pending["n"] if pending else 0}

    # -- the sending thread ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notification-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=SEND_TIMEOUT_SECONDS + 1)

    def wake(self) -> None:
        self._wakeup.set()

    def _wait(self, seconds: float) -> None:
        self._wakeup.wait(seconds)
        self._wakeup.clear()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            settings = self.settings
            rows = self._pending()
            if not rows or not settings.enabled:
                self._wait(IDLE_POLL_SECONDS)
                continue
            window_ends = rows[0]["enqueued_ms"] + settings.batch_window_ms
            if len(rows) < MAX_NOTIFICATIONS_PER_BATCH and window_ends > now_ms():
                # Changes made together travel together: wait out the window, then re-read.
                self._stop.wait((window_ends - now_ms()) / 1000)
                rows = self._pending()
            if self._deliver(rows, settings):
                attempt = 0
                continue
            attempt += 1
            pause = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (attempt - 1))
            self._wait(pause * (0.5 + self._jitter.random() / 2))

    def _pending(self) -> list[dict[str, Any]]:
        return self.store.rows(
            "SELECT * FROM outbox ORDER BY seq LIMIT ?", (MAX_NOTIFICATIONS_PER_BATCH,)
        )

    def _deliver(self, rows: list[dict[str, Any]], settings: IngressSettings) -> bool:
        batch = NotificationBatch(
            org_id=self.org_id,
            sent_at=datetime.now(UTC),
            notifications=tuple(
                TaskNotification(
                    task_id=row["task_id"],
                    op=TriggerOp(row["op"]),
                    owner_id=row["owner_id"],
                    actor_id=row["actor_id"],
                    system_modstamp=to_datetime(row["system_modstamp"]),
                    changed_fields=tuple(json.loads(row["changed_fields"])),
                )
                for row in rows
            ),
        )
        body = json.dumps(dump_notification_batch(batch), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign_notification(str(settings.ingress_secret), timestamp, body),
        }
        try:
            response = self._http.post(
                str(settings.ingress_url),
                data=body,
                headers=headers,
                timeout=SEND_TIMEOUT_SECONDS,
                verify=settings.ingress_ca_path or True,
            )
        except requests.RequestException as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        if not 200 <= response.status_code < 300:
            return self._failed(f"ingress answered {response.status_code}: {response.text[:200]}")
        with self.store.transaction():
            self.store.execute("DELETE FROM outbox WHERE seq <= ?", (rows[-1]["seq"],))
        self.counters.batches_sent += 1
        self.counters.notifications_sent += len(rows)
        return True

    def _failed(self, reason: str) -> bool:
        self.counters.failed_attempts += 1
        self.counters.last_error = reason
        log.warning("notification delivery failed, will retry: %s", reason)
        return False


def check_ingress_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise AdminError(400, "ingress_url: must be an http:// or https:// URL, or null")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AdminError(400, "ingress_url: must be an http:// or https:// URL, or null")
    return value
