"""A small client for the RabbitMQ management HTTP API: what `tasksync status` shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import requests

DEFAULT_TIMEOUT: Final = 5.0


class ManagementApiError(Exception):
    """The management API was unreachable, refused the credentials, or answered an error."""


@dataclass(frozen=True)
class QueueStatus:
    name: str
    type: str
    messages: int
    ready: int
    unacked: int
    consumers: int
    active_consumer: str | None
    publish_rate: float
    deliver_rate: float
    ack_rate: float
    state: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "messages": self.messages,
            "ready": self.ready,
            "unacked": self.unacked,
            "consumers": self.consumers,
            "active_consumer": self.active_consumer,
            "publish_rate": self.publish_rate,
            "deliver_rate": self.deliver_rate,
            "ack_rate": self.ack_rate,
            "state": self.state,
        }


class ManagementApi:
    """`base_url` like `http://user:password@127.0.0.1:15672` (credentials in the URL)."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(base_url)
        self.auth = (parts.username or "guest", parts.password or "guest")
        netloc = parts.hostname or "127.0.0.1"
        if parts.port:
            netloc += f":{parts.port}"
        self.base_url = urlunsplit((parts.scheme or "http", netloc, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout

    def get(self, path: str) -> Any:
        url = f"{self.base_url}/api/{path}"
        try:
            response = requests.get(url, auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ManagementApiError(
                f"management API at {self.base_url} unreachable: {exc}"
            ) from exc
        if response.status_code == 401:
            raise ManagementApiError(f"management API at {self.base_url} refused the credentials")
        if response.status_code == 404:
            raise ManagementApiError(f"management API: {path} not found")
        if response.status_code >= 400:
            raise ManagementApiError(
                f"management API answered {response.status_code} for {path}: {response.text[:200]}"
            )
        return response.json()

    def queues(self, vhost: str, *, prefix: str = "tasksync.") -> list[QueueStatus]:
        rows = self.get(f"queues/{quote(vhost, safe='')}")
        return sorted(
            (_queue_status(row) for row in rows if str(row.get("name", "")).startswith(prefix)),
            key=lambda queue: queue.name,
        )


def _queue_status(row: dict[str, Any]) -> QueueStatus:
    stats = row.get("message_stats") or {}

    def rate(name: str) -> float:
        details = stats.get(f"{name}_details") or {}
        return float(details.get("rate") or 0.0)

    consumer = row.get("single_active_consumer_tag")
    return QueueStatus(
        name=str(row["name"]),
        type=str(row.get("type") or "classic"),
        messages=int(row.get("messages") or 0),
        ready=int(row.get("messages_ready") or 0),
        unacked=int(row.get("messages_unacknowledged") or 0),
        consumers=int(row.get("consumers") or 0),
        active_consumer=str(consumer) if consumer else None,
        publish_rate=rate("publish"),
        deliver_rate=rate("deliver_get"),
        ack_rate=rate("ack"),
        state=str(row.get("state") or "unknown"),
    )
