"""A running `tasksync ingress` with real parts around it (see conftest.py's `world`), how to
sign and send it notifications, and a queue that sees everything it publishes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pika
import requests
from simple_salesforce.api import Salesforce

from bridge.messaging.topology import SOURCE_EXCHANGES
from schemas.notification import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationBatch,
    TaskNotification,
    TriggerOp,
    dump_notification_batch,
    sign_notification,
)
from tests.producers.support import BridgeProcess, PublishedMessages
from tests.support.emulator import EmulatorProcess, EmulatorUser
from tests.support.rabbitmq import BrokerVhost

SECRETS: Final = ("first-secret", "rotated-secret")


class PublishWatch:
    """A queue bound to every source exchange with `#`: a copy of whatever anyone publishes."""

    def __init__(self, vhost: BrokerVhost) -> None:
        self._connection = pika.BlockingConnection(pika.URLParameters(vhost.amqp_url))
        self._channel = self._connection.channel()
        self.queue = str(self._channel.queue_declare("", exclusive=True).method.queue)
        for exchange in SOURCE_EXCHANGES.values():
            self._channel.queue_bind(self.queue, exchange, routing_key="#")

    def count(self) -> int:
        declared = self._channel.queue_declare(self.queue, passive=True)
        return int(declared.method.message_count)

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()


@dataclass
class IngressWorld:
    emulator: EmulatorProcess
    rep: Salesforce
    rep_user: EmulatorUser
    published: PublishedMessages
    watch: PublishWatch
    ingress: BridgeProcess
    info: dict[str, Any]
    workdir: Path
    args: list[str]

    def http(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.info["ca_path"])
        session.trust_env = False
        return session

    def batch(
        self, task_id: str, op: TriggerOp = TriggerOp.UPDATE, *, owner_id: str | None = None
    ) -> NotificationBatch:
        owner = owner_id or self.rep_user.id
        return NotificationBatch(
            org_id=self.emulator.org_id,
            sent_at=datetime.now(UTC),
            notifications=(
                TaskNotification(
                    task_id=task_id,
                    op=op,
                    owner_id=owner,
                    actor_id=owner,
                    system_modstamp=datetime.now(UTC),
                    changed_fields=("Status",),
                ),
            ),
        )

    def notification(
        self, task_id: str, op: TriggerOp = TriggerOp.UPDATE, *, owner_id: str | None = None
    ) -> bytes:
        batch = self.batch(task_id, op, owner_id=owner_id)
        return json.dumps(dump_notification_batch(batch), separators=(",", ":")).encode()

    def post(
        self,
        body: bytes,
        *,
        secret: str = SECRETS[0],
        timestamp: int | None = None,
        url: str | None = None,
        signature: str | None = None,
        forwarded_for: str | None = None,
    ) -> requests.Response:
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: signature or sign_notification(secret, stamp, body),
        }
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        return self.http().post(url or self.info["url"], data=body, headers=headers, timeout=30)
