"""`tasksync publish`: publish one test `TaskChange`, validated against the schema first."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from bridge.messaging import Publisher, PublishError
from bridge.messaging.connection import redact_url
from bridge.messaging.envelope import routing_key
from schemas.errors import ContractError
from schemas.fields import format_utc_stamp
from schemas.task_change import (
    SCHEMA_VERSION,
    Op,
    Origin,
    TaskPriority,
    TaskStatus,
    load_task_change,
)
from workers.options import amqp_url_option, topology_options
from workers.wiring import EXIT_INVALID, EXIT_UNREACHABLE, build_topology

OTHER_SIDE = {Origin.SALESCONNECT: Origin.SALESFORCE, Origin.SALESFORCE: Origin.SALESCONNECT}


@click.command()
@amqp_url_option
@topology_options
@click.option(
    "--file",
    "source",
    type=click.File("r"),
    help="A TaskChange as JSON ('-' for stdin). message_id, trace_id, occurred_at, "
    "schema_version and source_values are filled in when missing.",
)
@click.option("--origin", type=click.Choice([o.value for o in Origin]), help="Where it changed.")
@click.option(
    "--op", type=click.Choice([o.value for o in Op]), default=Op.UPSERT.value, show_default=True
)
@click.option("--task", help="The task's id in the origin system.")
@click.option("--owner", help="The owner's user id in the origin system.")
@click.option("--other-task", help="The task's id in the other system, if known.")
@click.option("--actor", help="Who made the change [default: the owner].")
@click.option("--name", help="New task name.")
@click.option("--status", type=click.Choice([s.value for s in TaskStatus]), help="New status.")
@click.option(
    "--priority", type=click.Choice([p.value for p in TaskPriority]), help="New priority."
)
@click.option("--due-date", help="New due date YYYY-MM-DD, or 'none' to clear it.")
@click.option("--details", help="New details text.")
@click.option("--occurred-at", help="When it changed at the source [default: now], ISO 8601.")
@click.option("--dry-run", is_flag=True, help="Only validate; print the message, publish nothing.")
def publish(
    *,
    amqp_url: str,
    shard_count: int,
    retry_tiers: str,
    source: TextIO | None,
    origin: str | None,
    op: str,
    task: str | None,
    owner: str | None,
    other_task: str | None,
    actor: str | None,
    name: str | None,
    status: str | None,
    priority: str | None,
    due_date: str | None,
    details: str | None,
    occurred_at: str | None,
    dry_run: bool,
) -> None:
    """Publish a test task change onto its origin's exchange and print its message id.

    Build it from flags (--origin, --task, --owner and the changed fields) or give a JSON file
    with --file. Either way it is validated against the TaskChange schema first; --dry-run
    stops there and prints the message it would publish.

    Exit codes: 0 published (or valid with --dry-run); 1 invalid message (each bad field and
    its rule is printed); 3 RabbitMQ unreachable or did not confirm.
    """
    if source is not None:
        message = _from_file(source)
    else:
        if origin is None or task is None or owner is None:
            raise click.UsageError("give --file, or --origin, --task and --owner")
        fields = {"name": name, "status": status, "priority": priority, "details": details}
        changed: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        if due_date is not None:
            changed["due_date"] = None if due_date.lower() == "none" else due_date
        side = Origin(origin)
        record = {f"{side.value}_task_id": task}
        if other_task:
            record[f"{OTHER_SIDE[side].value}_task_id"] = other_task
        message = _with_defaults(
            {
                "origin": side.value,
                "op": op,
                "actor": actor or owner,
                "owner": {f"{side.value}_user_id": owner},
                "record": record,
                "changed": changed,
                **({"occurred_at": occurred_at} if occurred_at else {}),
            }
        )
    try:
        change = load_task_change(message)
    except ContractError as exc:
        click.echo("invalid message:", err=True)
        for path, rules in sorted(exc.fields.items()):
            click.echo(f"  {path}: {' '.join(rules)}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    topology = build_topology(shard_count, retry_tiers)
    if dry_run:
        click.echo(json.dumps(message, indent=2, ensure_ascii=False), err=True)
        click.echo(
            f"valid; would publish to {topology.exchange_for_origin(change.origin)} with "
            f"routing key {routing_key(change)}",
            err=True,
        )
        click.echo(str(change.message_id))
        return
    with Publisher(
        amqp_url, topology=topology, name="tasksync publish", app_id="tasksync publish"
    ) as publisher:
        try:
            publisher.publish(change)
        except PublishError as exc:
            click.echo(f"not published to {redact_url(amqp_url)}: {exc}", err=True)
            raise SystemExit(EXIT_UNREACHABLE) from None
    click.echo(str(change.message_id))


def _from_file(source: TextIO) -> dict[str, Any]:
    try:
        raw = json.load(source)
    except json.JSONDecodeError as exc:
        click.echo(f"invalid message: {source.name} is not JSON: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    if not isinstance(raw, dict):
        click.echo(f"invalid message: {source.name} must hold one JSON object", err=True)
        raise SystemExit(EXIT_INVALID)
    return _with_defaults(raw)


def _with_defaults(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "message_id": str(uuid.uuid4()),
        "occurred_at": format_utc_stamp(datetime.now(UTC)),
        "trace_id": uuid.uuid4().hex,
        "source_values": {},
        "changed": {},
        **message,
    }
