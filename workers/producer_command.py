"""`tasksync producer salesconnect|salesforce`: the processes that publish task changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import click

from bridge.ledger import Ledger
from bridge.messaging import Publisher, Topology
from bridge.messaging.connection import redact_url
from bridge.observability.events import PROGRESS
from bridge.observability.health import (
    DEFAULT_CONNECTION_GRACE,
    CheckResult,
    HealthChecks,
    recent_check,
)
from bridge.observability.metrics import watch_ledger
from bridge.observability.salesforce import SalesforceReachability
from bridge.producers.running import ProcessControl, Stopping, retry_until_done
from bridge.producers.salesconnect import FeedProducerSettings, SalesConnectFeedProducer
from bridge.producers.salesforce import CycleResult, PollerSettings, SalesforcePoller
from bridge.salesconnect.client import SalesConnectClient
from bridge.salesforce.session import SalesforceCredentials, SalesforceSession
from bridge.salesforce.tasks import SalesforceTaskGateway
from workers.operations import operations_options, setup_logging, start_operations
from workers.options import (
    amqp_url_option,
    data_dir_option,
    ledger_url_option,
    salesconnect_url_option,
    salesforce_options,
    topology_options,
)
from workers.readiness import ready_file_option, write_ready_file
from workers.wiring import build_topology, resolve_ledger_url

log = logging.getLogger("tasksync.producer")

LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def log_level_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS),
        default="info",
        show_default=True,
        help="How much to log (info: one line per published batch).",
    )(command)


def watch_producer(
    checks: HealthChecks,
    ready: threading.Event,
    *,
    max_age: float,
    salesforce: SalesforceSession | None = None,
) -> None:
    """Alive while it completes cycles or confirms publishes (a first sync may take one cycle
    long); ready once it was ready and while its last cycle ended within `max_age` seconds."""
    checks.add_liveness(
        "progress",
        recent_check(
            lambda: PROGRESS.last_activity,
            max_age=DEFAULT_CONNECTION_GRACE,
            what="completed cycle or confirmed publish",
            since=PROGRESS.started,
        ),
    )
    recent = recent_check(lambda: PROGRESS.last_success, max_age=max_age, what="completed cycle")

    def producing() -> CheckResult:
        if not ready.is_set():
            return CheckResult(False, "starting")
        return recent()

    checks.add_readiness("producing", producing)
    if salesforce is not None:
        checks.add_readiness("salesforce", SalesforceReachability(salesforce).start().check)


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        (
            amqp_url_option,
            data_dir_option,
            ledger_url_option,
            topology_options,
            salesconnect_url_option,
            ready_file_option,
            log_level_option,
            operations_options,
        )
    ):
        command = option(command)
    return command


@contextmanager
def producer_parts(
    settings: dict[str, Any], component: str, control: ProcessControl
) -> Iterator[tuple[Ledger, Publisher, Topology]]:
    """The ledger (opened patiently) and a publisher; closed, and the ready file removed, on
    the way out."""
    topology = build_topology(settings["shard_count"], settings["retry_tiers"])
    ledger_url = resolve_ledger_url(settings["ledger_url"], settings["data_dir"])
    ledger = retry_until_done(
        f"cannot open the ledger {redact_url(ledger_url)}", lambda: Ledger.open(ledger_url), control
    )
    publisher = Publisher(
        settings["amqp_url"], topology=topology, name=component, app_id=f"tasksync {component}"
    )
    ready_file: Path | None = settings["ready_file"]
    try:
        yield ledger, publisher, topology
    finally:
        publisher.close()
        ledger.close()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)


@click.group()
def producer() -> None:
    """Publish task changes from one system onto RabbitMQ, with confirms.

    Each producer keeps its position in the ledger and moves it only after RabbitMQ confirmed
    what it published, so a restart resumes without loss and a crash republishes the same
    message ids (the workers drop duplicates). SIGTERM finishes the batch in hand and exits.
    See docs/producers.md.
    """


@producer.command("salesconnect")
@common_options
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    default=500,
    show_default=True,
    help="Feed entries read, published and confirmed together.",
)
@click.option(
    "--wait",
    type=click.FloatRange(0, 30),
    default=10.0,
    show_default=True,
    help="Seconds a feed read waits for new entries when there are none (long-poll).",
)
def salesconnect_feed(**settings: Any) -> None:
    """Follow the Sales Connect change feed and publish onto tasksync.salesconnect.changes.

    Publishes creates, edits, deletes and restores of synced users' tasks; skips the bridge's
    own writes, tasks that existed before sync was turned on, users with sync off or not
    connected to Salesforce, and settings events. The cursor is the ledger's
    "salesconnect-feed"; `tasksync status` shows its lag.
    """
    component = "producer salesconnect"
    setup_logging(settings, component)
    operations = start_operations(settings, "salesconnect-producer")
    ready_now = threading.Event()
    watch_producer(operations.checks, ready_now, max_age=settings["wait"] + 60)
    control = ProcessControl()
    control.install_signal_handlers()
    try:
        with producer_parts(settings, component, control) as (ledger, publisher, _):
            watch_ledger(ledger.sizes)
            feed = SalesConnectFeedProducer(
                SalesConnectClient(settings["salesconnect_url"]),
                publisher,
                ledger,
                control=control,
                settings=FeedProducerSettings(
                    page_size=settings["page_size"], wait_seconds=settings["wait"]
                ),
            )

            def ready(cursor: int) -> None:
                ready_now.set()
                write_ready_file(
                    settings["ready_file"],
                    {
                        "component": component,
                        "salesconnect_url": settings["salesconnect_url"],
                        "cursor": cursor,
                    },
                )
                log.info("following %s from feed position %d", settings["salesconnect_url"], cursor)

            feed.run(on_ready=ready)
    except Stopping:
        log.info("stopped before it was ready")
    finally:
        operations.close()


@producer.command("salesforce")
@common_options
@salesforce_options
@click.option(
    "--interval",
    envvar="TASKSYNC_POLL_INTERVAL",
    show_envvar=True,
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between polls (notifications are the fast path; this is the backstop).",
)
@click.option(
    "--overlap",
    envvar="TASKSYNC_POLL_OVERLAP",
    show_envvar=True,
    type=click.FloatRange(0, 3600),
    default=15.0,
    show_default=True,
    help="Seconds before the cursor each poll reads again, for rows committed late or sharing "
    "a SystemModstamp; raise it for orgs with long transactions.",
)
@click.option(
    "--settle",
    type=click.FloatRange(0, 60),
    default=2.0,
    show_default=True,
    help="Rows modified less than this many seconds ago are left to the next poll, so the "
    "poller does not race the worker that just wrote them.",
)
def salesforce_poller(salesforce: SalesforceCredentials, **settings: Any) -> None:
    """Poll Salesforce for every connected user's Task changes and run first syncs.

    Every --interval: one queryAll for all connected users together (SystemModstamp from the
    cursor minus --overlap), getDeleted every minute for purged deletes, and the first sync of
    each user who turned sync on (24-hour import; on a re-enable, the last 15 days' deletes),
    with its state shown on the Settings page. Publishes onto tasksync.salesforce.changes.
    """
    component = "producer salesforce"
    setup_logging(settings, component, salesforce)
    operations = start_operations(settings, "salesforce-poller")
    session = SalesforceSession(salesforce)
    ready_now = threading.Event()
    watch_producer(
        operations.checks, ready_now, max_age=3 * settings["interval"] + 60, salesforce=session
    )
    control = ProcessControl()
    control.install_signal_handlers()
    try:
        with producer_parts(settings, component, control) as (ledger, publisher, _):
            watch_ledger(ledger.sizes)
            poller = SalesforcePoller(
                SalesforceTaskGateway(session),
                SalesConnectClient(settings["salesconnect_url"]),
                publisher,
                ledger,
                control=control,
                settings=PollerSettings(
                    interval=settings["interval"],
                    overlap=timedelta(seconds=settings["overlap"]),
                    settle=timedelta(seconds=settings["settle"]),
                ),
            )

            def ready(result: CycleResult) -> None:
                ready_now.set()
                write_ready_file(
                    settings["ready_file"],
                    {
                        "component": component,
                        "salesforce_login_url": salesforce.login_url,
                        "salesconnect_url": settings["salesconnect_url"],
                        "interval": settings["interval"],
                        "users": result.users,
                    },
                )
                log.info(
                    "polling Salesforce every %g s for %d connected users",
                    settings["interval"],
                    result.users,
                )

            poller.run(on_ready=ready)
    except Stopping:
        log.info("stopped before it was ready")
    finally:
        operations.close()
