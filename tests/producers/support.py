"""Running producer and ingress processes in tests, and reading what they published.

* `BridgeProcess`: `tasksync <args> --ready-file ...` as a child process; `start()` waits (with a
  deadline) for the ready file and returns its JSON; `stop()` sends SIGTERM, `kill()` SIGKILL.
* `PublishedMessages`: takes every message now waiting in a work queue of a test vhost whose
  topology has one shard per direction, and keeps them (body, message id, routing key) in
  arrival order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pika
import pytest

from bridge.messaging import Direction, Topology, parse_retry_tiers
from schemas.task_change import TaskChange, load_task_change
from tests.support.emulator import EmulatorProcess
from tests.support.rabbitmq import BrokerVhost
from tests.support.waiting import wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
TEST_TOPOLOGY: Final = Topology(shard_count=1, retry_tiers=parse_retry_tiers("5s"))
TOPOLOGY_ARGS: Final = ("--shard-count", "1", "--retry-tiers", "5s")


def tasksync() -> str:
    return str(Path(sys.executable).with_name("tasksync"))


class BridgeProcess:
    """One `tasksync` command of the bridge, run as a child process with a ready file."""

    def __init__(self, workdir: Path, name: str, args: Sequence[str]) -> None:
        self.workdir = workdir
        self.name = name
        self.args = list(args)
        self.ready_file = workdir / f"{name}.ready.json"
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 30.0) -> dict[str, Any]:
        process = self.launch()

        def ready() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                info: dict[str, Any] = json.loads(self.ready_file.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == process.pid else None

        try:
            self.info = wait_for(ready, timeout=timeout, what=f"{self.name} to be ready")
        except AssertionError:
            self.kill()
            raise AssertionError(f"{self.name} never got ready:\n{self.log()[-3000:]}") from None
        return self.info

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to be ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("TASKSYNC_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [tasksync(), *self.args, "--ready-file", str(self.ready_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )
        return self.process

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; the exit status."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
                raise AssertionError(
                    f"{self.name} ignored SIGTERM:\n{self.log()[-3000:]}"
                ) from None
        self.process = None
        return int(process.returncode)

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(15)
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> BridgeProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Message:
    change: TaskChange
    message_id: str
    routing_key: str
    exchange: str
    body: bytes


@dataclass
class PublishedMessages:
    """Everything published to one direction's work queue, in arrival order.

    Keeps one consumer on the queue for as long as it lives (close() ends it): taking a
    snapshot with a fresh consumer would lose messages that arrive while it is cancelled."""

    vhost: BrokerVhost
    direction: Direction
    messages: list[Message] = field(default_factory=list)
    _connection: Any = None

    @property
    def queue(self) -> str:
        return TEST_TOPOLOGY.shard_queue(self.direction, 0)

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.messages.append(
            Message(
                change=load_task_change(body),
                message_id=str(properties.message_id),
                routing_key=str(method.routing_key),
                exchange=str(method.exchange),
                body=body,
            )
        )

    def collect(self) -> list[Message]:
        if self._connection is None:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.vhost.amqp_url))
            channel = self._connection.channel()
            channel.basic_consume(self.queue, self._on_message, auto_ack=True)
        self._connection.process_data_events(time_limit=0.05)
        return self.messages

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
        self._connection = None

    def wait_until(
        self, condition: Callable[[list[Message]], bool], *, timeout: float = 15.0, what: str
    ) -> list[Message]:
        def met() -> list[Message] | None:
            messages = self.collect()
            return messages if condition(messages) else None

        return wait_for(met, timeout=timeout, interval=0.05, what=what)

    def wait_for_task(
        self,
        key: Callable[[TaskChange], str | None],
        task_id: str,
        *,
        count: int = 1,
        **kwargs: Any,
    ) -> list[Message]:
        """Wait until `count` messages about `task_id` arrived; return those."""
        self.wait_until(
            lambda messages: sum(key(m.change) == task_id for m in messages) >= count,
            what=f"{count} message(s) about {task_id}",
            **kwargs,
        )
        return [m for m in self.messages if key(m.change) == task_id]


def declare_topology(vhost: BrokerVhost) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(vhost.amqp_url))
    try:
        TEST_TOPOLOGY.declare(connection.channel())
    finally:
        connection.close()


def salesforce_args(emulator: EmulatorProcess) -> list[str]:
    user = emulator.integration_user
    return [
        "--salesforce-login-url",
        emulator.instance_url,
        "--salesforce-username",
        user.username,
        "--salesforce-password",
        user.password,
        "--salesforce-client-id",
        emulator.client_id,
        "--salesforce-client-secret",
        emulator.client_secret,
        "--salesforce-ca-bundle",
        emulator.ca_path,
    ]


def fake_salesforce_user_id() -> str:
    """An id shaped like a Salesforce user id (the Sales Connect service checks the shape)."""
    return "005" + uuid.uuid4().hex[:15]


@pytest.fixture
def broker(rabbit_vhost: BrokerVhost) -> Iterator[BrokerVhost]:
    """A fresh vhost with the tasksync topology declared (one shard per direction)."""
    declare_topology(rabbit_vhost)
    yield rabbit_vhost
