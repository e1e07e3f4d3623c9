"""A whole system run with distinctive configured secrets, driven through failures, leaves none
of them in any log line or parked message; its logs are one JSON object per line with the
change events' fields; readiness follows Salesforce going away and coming back.

Secrets configured: the Salesforce integration user's password and the OAuth client secret,
the RabbitMQ password (with characters that must be percent-encoded in the URL), a password in
the PostgreSQL ledger URL (the server trusts local connections, so any password works), and
the ingress signing secrets, new and old, while rotating, and the Sales Connect service token
the bridge sends (also as its Sales Connect URL's password). Failures driven: expired Salesforce
sessions (the bridge logs in again), Salesforce answering 503 to everything (retries, readiness
failing), a validation rule (a parked change), and notifications with a forged signature and
with the old secret.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from bridge.messaging import ParkedQueue, Topology, parse_retry_tiers
from schemas.notification import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationBatch,
    TaskNotification,
    TriggerOp,
    dump_notification_batch,
    sign_notification,
)
from tests.operations.support import (
    point_emulator_at,
    probe,
    start_bridge_process,
)
from tests.support.databases import fresh_postgres_database
from tests.support.rabbitmq import SHARED_MANAGEMENT_URL, Management
from tests.support.salesconnect import TEST_SERVICE_TOKEN
from tests.support.system import RunningSystem, running_system
from tests.support.waiting import wait_for

TOKEN = secrets.token_hex(6)
SALESFORCE_PASSWORD = f"Sf-Integration-{TOKEN}"
CLIENT_SECRET = f"oauth-client-secret-{TOKEN}"
AMQP_PASSWORD = f"amqp/pass+word-{TOKEN}"  # "/" and "+" are percent-encoded in the URL
LEDGER_PASSWORD = f"ledger-pass-{TOKEN}"
INGRESS_SECRET = f"ingress-signing-new-{TOKEN}"
OLD_INGRESS_SECRET = f"ingress-signing-old-{TOKEN}"
SECRETS = {
    "Salesforce password": SALESFORCE_PASSWORD,
    "OAuth client secret": CLIENT_SECRET,
    "RabbitMQ password": AMQP_PASSWORD,
    "RabbitMQ password, URL-encoded": quote(AMQP_PASSWORD, safe=""),
    "ledger password": LEDGER_PASSWORD,
    "ingress secret": INGRESS_SECRET,
    "old ingress secret": OLD_INGRESS_SECRET,
    "Sales Connect service token": TEST_SERVICE_TOKEN,
}
BRIDGE = (
    "ingress",
    "salesconnect-producer",
    "salesforce-poller",
    "to-salesforce",
    "to-salesconnect",
)
RETRY_TIERS = "1s,5s,30s"


@pytest.fixture
def amqp_user() -> Iterator[str]:
    """A RabbitMQ user of this test's own (its password is one of the secrets)."""
    name = f"tasksync-ops-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(requests.HTTPError):
        Management(SHARED_MANAGEMENT_URL).request("DELETE", f"users/{quote(name, safe='')}")


def start_with_secrets(system: RunningSystem, user: str) -> dict[str, Any]:
    assert system.vhost is not None
    management = Management(system.vhost.management_url)
    management.request(
        "PUT", f"users/{quote(user, safe='')}", json={"password": AMQP_PASSWORD, "tags": ""}
    )
    management.request(
        "PUT",
        f"permissions/{quote(system.vhost.name, safe='')}/{quote(user, safe='')}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    )
    integration = system.emulator.info["integration_user"]
    system.admin.update_user(integration["id"], password=SALESFORCE_PASSWORD)
    integration["password"] = SALESFORCE_PASSWORD  # what `tasksync verify` logs in with
    env = {
        "TASKSYNC_AMQP_URL": system.vhost.url_as(user, AMQP_PASSWORD),
        "TASKSYNC_INGRESS_SECRET": f"{INGRESS_SECRET},{OLD_INGRESS_SECRET}",
    }
    for name in BRIDGE:
        extra = ("--log-level", "debug") if name == "to-salesforce" else ()
        start_bridge_process(system, name, name, extra_args=extra, env=env)
    ingress = system.component("ingress")
    point_emulator_at(system, ingress, INGRESS_SECRET)
    return ingress.info


def post_notification(ingress: dict[str, Any], body: bytes, secret: str) -> requests.Response:
    stamp = int(time.time())
    return requests.post(
        ingress["url"],
        data=body,
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign_notification(secret, stamp, body),
        },
        verify=ingress["ca_path"],
        timeout=30,
    )


