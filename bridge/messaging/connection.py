"""Connecting to RabbitMQ: parameters from a URL, named connections, and reconnect backoff.

Every connection carries a `connection_name` so the management UI says which component and
process holds it. Reconnects wait a capped, jittered, growing interval (like kombu's
`ensure_connection`), so a fleet of workers does not stampede a broker that just came back.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import pika

DEFAULT_HEARTBEAT: Final = 30
BLOCKED_CONNECTION_TIMEOUT: Final = 60.0


def connection_parameters(
    amqp_url: str,
    *,
    name: str,
    heartbeat: int | None = None,
    socket_timeout: float = 10.0,
) -> Any:
    """pika parameters for `amqp_url`, named `name` in the management UI."""
    params = pika.URLParameters(amqp_url)
    params.client_properties = {
        "connection_name": f"{name} ({socket.gethostname()} pid {os.getpid()})",
        "product": "tasksync",
    }
    params.heartbeat = DEFAULT_HEARTBEAT if heartbeat is None else heartbeat
    params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
    params.connection_attempts = 1
    params.socket_timeout = socket_timeout
    params.stack_timeout = socket_timeout * 2
    return params


def redact_url(url: str) -> str:
    """`amqp://user:***@host/vhost`: safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter; `reset` after a success."""

    initial: float = 0.5
    cap: float = 30.0
    _failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2**self._failures)
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._failures = 0

    def sleep(self, stop: threading.Event) -> bool:
        """Wait the next delay; True when `stop` was set meanwhile."""
        return stop.wait(self.next_delay())
