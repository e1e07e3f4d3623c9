"""`tasksync worker`: the processes that apply task changes to one side."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bridge.ledger import Ledger
from bridge.messaging import (
    BatchHandler,
    Consumer,
    ConsumerSettings,
    Direction,
    RetryPolicy,
    parse_shard_selection,
)
from bridge.messaging.consumer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LANES,
    DEFAULT_PREFETCH,
    MAX_BATCH_SIZE,
    MAX_LANES,
)
from bridge.observability.health import ConnectionWatch, HealthChecks, flag_check
from bridge.observability.metrics import format_shards, watch_ledger
from bridge.observability.salesforce import SalesforceReachability
from bridge.salesconnect.client import SalesConnectClient
from bridge.salesforce.session import SalesforceCredentials, SalesforceSession
from bridge.salesforce.tasks import SalesforceTaskGateway
from bridge.sync.directory import SyncUserDirectory
from bridge.sync.to_salesconnect import SalesConnectTaskApplier
from bridge.sync.to_salesforce import SalesforceTaskApplier
from workers.operations import operations_options, setup_logging, start_operations
from workers.options import (
    amqp_url_option,
    data_dir_option,
    ledger_url_option,
    salesconnect_url_option,
    salesforce_options,
    shards_option,
    topology_options,
)
from workers.readiness import ready_file_option, write_ready_file
from workers.wiring import build_topology, resolve_ledger_url

log = logging.getLogger("tasksync.worker")

# How stale the list of synced users may be when a worker decides to apply: a user who turns
# sync off is honoured within this long.
OWNER_CHECK_SECONDS = 1.0


def worker_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        (
            amqp_url_option,
            data_dir_option,
            ledger_url_option,
            topology_options,
            shards_option,
            salesconnect_url_option,
            click.option(
                "--batch-size",
                type=click.IntRange(1, MAX_BATCH_SIZE),
                default=DEFAULT_BATCH_SIZE,
                show_default=True,
                help="At most this many waiting messages are applied together (towards "
                "Salesforce, up to 1,000 records in one API call); an idle worker applies each "
                "one as it comes.",
            ),
            click.option(
                "--prefetch",
                type=click.IntRange(1, 10_000),
                default=DEFAULT_PREFETCH,
                show_default=True,
                help="Unacknowledged messages held per shard.",
            ),
            click.option(
                "--lanes",
                type=click.IntRange(1, MAX_LANES),
                default=DEFAULT_LANES,
                show_default=True,
                help="Batches applied at once, each from its own shards (a task's changes stay "
                "in order): one batch's waiting on Salesforce, Sales Connect or the ledger "
                "overlaps another's work. At most the number of shards consumed.",
            ),
            click.option(
                "--max-attempts",
                type=click.IntRange(1, 100),
                default=10,
                show_default=True,
                help="Failures a message may have before it is parked.",
            ),
            ready_file_option,
            operations_options,
            click.option(
                "--log-level",
                type=click.Choice(["debug", "info", "warning", "error"]),
                default="info",
                show_default=True,
            ),
        )
    ):
        command = option(command)
    return command


@click.group()
def worker() -> None:
    """Apply task changes from RabbitMQ to one side, exactly once in effect.

    Each worker consumes its direction's shard queues (every shard, or those --shards names),
    applies batches, records what it applied in the ledger, retries what failed for a
    passing reason through the retry tiers, and parks what a person must fix. SIGTERM finishes
    the batch in hand and exits. See docs/sync.md and docs/messaging.md.
    """


@worker.command("to-salesforce")
@worker_options
@salesforce_options
def to_salesforce(salesforce: SalesforceCredentials, **settings: Any) -> None:
    """Apply Sales Connect changes to Salesforce Tasks (the tasksync.to-salesforce queues).

    Creates upsert on Sales_Connect_Id__c, updates write only the fields that changed, and a
    backlog goes out as sObject Collections of up to 200 records a call.
    """
    session = SalesforceSession(salesforce)
    directory = SyncUserDirectory(
        SalesConnectClient(settings["salesconnect_url"]), max_age=OWNER_CHECK_SECONDS
    )
    ledger = Ledger.open(resolve_ledger_url(settings["ledger_url"], settings["data_dir"]))
    applier = SalesforceTaskApplier(
        SalesforceTaskGateway(session), directory.client, ledger, directory
    )

    def log_in_again() -> None:
        session.reauthenticate()

    _run(Direction.TO_SALESFORCE, applier, ledger, log_in_again, settings, salesforce=session)


@worker.command("to-salesconnect")
@worker_options
def to_salesconnect(**settings: Any) -> None:
    """Apply Salesforce changes to Sales Connect tasks (the tasksync.to-salesconnect queues).

    Imports create tasks linked to their Salesforce Task; edits are written with If-Match and
    X-Sync-Origin: salesforce, so they are never sent back.
    """
    directory = SyncUserDirectory(
        SalesConnectClient(settings["salesconnect_url"]), max_age=OWNER_CHECK_SECONDS
    )
    ledger = Ledger.open(resolve_ledger_url(settings["ledger_url"], settings["data_dir"]))
    _run(
        Direction.TO_SALESCONNECT,
        SalesConnectTaskApplier(directory.client, ledger, directory),
        ledger,
        None,
        settings,
    )


def _run(
    direction: Direction,
    handler: BatchHandler,
    ledger: Ledger,
    reauthenticate: Callable[[], None] | None,
    settings: dict[str, Any],
    *,
    salesforce: SalesforceSession | None = None,
) -> None:
    setup_logging(settings, direction.value, salesforce.credentials if salesforce else None)
    topology = build_topology(settings["shard_count"], settings["retry_tiers"])
    shards = parse_shard_selection(settings["shards"], topology.shard_count)
    operations = start_operations(settings, direction.value, shards=format_shards(shards))
    consumer = Consumer(
        ConsumerSettings(
            amqp_url=settings["amqp_url"],
            direction=direction,
            topology=topology,
            shards=shards,
            prefetch=settings["prefetch"],
            batch_size=settings["batch_size"],
            lanes=settings["lanes"],
        ),
        handler,
        ledger,
        retry_policy=RetryPolicy(max_attempts=settings["max_attempts"]),
        reauthenticate=reauthenticate,
    )
    ready_file: Path | None = settings["ready_file"]

    def announce() -> None:
        if consumer.consuming.wait():
            write_ready_file(ready_file, {"direction": direction.value, "shards": list(shards)})
            log.info("consuming %s", ", ".join(topology.shard_queues(direction, shards)))

    threading.Thread(target=announce, name="ready-file", daemon=True).start()
    _watch(operations.checks, consumer, ledger, salesforce)
    try:
        consumer.run()
    finally:
        operations.close()
    ledger.close()


def _watch(
    checks: HealthChecks,
    consumer: Consumer,
    ledger: Ledger,
    salesforce: SalesforceSession | None,
) -> None:
    """Alive while connected to RabbitMQ (or reconnecting within the grace period); ready while
    consuming and, for the to-salesforce worker, while Salesforce answers."""
    checks.add_liveness("rabbitmq", ConnectionWatch(consumer.consuming.is_set, "AMQP").check)
    checks.add_readiness(
        "consuming",
        flag_check(
            consumer.consuming,
            f"consuming {', '.join(consumer.settings.queues)}",
            "not consuming (connecting to RabbitMQ)",
        ),
    )
    if salesforce is not None:
        checks.add_readiness("salesforce", SalesforceReachability(salesforce).start().check)
    watch_ledger(ledger.sizes)