def json_lines(text: str, where: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{where} line {number} is not JSON: {line[:300]}") from None
    return entries


@pytest.mark.slow
def test_no_secret_reaches_a_log_or_a_parked_message(tmp_path: Path, amqp_user: str) -> None:
    with fresh_postgres_database("operations") as plain_ledger_url:
        ledger_url = plain_ledger_url.replace("://postgres@", f"://postgres:{LEDGER_PASSWORD}@")
        with running_system(
            tmp_path / "system",
            components=frozenset(),
            ledger_url=ledger_url,
            emulator_args=("--client-secret", CLIENT_SECRET),
            retry_tiers=RETRY_TIERS,
        ) as system:
            ingress = start_with_secrets(system, amqp_user)
            drive_traffic_with_failures(system, ingress, amqp_user)
            logs = {name: system.logs(name) for name in (*BRIDGE, "salesconnect")}
            assert system.vhost is not None
            parked = ParkedQueue(
                system.vhost.amqp_url,
                topology=Topology(shard_count=2, retry_tiers=parse_retry_tiers(RETRY_TIERS)),
            ).browse()

    assert parked, "the forbidden subject should have been parked"
    for name, text in logs.items():
        for what, secret in SECRETS.items():
            assert secret not in text, f"the {what} appears in the {name} log"
    for message in parked:
        seen = f"{message.received.headers!r} {message.received.body!r} {message.error}"
        for what, secret in SECRETS.items():
            assert secret not in seen, f"the {what} appears in parked message {message.message_id}"

    events: dict[str, list[dict[str, Any]]] = {}
    for name in BRIDGE:
        entries = json_lines(logs[name], f"the {name} log")
        assert {entry["component"] for entry in entries} <= {
            "ingress",
            "producer salesconnect",
            "producer salesforce",
            "to-salesforce",
            "to-salesconnect",
        }
        events[name] = [entry for entry in entries if "event" in entry]
    handled = [e for e in events["to-salesforce"] if e["event"] == "change_handled"]
    outcomes = {entry["outcome"] for entry in handled}
    assert {"applied", "retried", "parked"} <= outcomes, outcomes
    for entry in handled:
        assert entry["direction"] == "to-salesforce"
        assert entry["message_id"] and entry["salesconnect_task_id"]
        assert isinstance(entry["duration_ms"], float)
    assert any(e["outcome"] == "retried" and e["tier"] == "1s" for e in handled)
    (parked_event,) = [e for e in handled if e["outcome"] == "parked"]
    assert parked_event["error_kind"] == "permanent"
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in parked_event["error"]
    published = [e for e in events["salesconnect-producer"] if e["event"] == "change_published"]
    assert {e["message_id"] for e in handled} <= {e["message_id"] for e in published}
    inbound = [e for e in events["to-salesconnect"] if e["event"] == "change_handled"]
    assert any(e["outcome"] == "applied" and e["salesforce_task_id"] for e in inbound)


def drive_traffic_with_failures(
    system: RunningSystem, ingress: dict[str, Any], amqp_user: str
) -> None:
    admin = system.admin
    user = system.create_synced_user("Secret Keeper")
    first = system.salesconnect.create_task(user.user_id, "Call Ann", "2026-12-01")
    system.wait_until_consistent(user.user_id, timeout=60)

    # A user's edit in Salesforce reaches Sales Connect (notification to the ingress).
    task_id = system.salesconnect.get_task(first["id"])["salesforce_task_id"]
    user.salesforce().Task.update(task_id, {"Description": "edited in Salesforce"})
    wait_for(
        lambda: system.salesconnect.get_task(first["id"])["details"] == "edited in Salesforce",
        timeout=30,
        what="the Salesforce edit in Sales Connect",
    )

    # Sessions expire: the bridge logs in again (its password goes over the wire again).
    admin.expire_sessions()
    system.salesconnect.create_task(user.user_id, "Call Bo", "2026-12-02")
    system.wait_until_consistent(user.user_id, timeout=60)

    # RabbitMQ drops every connection of the bridge's user: each process reconnects.
    assert system.vhost is not None
    management = Management(system.vhost.management_url)
    # The management API lists a connection only after its first statistics (a few seconds).
    connections = wait_for(
        lambda: [c for c in management.get("connections") if c["user"] == amqp_user],
        timeout=30,
        what="the bridge's AMQP connections in the management API",
    )
    for connection in connections:
        management.request("DELETE", f"connections/{quote(connection['name'], safe='')}")
    system.salesconnect.create_task(user.user_id, "Call Di", "2026-12-02")
    system.wait_until_consistent(user.user_id, timeout=60)

    # Salesforce answers 503 to everything: retries, and the worker is no longer ready.
    worker = system.component("to-salesforce")
    admin.set_faults(server_unavailable_share=1.0)
    system.salesconnect.create_task(user.user_id, "Call Cy", "2026-12-03")
    _, report = wait_for(
        lambda: (answer := probe(worker, "/readyz"))[0] == 503 and answer,
        timeout=30,
        what="the worker to report Salesforce failing",
    )
    assert "HTTP 503" in report["checks"]["salesforce"]["detail"], report
    admin.set_faults(server_unavailable_share=0.0)
    wait_for(lambda: probe(worker, "/readyz")[0] == 200, timeout=30, what="ready again")
    system.wait_until_consistent(user.user_id, timeout=60)

    # A validation rule refuses a Subject: that change is parked with the org's message.
    admin.set_validation_rules(
        [
            {
                "name": "No_Forbidden",
                "field": "Subject",
                "matches": "(?i)forbidden",
                "message": "Forbidden subjects are not allowed.",
            }
        ]
    )
    other = system.create_synced_user("Rule Breaker")
    system.salesconnect.create_task(other.user_id, "Forbidden call", "2026-12-04")
    parked = wait_for(
        lambda: [
            e
            for e in (json.loads(line) for line in worker.log().splitlines() if line.strip())
            if e.get("outcome") == "parked"
        ],
        timeout=30,
        what="the forbidden task to be parked",
    )
    assert parked

    # Notifications: a forged signature is refused, the old secret still accepted.
    body = json.dumps(
        dump_notification_batch(
            NotificationBatch(
                org_id=system.emulator.org_id,
                sent_at=datetime.now(UTC),
                notifications=(
                    TaskNotification(
                        task_id=task_id,
                        op=TriggerOp.UPDATE,
                        owner_id=user.salesforce_user_id,
                        actor_id=user.salesforce_user_id,
                        system_modstamp=datetime.now(UTC),
                        changed_fields=("Status",),
                    ),
                ),
            )
        ),
        separators=(",", ":"),
    ).encode()
    assert post_notification(ingress, body, "not-the-secret-at-all").status_code == 401
    assert post_notification(ingress, body, OLD_INGRESS_SECRET).status_code == 200
