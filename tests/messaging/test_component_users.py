"""Each component connects to RabbitMQ as its own least-privilege user: the documented
configurations (compose, the systemd examples) name the user deploy/rabbitmq/definitions.json
made for that component, and those users, imported into a fresh vhost on the shared broker,
can do the component's job and nothing more.

The users are global on a broker, so each is imported under a name of this test's own (the
definitions' name plus a random suffix) with the definitions' password hash, tags and
permission patterns, and deleted afterwards with the vhost. tasksync-admin is left out: it is
no component, and an administrator tag on the shared broker is more than a test needs (the
topology is imported through the management API instead, as the file would be).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import pika
import pika.exceptions
import pytest
import requests
import yaml

from bridge.errors import ErrorKind, TaskSyncError
from bridge.ledger import Ledger
from bridge.messaging import Direction, Outcome, Publisher, PublishError, Topology
from bridge.messaging.definitions import dev_password
from bridge.messaging.envelope import task_key
from schemas.task_change import Origin, Owner, RecordRef, TaskChange
from tests.messaging.helpers import SF_USER, RecordingHandler, running_consumer, sc_change
from tests.support.rabbitmq import SHARED_AMQP_URL, SHARED_MANAGEMENT_URL, Management, amqp_url_for
from tests.support.waiting import wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = ROOT / "deploy"
DEFINITIONS: Final = DEPLOY / "rabbitmq" / "definitions.json"
TOPOLOGY: Final = Topology()  # what definitions.json declares

# Which definitions user each long-running command connects as.
COMMAND_USERS: Final = {
    ("worker", "to-salesforce"): "tasksync-worker-to-salesforce",
    ("worker", "to-salesconnect"): "tasksync-worker-to-salesconnect",
    ("producer", "salesconnect"): "tasksync-salesconnect-producer",
    ("producer", "salesforce"): "tasksync-salesforce-poller",
    ("ingress",): "tasksync-salesforce-ingress",
}


def definitions() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEFINITIONS.read_text())
    return document


def command_path(argv: list[str]) -> tuple[str, ...]:
    """`tasksync worker to-salesforce --shards all` -> ("worker", "to-salesforce")."""
    words = [Path(argv[0]).name, *argv[1:]]
    assert words[0] == "tasksync", argv
    path: list[str] = []
    for word in words[1:]:
        if word.startswith("-"):
            break
        path.append(word)
    return tuple(path)


def env_settings(path: Path) -> dict[str, str]:
    settings = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def amqp_user(url: str) -> str | None:
    username = urlsplit(re.sub(r"\$\{[^}]+\}", "password", url)).username
    return unquote(username) if username else None


# -- the documented configurations -------------------------------------------------------------


def test_every_component_is_given_a_user_the_definitions_make_for_it() -> None:
    users = {user["name"]: user for user in definitions()["users"]}
    permissions = {p["user"]: p for p in definitions()["permissions"]}
    for path, user in COMMAND_USERS.items():
        assert user in users, f"{' '.join(path)}: no user {user} in definitions.json"
        assert users[user]["tags"] == [], f"{user} needs no management tag"
        if path[0] != "worker":  # producers declare and read nothing
            assert (permissions[user]["configure"], permissions[user]["read"]) == ("^$", "^$")
    # Producers write to their origin's exchange only; workers read their own direction.
    assert re.fullmatch(
        permissions["tasksync-salesconnect-producer"]["write"], "tasksync.salesconnect.changes"
    )
    for poster in ("tasksync-salesforce-poller", "tasksync-salesforce-ingress"):
        assert re.fullmatch(permissions[poster]["write"], "tasksync.salesforce.changes")
        assert not re.fullmatch(permissions[poster]["write"], "tasksync.salesconnect.changes")


def test_compose_runs_each_component_as_its_own_user() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    seen = {}
    for name, service in compose["services"].items():
        command = service.get("command")
        if not (isinstance(command, list) and command and command[0] == "tasksync"):
            continue
        path = command_path(command)
        if path not in COMMAND_USERS:
            continue
        url = service.get("environment", {}).get("TASKSYNC_AMQP_URL")
        assert url, f"compose service {name} sets no TASKSYNC_AMQP_URL of its own"
        assert amqp_user(url) == COMMAND_USERS[path], f"compose service {name}: {url}"
        seen[path] = name
    assert set(seen) == set(COMMAND_USERS), set(COMMAND_USERS) - set(seen)
    # The shared env files give no AMQP URL: one there would hand every service one user.
    for shared in (DEPLOY / "local.env", DEPLOY / "tasksync.env.example"):
        assert "TASKSYNC_AMQP_URL" not in env_settings(shared), shared.name
        assert "TASKSYNC_AMQP_PASSWORD_FILE" not in env_settings(shared), shared.name


def test_systemd_runs_each_component_as_its_own_user_with_its_password_in_a_file() -> None:
    seen = {}
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text()
        (exec_start,) = re.findall(r"^ExecStart=(.+)$", text, re.MULTILINE)
        path = command_path(shlex.split(exec_start.replace("%i", "all")))
        env_files = re.findall(r"^EnvironmentFile=-?(.+)$", text, re.MULTILINE)
        settings: dict[str, str] = {}
        for env_file in env_files:
            name = Path(env_file).name
            if name == "tasksync.env":
                example = DEPLOY / "tasksync.env.example"
            else:
                example = DEPLOY / "systemd" / f"{name.replace('%i', '2-3')}.example"
            if example.exists():
                settings.update(env_settings(example))
        url = settings.get("TASKSYNC_AMQP_URL")
        assert url, f"{unit.name}: no TASKSYNC_AMQP_URL in its environment files"
        assert amqp_user(url) == COMMAND_USERS[path], f"{unit.name}: {url}"
        assert urlsplit(url).password is None, f"{unit.name}: the password belongs in a file"
        assert settings.get("TASKSYNC_AMQP_PASSWORD_FILE"), unit.name
        assert urlsplit(url).scheme == "amqps" and settings.get("TASKSYNC_AMQP_CA_FILE"), unit.name
        seen[path] = unit.name
    assert set(seen) == set(COMMAND_USERS), set(COMMAND_USERS) - set(seen)


# -- the users on a broker -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedUsers:
    """The definitions' users, imported under names of this test's own into `vhost`."""

    vhost: str
    names: dict[str, str]  # definitions name -> name on the broker

    def url(self, user: str) -> str:
        return amqp_url_for(
            SHARED_AMQP_URL, self.vhost, user=self.names[user], password=dev_password(user)
        )


@pytest.fixture(scope="module")
def imported() -> Iterator[ImportedUsers]:
    """A fresh vhost with the definitions' topology, users and permissions; all removed after."""
    document = definitions()
    management = Management(SHARED_MANAGEMENT_URL)
    suffix = uuid.uuid4().hex[:8]
    vhost = f"tasksync-users-{suffix}"
    users = ImportedUsers(vhost, {})
    management.create_vhost(vhost)  # with guest's permissions, to inspect queues
    try:
        topology = {
            key: [{**item, "vhost": vhost} for item in document[key]]
            for key in ("queues", "exchanges", "bindings")
        }
        management.request("POST", f"definitions/{quote(vhost, safe='')}", json=topology)
        by_name = {user["name"]: user for user in document["users"]}
        for permission in document["permissions"]:
            name = permission["user"]
            if "administrator" in by_name[name]["tags"]:
                continue
            imported_name = f"{name}-{suffix}"
            users.names[name] = imported_name
            management.request(
                "PUT",
                f"users/{quote(imported_name, safe='')}",
                json={
                    "password_hash": by_name[name]["password_hash"],
                    "hashing_algorithm": by_name[name]["hashing_algorithm"],
                    "tags": ",".join(by_name[name]["tags"]),
                },
            )
            management.request(
                "PUT",
                f"permissions/{quote(vhost, safe='')}/{quote(imported_name, safe='')}",
                json={key: permission[key] for key in ("configure", "write", "read")},
            )
        yield users
    finally:
        for imported_name in users.names.values():
            with contextlib.suppress(requests.HTTPError):
                management.request("DELETE", f"users/{quote(imported_name, safe='')}")
        management.delete_vhost(vhost)


