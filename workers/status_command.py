"""`tasksync status`: queues, rates, consumers, parked messages, ledger size and producer lag."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bridge.ledger import Ledger
from bridge.messaging import PARKED_QUEUE, Topology
from bridge.messaging.connection import connection_parameters
from bridge.messaging.management import ManagementApi, ManagementApiError, QueueStatus
from workers.options import (
    amqp_url_option,
    data_dir_option,
    ledger_url_option,
    management_url_option,
    topology_options,
)
from workers.wiring import (
    EXIT_LEDGER,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    build_topology,
    resolve_ledger_url,
)


@click.command()
@amqp_url_option
@management_url_option
@data_dir_option
@ledger_url_option
@topology_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
def status(
    *,
    amqp_url: str,
    management_url: str,
    data_dir: Path,
    ledger_url: str | None,
    shard_count: int,
    retry_tiers: str,
    as_json: bool,
) -> None:
    """Show each tasksync queue (depth, ready, unacked, consumers, publish and deliver rates),
    the parked count, the ledger's size and each producer's lag.

    Reads RabbitMQ's management API for the vhost of --amqp-url, and the ledger.

    Exit codes: 0 all reachable and every queue declared; 3 management API unreachable or
    refusing; 4 some tasksync queues are missing (run `tasksync topology declare`); 5 the
    ledger is unreachable. The report shows whatever could be read.
    """
    topology = build_topology(shard_count, retry_tiers)
    vhost = connection_parameters(amqp_url, name="-").virtual_host
    report: dict[str, Any] = {"vhost": vhost, "checked_at": _now()}
    code = EXIT_OK
    try:
        queues = ManagementApi(management_url).queues(vhost)
        report["queues"] = [queue.as_dict() for queue in queues]
        found = {queue.name for queue in queues}
        missing = sorted({q.name for q in topology.queues()} - found)
        report["missing_queues"] = missing
        report["parked"] = next((q.messages for q in queues if q.name == PARKED_QUEUE), None)
        if missing:
            code = EXIT_NOT_FOUND
    except ManagementApiError as exc:
        report["broker_error"] = str(exc)
        queues = []
        code = EXIT_UNREACHABLE
    try:
        with Ledger.open(resolve_ledger_url(ledger_url, data_dir)) as ledger:
            report["ledger"] = ledger.sizes()
            report["producers"] = [
                {
                    "name": cursor.name,
                    "position_at": cursor.position_at.isoformat() if cursor.position_at else None,
                    "updated_at": cursor.updated_at.isoformat(),
                    "lag_seconds": _lag(cursor.position_at or cursor.updated_at),
                }
                for cursor in ledger.cursors()
            ]
    except Exception as exc:
        report["ledger_error"] = f"{type(exc).__name__}: {exc}"
        code = code or EXIT_LEDGER
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_report(report, queues, topology)
    raise SystemExit(code)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _lag(since: datetime) -> float:
    return round((datetime.now(UTC) - since).total_seconds(), 1)


def _print_report(report: dict[str, Any], queues: list[QueueStatus], topology: Topology) -> None:
    click.echo(f"vhost {report['vhost']}  (shards per direction: {topology.shard_count})")
    if "broker_error" in report:
        click.echo(f"RabbitMQ: {report['broker_error']}")
    else:
        header = f"{'queue':<40} {'ready':>7} {'unacked':>7} {'cons':>4} {'in/s':>7} {'out/s':>7}"
        click.echo(header)
        for queue in queues:
            click.echo(
                f"{queue.name:<40} {queue.ready:>7} {queue.unacked:>7} {queue.consumers:>4} "
                f"{queue.publish_rate:>7.1f} {queue.deliver_rate:>7.1f}"
            )
        for name in report.get("missing_queues", []):
            click.echo(f"{name:<40} missing (run `tasksync topology declare`)")
        click.echo(f"parked: {report.get('parked')}")
    if "ledger_error" in report:
        click.echo(f"ledger: {report['ledger_error']}")
    else:
        sizes = ", ".join(f"{name} {count}" for name, count in report["ledger"].items())
        click.echo(f"ledger: {sizes}")
        for producer in report["producers"]:
            click.echo(
                f"producer {producer['name']}: lag {producer['lag_seconds']} s "
                f"(at {producer['position_at'] or producer['updated_at']})"
            )
