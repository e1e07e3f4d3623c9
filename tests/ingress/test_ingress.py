"""`tasksync ingress` over HTTPS: the emulator's stand-in for the Salesforce-side package
end to end, and every way a notification is refused."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce

from bridge.messaging import Direction
from schemas.notification import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationBatch,
    TaskNotification,
    TriggerOp,
    dump_notification_batch,
    sign_notification,
)
from schemas.task_change import Op, TaskChange, TaskStatus
from tests.producers.support import (
    TOPOLOGY_ARGS,
    BridgeProcess,
    PublishedMessages,
    salesforce_args,
)
from tests.support.emulator import EmulatorProcess, EmulatorUser
from tests.support.rabbitmq import BrokerVhost, free_port
from tests.support.salesconnect import RunningSalesConnect

SECRETS = ("first-secret", "rotated-secret")


def task_of(change: TaskChange) -> str | None:
    return change.record.salesforce_task_id


@dataclass
class IngressWorld:
    emulator: EmulatorProcess
    rep: Salesforce
    rep_user: EmulatorUser
    published: PublishedMessages
    ingress: BridgeProcess
    info: dict[str, Any]
    workdir: Path
    args: list[str]

    def http(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.info["ca_path"])
        session.trust_env = False
        return session

    def notification(self, task_id: str, op: TriggerOp = TriggerOp.UPDATE) -> bytes:
        batch = NotificationBatch(
            org_id=self.emulator.org_id,
            sent_at=datetime.now(UTC),
            notifications=(
                TaskNotification(
                    task_id=task_id,
                    op=op,
                    owner_id=self.rep_user.id,
                    actor_id=self.rep_user.id,
                    system_modstamp=datetime.now(UTC),
                    changed_fields=("Status",),
                ),
            ),
        )
        return json.dumps(dump_notification_batch(batch), separators=(",", ":")).encode()

    def post(
        self,
        body: bytes,
        *,
        secret: str = SECRETS[0],
        timestamp: int | None = None,
        url: str | None = None,
        signature: str | None = None,
    ) -> requests.Response:
        stamp = int(time.time()) if timestamp is None else timestamp
        return self.http().post(
            url or self.info["url"],
            data=body,
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: signature or sign_notification(secret, stamp, body),
            },
            timeout=30,
        )


@pytest.fixture
def world(
    emulator: EmulatorProcess,
    salesconnect_service: RunningSalesConnect,
    broker: BrokerVhost,
    tmp_path: Path,
) -> Iterator[IngressWorld]:
    tag = uuid.uuid4().hex[:8]
    rep_user = emulator.admin.create_user(f"rep-{tag}@tasksync.example", "Rep-Passw0rd", "Rep")
    users = salesconnect_service.client()
    user = users.create_user(salesforce_user_id=rep_user.id)
    users.update_settings(user["id"], task_sync="on")
    args = [
        "ingress",
        "--port",
        "0",
        "--secret",
        ",".join(SECRETS),
        "--salesconnect-url",
        salesconnect_service.url,
        "--ledger-url",
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "--data-dir",
        str(tmp_path),
        *TOPOLOGY_ARGS,
        *salesforce_args(emulator),
    ]
    ingress = BridgeProcess(tmp_path, "ingress", [*args, "--amqp-url", broker.amqp_url])
    info = ingress.start()
    published = PublishedMessages(broker, Direction.TO_SALESCONNECT)
    yield IngressWorld(
        emulator=emulator,
        rep=emulator.salesforce(rep_user, client="rep"),
        rep_user=rep_user,
        published=published,
        ingress=ingress,
        info=info,
        workdir=tmp_path,
        args=args,
    )
    ingress.stop()
    published.close()
    users.update_settings(user["id"], task_sync="off")
    users.close()


def test_the_ready_file_names_the_endpoint_and_its_ca(world: IngressWorld) -> None:
    info = world.info
    assert info["url"] == f"https://127.0.0.1:{info['port']}/notifications"
    assert Path(info["ca_path"]).is_file()
    assert world.http().get(info["base_url"] + "/healthz", timeout=10).json() == {"status": "ok"}


def test_changes_made_in_salesforce_arrive_through_signed_notifications(
    world: IngressWorld,
) -> None:
    world.emulator.admin.configure_notifications(
        ingress_url=world.info["url"],
        ingress_secret=SECRETS[0],
        ingress_ca_path=world.info["ca_path"],
    )
    others = world.emulator.salesforce("sales_rep").Task.create({"Subject": "Not synced"})["id"]
    task = str(world.rep.Task.create({"Subject": "Call Ann", "OwnerId": world.rep_user.id})["id"])
    (created,) = world.published.wait_for_task(task_of, task, timeout=10)
    assert created.change.op is Op.UPSERT
    assert created.change.changed.name == "Call Ann"
    assert created.change.record.salesconnect_task_id is None

    world.rep.Task.update(task, {"Status": "Completed", "Subject": "Renamed"})
    edit = world.published.wait_for_task(task_of, task, count=2, timeout=10)[1].change
    assert edit.changed.present() == {"status": TaskStatus.COMPLETED}

    world.rep.Task.delete(task)
    assert world.published.wait_for_task(task_of, task, count=3)[2].change.op is Op.DELETE
    world.emulator.admin.undelete(task, world.rep_user.id)
    assert world.published.wait_for_task(task_of, task, count=4)[3].change.op is Op.UNDELETE

    assert all(m.change.record.salesforce_task_id != others for m in world.published.collect())
    status = world.emulator.admin.notifications()
    assert status["failed_attempts"] == 0 and status["pending"] == 0


def test_refused_notifications_publish_nothing(world: IngressWorld) -> None:
    task = str(world.rep.Task.create({"Subject": "Call Bob", "OwnerId": world.rep_user.id})["id"])
    body = world.notification(task)

    wrong = world.post(body, secret="not-the-secret")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "signature_rejected"
    stale = world.post(body, timestamp=int(time.time()) - 301)
    assert stale.status_code == 401
    assert "window" in stale.json()["error"]["message"]
    unsigned = world.http().post(world.info["url"], data=body, timeout=10)
    assert unsigned.status_code == 401

    too_big = b'{"pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert world.post(too_big).status_code == 413
    streamed = world.http().post(
        world.info["url"], data=iter([too_big[:600_000], too_big[600_000:]]), timeout=10
    )
    assert streamed.status_code == 413

    malformed = world.post(b'{"schema_version": 2, "notifications": []}')
    assert malformed.status_code == 400
    fields = malformed.json()["error"]["fields"]
    assert {"schema_version", "org_id", "notifications"} <= set(fields)

    rotated = world.post(body, secret=SECRETS[1])
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["published"] == 1
    repeated = world.post(
        body,
        signature=rotated.request.headers[SIGNATURE_HEADER],
        timestamp=int(rotated.request.headers[TIMESTAMP_HEADER]),
    )
    assert repeated.status_code == 200 and repeated.json()["repeat"] is True

    (message,) = world.published.wait_for_task(task_of, task)
    assert message.change.changed.name == "Call Bob"
    again = world.post(body)  # a second delivery, newly signed: nothing new to publish
    assert again.status_code == 200 and again.json()["published"] == 0
    assert len(world.published.collect()) == 1
    log = world.ingress.log()
    assert "refused a notification" in log and "refused a malformed notification" in log


def test_answers_503_when_rabbitmq_is_unreachable(world: IngressWorld) -> None:
    task = str(world.rep.Task.create({"Subject": "Call Cy", "OwnerId": world.rep_user.id})["id"])
    down = BridgeProcess(
        world.workdir,
        "ingress-no-broker",
        [*world.args, "--amqp-url", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"],
    )
    info = down.start()
    try:
        answer = world.post(world.notification(task), url=info["url"])
    finally:
        assert down.stop() == 0
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert "RabbitMQ" in answer.json()["error"]["message"]
    assert "Traceback" not in down.log()