@contextlib.contextmanager
def channel_as(users: ImportedUsers, user: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(users.url(user)))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def refused(users: ImportedUsers, user: str, action: Any) -> str:
    """The broker's reply when `user` tries `action` on a channel (403 ACCESS_REFUSED)."""
    with channel_as(users, user) as channel:
        try:
            action(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            assert exc.reply_code == 403, exc
            return str(exc.reply_text)
    raise AssertionError(f"{user} was allowed to do it")


def depth(users: ImportedUsers, queue: str) -> int:
    url = amqp_url_for(SHARED_AMQP_URL, users.vhost)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def salesforce_change(number: int) -> TaskChange:
    return replace(
        sc_change(f"task-sf-{number}"),
        origin=Origin.SALESFORCE,
        owner=Owner(salesforce_user_id=SF_USER),
        record=RecordRef(salesforce_task_id=f"00T{number:012d}AAA"),
    )


def shard_queue(change: TaskChange, direction: Direction) -> str:
    return TOPOLOGY.shard_queue(direction, TOPOLOGY.shard_of(task_key(change)))


def publish_to(exchange: str) -> Any:
    def action(channel: Any) -> None:
        channel.confirm_delivery()
        channel.basic_publish(exchange, "upsert.x", b"{}")

    return action


def consume(queue: str) -> Any:
    return lambda channel: channel.basic_consume(queue, lambda *_: None)


def test_producers_publish_to_their_own_side_and_nothing_else(imported: ImportedUsers) -> None:
    change = sc_change("task-users-p")
    to_salesforce = shard_queue(change, Direction.TO_SALESFORCE)
    before = depth(imported, to_salesforce)
    with Publisher(imported.url("tasksync-salesconnect-producer"), topology=TOPOLOGY) as producer:
        producer.publish(change)
        with pytest.raises(PublishError, match="ACCESS_REFUSED"):
            producer.publish(salesforce_change(1))
    assert depth(imported, to_salesforce) == before + 1

    for number, poster in enumerate(("tasksync-salesforce-poller", "tasksync-salesforce-ingress")):
        change = salesforce_change(10 + number)
        queue = shard_queue(change, Direction.TO_SALESCONNECT)
        before = depth(imported, queue)
        with Publisher(imported.url(poster), topology=TOPOLOGY) as publisher:
            publisher.publish(change)
            with pytest.raises(PublishError, match="ACCESS_REFUSED"):
                publisher.publish(sc_change(f"task-{poster}"))
        assert depth(imported, queue) == before + 1

    for producer_user in (
        "tasksync-salesconnect-producer",
        "tasksync-salesforce-poller",
        "tasksync-salesforce-ingress",
    ):
        reply = refused(imported, producer_user, consume(to_salesforce))
        assert "ACCESS_REFUSED" in reply and to_salesforce in reply, reply
        reply = refused(
            imported, producer_user, consume(TOPOLOGY.shard_queue(Direction.TO_SALESCONNECT, 0))
        )
        assert "ACCESS_REFUSED" in reply, reply


def test_a_worker_consumes_and_retries_its_direction_and_cannot_touch_the_other(
    imported: ImportedUsers, tmp_path: Path
) -> None:
    applied, failing = sc_change("task-users-w1"), sc_change("task-users-w2")
    handler = RecordingHandler(
        outcomes={
            str(failing.message_id): [
                Outcome.failed(TaskSyncError(ErrorKind.TRANSIENT, "UNABLE_TO_LOCK_ROW", "locked"))
            ]
        }
    )
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    worker = "tasksync-worker-to-salesforce"
    with running_consumer(
        imported.url(worker),
        handler,
        ledger,
        topology=TOPOLOGY,
        direction=Direction.TO_SALESFORCE,
    ) as consumer:
        with Publisher(
            imported.url("tasksync-salesconnect-producer"), topology=TOPOLOGY
        ) as producer:
            producer.publish_many([applied, failing])
        wait_for(
            lambda: (
                str(applied.message_id) in handler.seen_ids()
                and str(failing.message_id) in handler.seen_ids()
                and consumer.stats.retried >= 1
            ),
            timeout=20,
            what="one change applied and one sent to the retry tier by the worker's user",
        )
    ledger.close()
    retry_queue = TOPOLOGY.retry_queue(Direction.TO_SALESFORCE, TOPOLOGY.retry_tiers[0])
    assert depth(imported, retry_queue) >= 1

    for other_side in ("tasksync.salesforce.changes", "tasksync.salesconnect.changes"):
        reply = refused(imported, worker, publish_to(other_side))
        assert "ACCESS_REFUSED" in reply and other_side in reply, reply
    other_queue = TOPOLOGY.shard_queue(Direction.TO_SALESCONNECT, 0)
    reply = refused(imported, worker, consume(other_queue))
    assert "ACCESS_REFUSED" in reply and other_queue in reply, reply
    reply = refused(imported, "tasksync-worker-to-salesconnect", consume(retry_queue))
    assert "ACCESS_REFUSED" in reply, reply
