"""`tasksync parked`: what waits for a person in `tasksync.parked`, and replaying or dropping it."""

from __future__ import annotations

import getpass
import json
import logging
import socket
from datetime import UTC, datetime
from pathlib import Path

import click
import pika.exceptions

from bridge.ledger import DroppedMessage, Ledger
from bridge.messaging import ParkedMessage, ParkedMessageNotFoundError, ParkedQueue
from bridge.messaging.connection import redact_url
from workers.options import amqp_url_option, data_dir_option, ledger_url_option, topology_options
from workers.wiring import (
    EXIT_INVALID,
    EXIT_LEDGER,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    build_topology,
    resolve_ledger_url,
)

log = logging.getLogger("tasksync.parked")


@click.group()
def parked() -> None:
    """Messages parked for a person: why each was parked, replay after a fix, or drop.

    Parked messages stay in the queue while you look at them; list and show never remove
    anything.
    """


def _queue(amqp_url: str, shard_count: int, retry_tiers: str) -> ParkedQueue:
    return ParkedQueue(amqp_url, topology=build_topology(shard_count, retry_tiers))


def _unreachable(amqp_url: str, exc: Exception) -> SystemExit:
    click.echo(f"RabbitMQ at {redact_url(amqp_url)}: {exc!r}", err=True)
    return SystemExit(EXIT_UNREACHABLE)


@parked.command("list")
@amqp_url_option
@topology_options
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
def list_parked(
    amqp_url: str, shard_count: int, retry_tiers: str, limit: int, as_json: bool
) -> None:
    """List parked messages, oldest first: id, when, attempts, route and the reason.

    Exit codes: 0 listed (possibly none); 3 RabbitMQ unreachable.
    """
    try:
        found = _queue(amqp_url, shard_count, retry_tiers).browse(limit)
    except pika.exceptions.AMQPError as exc:
        raise _unreachable(amqp_url, exc) from None
    if as_json:
        click.echo(json.dumps([p.summary() for p in found], indent=2))
        return
    if not found:
        click.echo("nothing parked")
        return
    for message in found:
        click.echo(
            f"{message.message_id}  {message.parked_at or '-'}  attempts {message.attempts}  "
            f"{message.original_exchange} {message.original_routing_key}\n"
            f"    {message.error_kind or 'error'}: {message.error}"
        )


@parked.command()
@amqp_url_option
@topology_options
@click.argument("message_id")
def show(amqp_url: str, shard_count: int, retry_tiers: str, message_id: str) -> None:
    """Show one parked message as JSON: why it was parked, its headers and its body.

    Exit codes: 0 shown; 3 RabbitMQ unreachable; 4 no parked message has that id.
    """
    try:
        message = _queue(amqp_url, shard_count, retry_tiers).find(message_id)
    except ParkedMessageNotFoundError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(EXIT_NOT_FOUND) from None
    except pika.exceptions.AMQPError as exc:
        raise _unreachable(amqp_url, exc) from None
    click.echo(json.dumps(message.details(), indent=2, ensure_ascii=False))


@parked.command()
@amqp_url_option
@topology_options
@click.argument("message_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every parked message.")
def replay(
    amqp_url: str,
    shard_count: int,
    retry_tiers: str,
    message_ids: tuple[str, ...],
    replay_all: bool,
) -> None:
    """Publish parked messages again to their original exchange and routing key (after the
    cause is fixed), with their attempts reset; each leaves parking only once RabbitMQ has
    confirmed the replay.

    Give message ids, or --all. Exit codes: 0 replayed; 1 a message has no tasksync route to
    return to; 3 RabbitMQ unreachable or did not confirm; 4 some ids were not parked (the
    others were replayed).
    """
    if bool(message_ids) == replay_all:
        raise click.UsageError("give message ids or --all (not both)")
    queue = _queue(amqp_url, shard_count, retry_tiers)
    try:
        done = queue.replay(None if replay_all else set(message_ids))
    except ParkedMessageNotFoundError as exc:
        click.echo(f"replayed the others; {exc}", err=True)
        raise SystemExit(EXIT_NOT_FOUND) from None
    except ValueError as exc:
        click.echo(f"cannot replay: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    except pika.exceptions.AMQPError as exc:
        raise _unreachable(amqp_url, exc) from None
    click.echo(f"replayed {len(done)}" + (": " + ", ".join(done) if done else ""))


@parked.command()
@amqp_url_option
@topology_options
@data_dir_option
@ledger_url_option
@click.argument("message_ids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why it is dropped (kept in the ledger's log).")
def drop(
    *,
    amqp_url: str,
    shard_count: int,
    retry_tiers: str,
    data_dir: Path,
    ledger_url: str | None,
    message_ids: tuple[str, ...],
    reason: str,
) -> None:
    """Remove parked messages for good, with a reason. Each message (headers and body) and
    the reason are written to the ledger's drop log first, so nothing disappears unrecorded.

    Exit codes: 0 dropped; 3 RabbitMQ unreachable; 4 some ids were not parked (the others
    were dropped); 5 the ledger is unreachable (nothing was dropped).
    """
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    try:
        ledger = Ledger.open(resolve_ledger_url(ledger_url, data_dir))
    except Exception as exc:
        click.echo(f"ledger unreachable, nothing dropped: {exc}", err=True)
        raise SystemExit(EXIT_LEDGER) from None

    def record(message: ParkedMessage) -> None:
        ledger.record_drop(
            DroppedMessage(
                message_id=message.message_id,
                reason=reason,
                dropped_by=who,
                dropped_at=datetime.now(UTC),
                exchange=message.original_exchange,
                routing_key=message.original_routing_key,
                headers_json=json.dumps(message.details()["headers"], ensure_ascii=False),
                body=message.received.body.decode("utf-8", "replace"),
            )
        )
        log.warning("dropped %s by %s: %s", message.message_id, who, reason)
        click.echo(f"dropped {message.message_id}: {reason}", err=True)

    try:
        done = _queue(amqp_url, shard_count, retry_tiers).drop(set(message_ids), record)
    except ParkedMessageNotFoundError as exc:
        click.echo(f"dropped the others; {exc}", err=True)
        raise SystemExit(EXIT_NOT_FOUND) from None
    except pika.exceptions.AMQPError as exc:
        raise _unreachable(amqp_url, exc) from None
    except Exception as exc:
        # The drop log could not be written: that message stays parked.
        click.echo(f"ledger failed, message kept parked: {exc!r}", err=True)
        raise SystemExit(EXIT_LEDGER) from None
    finally:
        ledger.close()
    click.echo(f"dropped {len(done)}")
