"""Building messages, running consumers and worker processes for the messaging tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import Engine, select

from bridge.ledger import Ledger
from bridge.messaging import (
    APPLIED,
    Consumer,
    ConsumerSettings,
    Delivery,
    Direction,
    Outcome,
    RetryPolicy,
    Topology,
    parse_retry_tiers,
)
from schemas.task_change import (
    ChangedFields,
    Op,
    Origin,
    Owner,
    RecordRef,
    TaskChange,
)
from tests.messaging.worker_process import effects, effects_engine
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TEST_TOPOLOGY = Topology(shard_count=2, retry_tiers=parse_retry_tiers("300ms,600ms"))
SF_USER = "005000000000001AAA"


def sc_change(
    task: str = "task-1",
    *,
    user: str = "user-1",
    name: str | None = "Call back",
    details: str | None = None,
    instruction: dict[str, Any] | None = None,
    op: Op = Op.UPSERT,
    occurred_at: datetime | None = None,
) -> TaskChange:
    """A Sales Connect change (goes to-salesforce)."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = name
    if instruction is not None:
        values["details"] = json.dumps(instruction)
    elif details is not None:
        values["details"] = details
    return TaskChange(
        message_id=uuid.uuid4(),
        origin=Origin.SALESCONNECT,
        op=op,
        occurred_at=occurred_at or datetime.now(UTC).replace(microsecond=0),
        actor=user,
        owner=Owner(salesconnect_user_id=user),
        record=RecordRef(salesconnect_task_id=task),
        trace_id=uuid.uuid4().hex,
        changed=ChangedFields(**values) if op is not Op.DELETE else ChangedFields(),
    )


def declare(url: str, topology: Topology = TEST_TOPOLOGY) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        topology.declare(connection.channel())
    finally:
        connection.close()


@dataclass
class RecordingHandler:
    """An in-process handler: records every delivery and answers from a script."""

    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    batches: list[list[Delivery]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event | None = None
    hold_seconds: float = 0.0

    def __call__(self, batch: Sequence[Delivery]) -> list[Outcome]:
        with self.lock:
            self.batches.append(list(batch))
        if self.release is not None:
            self.release.wait(self.hold_seconds or 60)
        answers = []
        for delivery in batch:
            script = self.outcomes.get(delivery.message_id)
            answers.append(script.pop(0) if script else APPLIED)
        return answers

    @property
    def seen(self) -> list[Delivery]:
        with self.lock:
            return [delivery for batch in self.batches for delivery in batch]

    def seen_ids(self) -> list[str]:
        return [delivery.message_id for delivery in self.seen]


@contextlib.contextmanager
def running_consumer(
    amqp_url: str,
    handler: Any,
    ledger: Ledger,
    *,
    topology: Topology = TEST_TOPOLOGY,
    direction: Direction = Direction.TO_SALESFORCE,
    retry_policy: RetryPolicy | None = None,
    reauthenticate: Callable[[], None] | None = None,
    **settings: Any,
) -> Iterator[Consumer]:
    """A consumer running in a thread of this process; stopped (drained) on exit."""
    consumer = Consumer(
        ConsumerSettings(amqp_url=amqp_url, direction=direction, topology=topology, **settings),
        handler,
        ledger,
        retry_policy=retry_policy,
        reauthenticate=reauthenticate,
    )
    thread = threading.Thread(
        target=consumer.run, kwargs={"install_signal_handlers": False}, daemon=True
    )
    thread.start()
    try:
        wait_for(consumer.consuming.is_set, timeout=15, what="the consumer to start consuming")
        yield consumer
    finally:
        consumer.stop()
        thread.join(30)
        assert not thread.is_alive(), "consumer did not drain and stop"


class WorkerProcess:
    """`tests.messaging.worker_process` as a child process."""

    def __init__(self, tmp_path: Path, name: str, args: list[str]) -> None:
        self.ready_file = tmp_path / f"{name}.ready"
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.messaging.worker_process",
                *args,
                "--ready-file",
                str(self.ready_file),
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(
            lambda: self.ready_file.exists() or self._crashed(),
            timeout=timeout,
            what=f"worker {self.pid} to consume",
        )

    def _crashed(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited {self.process.returncode}:\n{self.log()}")
        return False

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.process.kill()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def worker_args(amqp_url: str, ledger_url: str, effects_url: str, **options: object) -> list[str]:
    args = ["--amqp-url", amqp_url, "--ledger-url", ledger_url, "--effects-url", effects_url]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def effect_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(effects).order_by(effects.c.id)))


def open_effects(url: str) -> Engine:
    return effects_engine(url)


def recent(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
