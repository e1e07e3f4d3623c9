"""`tasksync salesforce-emulator`: run the local Salesforce org until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from salesforce_emulator.faults import (
    DEFAULT_DAILY_API_LIMIT,
    DEFAULT_SESSION_LIFETIME_SECONDS,
    FaultSettings,
)
from salesforce_emulator.notifications import (
    DEFAULT_BATCH_WINDOW_MS,
    IngressSettings,
)
from salesforce_emulator.runner import (
    DISCOVERY_FILE,
    DataDirBusyError,
    EmulatorConfig,
    RunningEmulator,
)

SHARE = click.FloatRange(0.0, 1.0)


def _share_option(name: str, what: str) -> click.Option:
    return click.Option([f"--{name}"], type=SHARE, default=0.0, show_default=True, help=what)


@click.command()
@click.option(
    "--host",
    envvar="TASKSYNC_EMULATOR_HOST",
    show_envvar=True,
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    envvar="TASKSYNC_EMULATOR_PORT",
    show_envvar=True,
    type=click.IntRange(0, 65535),
    default=8443,
    show_default=True,
    help="HTTPS port; 0 picks a free one (read it from DIR/emulator.json).",
)
@click.option(
    "--data-dir",
    envvar="TASKSYNC_EMULATOR_DATA_DIR",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".tasksync/salesforce-emulator"),
    show_default=True,
    help="Where the org lives: SQLite database, CA and server certificates, emulator.json.",
)
@click.option(
    "--client-id",
    envvar="TASKSYNC_EMULATOR_CLIENT_ID",
    show_envvar=True,
    default="tasksync-emulator",
    show_default=True,
    help="The connected app's OAuth client id (consumer key).",
)
@click.option(
    "--client-secret",
    envvar="TASKSYNC_EMULATOR_CLIENT_SECRET",
    show_envvar=True,
    default="tasksync-emulator-secret",
    show_default=True,
    help="The connected app's OAuth client secret (consumer secret).",
)
@click.option(
    "--ingress-url",
    envvar="TASKSYNC_EMULATOR_INGRESS_URL",
    show_envvar=True,
    default=None,
    help="Where the plugin stand-in POSTs signed Task notifications (none: not installed).",
)
@click.option(
    "--ingress-secret",
    envvar="TASKSYNC_EMULATOR_INGRESS_SECRET",
    show_envvar=True,
    default=None,
    help="Shared secret the notifications are signed with (HMAC-SHA256).",
)
@click.option(
    "--notification-batch-ms",
    type=click.IntRange(0, 10_000),
    default=DEFAULT_BATCH_WINDOW_MS,
    show_default=True,
    help="Changes made within this window are sent in one POST (at most 200).",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(0, 60_000),
    default=0,
    show_default=True,
    help="Added to every REST API call.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Makes faults, dropped notifications and the org id repeatable.",
)
@click.option(
    "--daily-api-limit",
    type=click.IntRange(0),
    default=DEFAULT_DAILY_API_LIMIT,
    show_default=True,
    help="API calls allowed in any 24 hours before REQUEST_LIMIT_EXCEEDED.",
)
@click.option(
    "--session-lifetime",
    type=click.IntRange(1),
    default=DEFAULT_SESSION_LIFETIME_SECONDS,
    show_default=True,
    help="Seconds an access token stays valid.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="How much the emulator logs to stderr.",
)
def command(
    *,
    host: str,
    port: int,
    data_dir: Path,
    client_id: str,
    client_secret: str,
    ingress_url: str | None,
    ingress_secret: str | None,
    notification_batch_ms: int,
    latency_ms: int,
    seed: int | None,
    daily_api_limit: int,
    session_lifetime: int,
    log_level: str,
    **shares: float,
) -> None:
    """Run a local Salesforce org over HTTPS that simple-salesforce talks to unchanged.

    Serves the REST API the bridge uses (OAuth and SOAP login, Task rows and upserts, SOQL
    query/queryAll, sObject Collections, updated/deleted, limits) with Salesforce's errors,
    persists everything in SQLite under --data-dir, fails on demand (fault shares, latency, a
    daily API allowance that runs out) and, given an ingress URL and secret, sends the
    Salesforce-side package's signed Task notifications. The admin API lives under
    /_emulator/ on the same port. Stop with Ctrl-C or SIGTERM.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = EmulatorConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        client_id=client_id,
        client_secret=client_secret,
        faults=FaultSettings(
            latency_ms=latency_ms,
            daily_api_limit=daily_api_limit,
            session_lifetime_seconds=session_lifetime,
            seed=seed,
            **shares,
        ),
        ingress=IngressSettings(
            ingress_url=ingress_url,
            ingress_secret=ingress_secret,
            batch_window_ms=notification_batch_ms,
        ),
    )
    try:
        emulator = RunningEmulator(config)
    except DataDirBusyError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start on {host}:{port}: {exc}") from None
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    emulator.start()
    info = emulator.discovery()
    click.echo(
        f"Salesforce emulator serving {info['instance_url']} (org {info['org_id']})\n"
        f"  CA certificate:   {info['ca_path']}  (requests: session.verify = that path)\n"
        f"  OAuth client:     client_id={info['client_id']} client_secret={info['client_secret']}\n"
        f"  Integration user: {info['integration_user']['username']} / "
        f"{info['integration_user']['password']} ({info['integration_user']['id']})\n"
        f"  Sales rep:        {info['sales_rep']['username']} / {info['sales_rep']['password']} "
        f"({info['sales_rep']['id']})\n"
        f"  Admin API:        {info['admin_url']}\n"
        f"  Discovery file:   {emulator.data_dir / DISCOVERY_FILE}",
        nl=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        emulator.stop()


for _name, _what in (
    ("server-unavailable-share", "Share of API calls answered 503 SERVER_UNAVAILABLE."),
    ("unable-to-lock-row-share", "Share of writes answered 400 UNABLE_TO_LOCK_ROW."),
    ("request-limit-share", "Share of API calls answered 403 REQUEST_LIMIT_EXCEEDED."),
    ("drop-connection-share", "Share of API calls whose connection is reset before any effect."),
    ("drop-response-share", "Share of API calls whose effect is kept but whose answer is lost."),
    ("notification-drop-share", "Share of Task notifications the plugin stand-in drops."),
):
    command.params.append(_share_option(_name, _what))
