"""`tasksync ingress` over HTTPS: the emulator's stand-in for the Salesforce-side package
end to end, and every way a notification is refused."""

from __future__ import annotations

import time
from pathlib import Path

from schemas.notification import SIGNATURE_HEADER, TIMESTAMP_HEADER
from schemas.task_change import Op, TaskChange, TaskStatus
from tests.ingress.support import SECRETS, IngressWorld
from tests.producers.support import BridgeProcess
from tests.support.rabbitmq import free_port


def task_of(change: TaskChange) -> str | None:
    return change.record.salesforce_task_id


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
