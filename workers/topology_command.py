"""`tasksync topology`: declare the RabbitMQ topology, or export it as definitions.json."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import click
import pika
import pika.exceptions

from bridge.messaging.connection import connection_parameters, redact_url
from bridge.messaging.definitions import definitions_json
from workers.options import amqp_url_option, topology_options
from workers.wiring import EXIT_INVALID, EXIT_UNREACHABLE, build_topology

DEFINITIONS_FILE: Final = (
    Path(__file__).resolve().parents[1] / "deploy" / "rabbitmq" / "definitions.json"
)


@click.group()
def topology() -> None:
    """The RabbitMQ exchanges, queues and bindings tasksync uses (see docs/messaging.md)."""


@topology.command()
@amqp_url_option
@topology_options
def declare(amqp_url: str, shard_count: int, retry_tiers: str) -> None:
    """Declare every exchange, queue and binding idempotently in the URL's vhost.

    Needs a user allowed to configure them (tasksync-admin). Running it again changes nothing;
    a queue that exists with other arguments (e.g. another retry delay) is an error.

    Exit codes: 0 declared; 3 RabbitMQ unreachable or refused the declaration.
    """
    layout = build_topology(shard_count, retry_tiers)
    try:
        connection = pika.BlockingConnection(
            connection_parameters(amqp_url, name="tasksync topology declare")
        )
    except pika.exceptions.AMQPError as exc:
        click.echo(f"RabbitMQ at {redact_url(amqp_url)} unreachable: {exc!r}", err=True)
        raise SystemExit(EXIT_UNREACHABLE) from None
    try:
        layout.declare(connection.channel())
    except pika.exceptions.AMQPError as exc:
        click.echo(f"RabbitMQ refused the declaration: {exc!r}", err=True)
        raise SystemExit(EXIT_UNREACHABLE) from None
    finally:
        if connection.is_open:
            connection.close()
    vhost = connection_parameters(amqp_url, name="-").virtual_host
    click.echo(
        f"declared {len(layout.exchanges())} exchanges, {len(layout.queues())} queues and "
        f"{len(layout.bindings())} bindings in vhost {vhost!r}"
    )


@topology.command()
@topology_options
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFINITIONS_FILE,
    show_default=True,
    help="Where to write the file; '-' writes to stdout.",
)
@click.option("--vhost", default="/", show_default=True, help="The vhost the definitions name.")
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if the file differs from what the code declares.",
)
def export(shard_count: int, retry_tiers: str, output: Path, vhost: str, check: bool) -> None:
    """Write the topology and one least-privilege user per component as RabbitMQ definitions.

    The file is what `rabbitmqctl import_definitions` (or the management UI's import, or
    `load_definitions` at boot) accepts. Users get documented development passwords
    (`<user>-dev`); change them on a real broker.

    Exit codes: 0 written or up to date; 1 --check found the file out of date.
    """
    text = definitions_json(build_topology(shard_count, retry_tiers), vhost=vhost)
    if str(output) == "-":
        sys.stdout.write(text)
        return
    current = output.read_text() if output.exists() else None
    if check:
        if current != text:
            click.echo(f"out of date: {output} (run `tasksync topology export`)", err=True)
            raise SystemExit(EXIT_INVALID)
        click.echo(f"up to date: {output}")
        return
    if current == text:
        click.echo(f"up to date: {output}")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"wrote {output}")
