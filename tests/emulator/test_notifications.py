"""The plugin stand-in: signed notifications of people's Task changes, batched and retried.

A real HTTP receiver in a thread of the test checks every signature with
`schemas.notification.verify_notification` and loads every body with the contract's schema.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from simple_salesforce import Salesforce

from schemas.notification import (
    MAPPED_TASK_FIELDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationBatch,
    TaskNotification,
    load_notification_batch,
    verify_notification,
)
from tests.support.emulator import EmulatorProcess
from tests.support.waiting import wait_for

SECRET = "notification-test-secret"


class Receiver:
    """The ingress, as far as the emulator can tell: verifies, records, can fail on purpose."""

    def __init__(self) -> None:
        self.batches: list[NotificationBatch] = []
        self.rejected: list[str] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    if receiver.fail_next:
                        receiver.fail_next -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    try:
                        verify_notification(
                            SECRET,
                            self.headers.get(TIMESTAMP_HEADER),
                            self.headers.get(SIGNATURE_HEADER),
                            body,
                            now=time.time(),
                        )
                        receiver.batches.append(load_notification_batch(body))
                    except Exception as exc:
                        receiver.rejected.append(repr(exc))
                        self.send_response(401)
                        self.end_headers()
                        return
                self.send_response(202)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notifications"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def notifications(self) -> list[TaskNotification]:
        with self.lock:
            return [n for batch in self.batches for n in batch.notifications]

    def wait_for(self, count: int) -> list[TaskNotification]:
        return wait_for(
            lambda: self.notifications if len(self.notifications) >= count else None,
            timeout=10,
            what=f"{count} notifications",
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def configured(emulator: EmulatorProcess, receiver: Receiver) -> EmulatorProcess:
    emulator.admin.configure_notifications(
        ingress_url=receiver.url, ingress_secret=SECRET, batch_window_ms=30
    )
    return emulator


@pytest.fixture
def rep(configured: EmulatorProcess) -> Salesforce:
    return configured.salesforce("sales_rep")


def test_a_persons_changes_are_notified_with_what_changed(
    rep: Salesforce, configured: EmulatorProcess, receiver: Receiver
) -> None:
    task_id = rep.Task.create({"Subject": "call", "ActivityDate": "2026-12-01"})["id"]
    (created,) = receiver.wait_for(1)
    assert created.task_id == task_id and created.op.value == "insert"
    assert created.changed_fields == MAPPED_TASK_FIELDS
    assert created.actor_id == created.owner_id == configured.sales_rep.id
    task = rep.Task.get(task_id)
    assert created.system_modstamp.isoformat(timespec="milliseconds").startswith(
        task["SystemModstamp"][:23]
    )
    rep.Task.update(task_id, {"Status": "Completed", "Subject": "CALL", "WhoId": None})
    updated = receiver.wait_for(2)[1]
    assert updated.op.value == "update" and updated.changed_fields == ("Subject", "Status")
    rep.Task.delete(task_id)
    configured.admin.undelete(task_id)
    deleted, undeleted = receiver.wait_for(4)[2:]
    assert (deleted.op.value, deleted.changed_fields) == ("delete", ())
    assert (undeleted.op.value, undeleted.changed_fields) == ("undelete", MAPPED_TASK_FIELDS)
    assert receiver.batches[0].org_id == configured.org_id
    assert receiver.rejected == []


def test_no_notice_for_the_bridge_other_subtypes_or_unmapped_fields(
    rep: Salesforce, configured: EmulatorProcess, receiver: Receiver
) -> None:
    bridge = configured.salesforce("integration")
    bridge.Task.create({"Subject": "written by the bridge"})
    rep.Task.create({"Subject": "logged call", "TaskSubtype": "Call"})
    task_id = rep.Task.create({"Subject": "plain"})["id"]
    receiver.wait_for(1)
    other = configured.admin.create_user("finn@tasksync.example", "Finn-Passw0rd", "Finn Lee")
    rep.Task.update(task_id, {"OwnerId": other.id})
    rep.Task.update(task_id, {"Subject": "plain"})
    bridge.Task.update(task_id, {"Subject": "renamed by the bridge"})
    rep.Task.update(task_id, {"Priority": "High"})
    notices = receiver.wait_for(2)
    assert [(n.op.value, n.changed_fields) for n in notices] == [
        ("insert", MAPPED_TASK_FIELDS),
        ("update", ("Priority",)),
    ]
    assert notices[1].owner_id == other.id


def test_changes_made_together_arrive_in_batches_of_at_most_200(
    rep: Salesforce, receiver: Receiver
) -> None:
    records = [{"attributes": {"type": "Task"}, "Subject": f"t{n}"} for n in range(200)]
    rep.restful("composite/sobjects", method="POST", json={"records": records})
    rep.restful("composite/sobjects", method="POST", json={"records": records[:50]})
    receiver.wait_for(250)
    sizes = [len(batch.notifications) for batch in receiver.batches]
    assert max(sizes) == 200 and sum(sizes) == 250 and len(sizes) <= 3


def test_failed_deliveries_are_retried(
    rep: Salesforce, configured: EmulatorProcess, receiver: Receiver
) -> None:
    receiver.fail_next = 2
    rep.Task.create({"Subject": "persist"})
    receiver.wait_for(1)
    status = configured.admin.notifications()
    assert status["failed_attempts"] == 2 and status["pending"] == 0
    assert "503" in status["last_error"]


def test_a_wrong_secret_is_rejected_by_the_receiver(
    rep: Salesforce, configured: EmulatorProcess, receiver: Receiver
) -> None:
    configured.admin.configure_notifications(ingress_secret="not-the-secret")
    rep.Task.create({"Subject": "unsigned"})
    wait_for(lambda: receiver.rejected, timeout=10, what="a rejected notification")
    assert "signature does not match" in receiver.rejected[0]
    configured.admin.configure_notifications(ingress_secret=SECRET)
    assert receiver.wait_for(1)[0].op.value == "insert"


def test_a_share_of_notifications_can_be_dropped(
    rep: Salesforce, configured: EmulatorProcess, receiver: Receiver
) -> None:
    configured.admin.set_faults(notification_drop_share=1.0)
    rep.Task.create({"Subject": "dropped"})
    configured.admin.set_faults(notification_drop_share=0.0)
    rep.Task.create({"Subject": "delivered"})
    notices = receiver.wait_for(1)
    assert len(notices) == 1
    assert configured.admin.notifications()["notifications_dropped"] == 1


def test_notifications_wait_out_a_kill_and_flags_configure_them(
    fresh_emulator: EmulatorProcess, receiver: Receiver
) -> None:
    fresh_emulator.args = (
        "--ingress-url",
        "http://127.0.0.1:9/unreachable",
        "--ingress-secret",
        SECRET,
    )
    fresh_emulator.start()
    rep = fresh_emulator.salesforce("sales_rep")
    rep.Task.create({"Subject": "while the ingress is down"})
    wait_for(
        lambda: fresh_emulator.admin.notifications()["failed_attempts"] >= 1,
        timeout=10,
        what="a failed delivery",
    )
    fresh_emulator.restart("--ingress-url", receiver.url, kill=True)
    (notice,) = receiver.wait_for(1)
    assert notice.op.value == "insert" and notice.actor_id == fresh_emulator.sales_rep.id


def test_bad_notification_settings_are_refused(emulator: EmulatorProcess) -> None:
    for body in ({"ingress_url": "ftp://x"}, {"ingress_secret": ""}, {"batch_window_ms": -1}):
        response = emulator.http_session().put(f"{emulator.admin_url}/notifications", json=body)
        assert response.status_code == 400
        assert next(iter(body)) in response.json()["error"]
