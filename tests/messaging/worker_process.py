"""A worker process for the fault tests: a real `Consumer` with a test handler whose effects are
written durably to a database, so a test can count exactly what was applied, by whom, when.

    python -m tests.messaging.worker_process --amqp-url ... --ledger-url ... --effects-url ...

The handler, per message:
  * marks the task as being applied in `applying` (a second process applying the same task at
    the same moment finds the mark and records a row in `overlaps`);
  * waits `--apply-seconds` (a slow Salesforce);
  * commits one row to `effects` (the effect), then clears the mark;
  * obeys the test instruction in the change's `details`, JSON like
    `{"fail": "transient", "times": 2}` (fail the first 2 attempts), `{"park": "reason"}`.
It touches `--ready-file` once consuming, and exits 0 after SIGTERM has drained.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
)
from sqlalchemy.dialects import postgresql, sqlite

from bridge.errors import ErrorKind, TaskSyncError
from bridge.ledger import Ledger
from bridge.messaging import (
    APPLIED,
    Consumer,
    ConsumerSettings,
    Delivery,
    Direction,
    Outcome,
    Topology,
    parse_retry_tiers,
    parse_shard_selection,
)
from schemas.task_change import UNSET

metadata = MetaData()
effects = Table(
    "test_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("task_key", String(128), nullable=False),
    Column("value", String(200)),
    Column("pid", Integer, nullable=False),
    Column("batch_id", String(32), nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_ns", BigInteger, nullable=False),
    Column("finished_ns", BigInteger, nullable=False),
)
applying = Table(
    "test_applying",
    metadata,
    Column("task_key", String(128), primary_key=True),
    Column("pid", Integer, nullable=False),
)
overlaps = Table(
    "test_overlaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_key", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("other_pid", Integer),
)


def effects_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

    metadata.create_all(engine)
    return engine


class RecordingHandler:
    """Applies each message by writing its effect; see the module docstring."""

    def __init__(self, engine: Engine, apply_seconds: float) -> None:
        self.engine = engine
        self.apply_seconds = apply_seconds
        self.pid = os.getpid()
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def __call__(self, batch: Sequence[Delivery]) -> list[Outcome]:
        # "<lane>-<random>": the consumer's lane thread is named "... lane N".
        lane = threading.current_thread().name.rpartition(" ")[2]
        batch_id = f"{lane}-{uuid.uuid4().hex[:24]}"
        return [self.apply(delivery, batch_id, len(batch)) for delivery in batch]

    def apply(self, delivery: Delivery, batch_id: str, batch_size: int) -> Outcome:
        details = delivery.change.changed.details
        instruction = json.loads(details) if details is not UNSET and details else {}
        if "park" in instruction:
            return Outcome.park(str(instruction["park"]))
        if instruction.get("fail") and delivery.attempts < int(instruction.get("times", 1)):
            kind = ErrorKind(instruction["fail"])
            return Outcome.failed(TaskSyncError(kind, "TEST_FAILURE", f"told to fail ({kind})"))
        started = time.monotonic_ns()
        with self.engine.begin() as conn:
            marked = conn.execute(
                self._insert(applying)
                .values(task_key=delivery.task_key, pid=self.pid)
                .on_conflict_do_nothing()
                .returning(applying.c.task_key)
            ).first()
            if marked is None:
                other = conn.execute(
                    applying.select().where(applying.c.task_key == delivery.task_key)
                ).first()
                conn.execute(
                    insert(overlaps).values(
                        task_key=delivery.task_key,
                        pid=self.pid,
                        other_pid=other.pid if other is not None else None,
                    )
                )
        if self.apply_seconds:
            time.sleep(self.apply_seconds)
        name = delivery.change.changed.name
        with self.engine.begin() as conn:
            conn.execute(
                insert(effects).values(
                    message_id=delivery.message_id,
                    task_key=delivery.task_key,
                    value=None if name is UNSET else str(name),
                    pid=self.pid,
                    batch_id=batch_id,
                    batch_size=batch_size,
                    attempts=delivery.attempts,
                    started_ns=started,
                    finished_ns=time.monotonic_ns(),
                )
            )
            if marked is not None:
                conn.execute(
                    applying.delete().where(
                        applying.c.task_key == delivery.task_key, applying.c.pid == self.pid
                    )
                )
        return APPLIED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--ledger-url", required=True)
    parser.add_argument("--effects-url", required=True)
    parser.add_argument("--direction", default=Direction.TO_SALESFORCE.value)
    parser.add_argument("--shard-count", type=int, default=2)
    parser.add_argument("--shards", default="all")
    parser.add_argument("--retry-tiers", default="300ms,600ms")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--prefetch", type=int, default=50)
    parser.add_argument("--apply-seconds", type=float, default=0.0)
    parser.add_argument("--heartbeat", type=int, default=30)
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s worker {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    topology = Topology(
        shard_count=args.shard_count, retry_tiers=parse_retry_tiers(args.retry_tiers)
    )
    settings = ConsumerSettings(
        amqp_url=args.amqp_url,
        direction=Direction(args.direction),
        topology=topology,
        shards=parse_shard_selection(args.shards, args.shard_count),
        prefetch=args.prefetch,
        batch_size=args.batch_size,
        heartbeat=args.heartbeat,
        lease_seconds=args.lease_seconds,
        name=f"test worker {os.getpid()}",
    )
    ledger = Ledger.open(args.ledger_url)
    handler = RecordingHandler(effects_engine(args.effects_url), args.apply_seconds)
    consumer = Consumer(settings, handler, ledger)
    if args.ready_file is not None:
        ready_file: Path = args.ready_file

        def announce() -> None:
            if consumer.consuming.wait(60):
                ready_file.write_text(str(os.getpid()))

        threading.Thread(target=announce, daemon=True).start()
    consumer.run()
    logging.info("drained: %s", consumer.stats)
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
