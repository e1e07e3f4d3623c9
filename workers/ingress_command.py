"""`tasksync ingress`: the HTTPS endpoint for the Salesforce-side package's notifications."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Final

import click

from bridge.ingress.app import create_app
from bridge.ingress.ratelimit import DEFAULT_RATE_BURST, DEFAULT_RATE_LIMIT, RateLimit
from bridge.ingress.server import bind_socket, ready_info, serve
from bridge.ingress.service import (
    DEFAULT_MAX_BODY_BYTES,
    IngressSettings,
    NotificationIngress,
    parse_secrets,
)
from bridge.ingress.tls import TlsFiles, local_certificate
from bridge.ledger import Ledger
from bridge.messaging import Publisher
from bridge.messaging.connection import redact_url
from bridge.observability.health import HealthChecks, flag_check
from bridge.observability.logs import adopt_library_loggers
from bridge.observability.metrics import watch_ledger
from bridge.observability.salesforce import SalesforceReachability
from bridge.producers.known_values import KnownValues
from bridge.producers.observer import SalesforceTaskObserver
from bridge.producers.running import ProcessControl, Stopping, describe_failure, retry_until_done
from bridge.salesconnect.client import SalesConnectClient
from bridge.salesforce.session import SalesforceCredentials, SalesforceSession
from bridge.salesforce.tasks import SalesforceTaskGateway
from bridge.sync.directory import SyncUserDirectory
from schemas.notification import DEFAULT_TIMESTAMP_WINDOW_SECONDS
from workers.operations import operations_options, setup_logging, start_operations
from workers.options import (
    INGRESS_SECRET_FILE,
    amqp_url_option,
    data_dir_option,
    ledger_url_option,
    salesconnect_url_option,
    salesforce_options,
    secret_file_option,
    topology_options,
)
from workers.producer_command import log_level_option
from workers.readiness import ready_file_option, write_ready_file
from workers.wiring import build_topology, resolve_ledger_url

log = logging.getLogger("tasksync.ingress")

DEFAULT_PORT: Final = 8444
DIRECTORY_MAX_AGE_SECONDS: Final = 10.0


@click.command()
@click.option(
    "--host",
    envvar="TASKSYNC_INGRESS_HOST",
    show_envvar=True,
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    envvar="TASKSYNC_INGRESS_PORT",
    show_envvar=True,
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="HTTPS port; 0 picks a free one (see --ready-file).",
)
@click.option(
    "--secret",
    "secret",
    envvar="TASKSYNC_INGRESS_SECRET",
    show_envvar=True,
    help="The signing secret shared with the Salesforce-side package; several separated by "
    "commas while rotating it. Prefer the environment variable or --secret-file: a command "
    "line is visible to every local user.",
)
@secret_file_option(INGRESS_SECRET_FILE)
@click.option(
    "--cert-file",
    envvar="TASKSYNC_INGRESS_CERT_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TLS certificate (chain) in PEM; Salesforce needs one a public CA signed. Without it "
    "the ingress makes a local CA and certificate under DATA_DIR/ingress.",
)
@click.option(
    "--key-file",
    envvar="TASKSYNC_INGRESS_KEY_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The certificate's private key in PEM.",
)
@click.option(
    "--timestamp-window",
    type=click.IntRange(10, 3600),
    default=DEFAULT_TIMESTAMP_WINDOW_SECONDS,
    show_default=True,
    help="Seconds a notification's timestamp may differ from now (older: refused as a replay).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1024, 64 * 1024 * 1024),
    default=DEFAULT_MAX_BODY_BYTES,
    show_default=True,
    help="Larger notification bodies are refused with 413.",
)
@click.option(
    "--rate-limit",
    envvar="TASKSYNC_INGRESS_RATE_LIMIT",
    show_envvar=True,
    type=click.FloatRange(0, 100_000),
    default=DEFAULT_RATE_LIMIT,
    show_default=True,
    help="Notification requests a second each client address may send on average, and each "
    "Salesforce org once its signature checked out; over it (beyond --rate-burst at once) the "
    "answer is 429 with Retry-After and nothing is read or published. 0 turns the limit off. "
    "Behind a proxy on another machine every request comes from its address: set "
    "FORWARDED_ALLOW_IPS to it so X-Forwarded-For names the client.",
)
@click.option(
    "--rate-burst",
    envvar="TASKSYNC_INGRESS_RATE_BURST",
    show_envvar=True,
    type=click.IntRange(1, 1_000_000),
    default=DEFAULT_RATE_BURST,
    show_default=True,
    help="Requests a client address (or org) may send at once before --rate-limit applies.",
)
@amqp_url_option
@data_dir_option
@ledger_url_option
@topology_options
@salesconnect_url_option
@ready_file_option
@log_level_option
@operations_options
@salesforce_options
def ingress(salesforce: SalesforceCredentials, **settings: Any) -> None:
    """Receive the Salesforce-side package's signed Task notifications over HTTPS.

    POST /notifications: the signature and timestamp are checked (bad or stale: 401, nothing
    read or published), the body is validated (400 naming each bad field), the current values
    of the notified Tasks of synced users are read in one queryAll, and their changes are
    published onto tasksync.salesforce.changes; only after RabbitMQ confirmed does it answer
    200 (503 if Salesforce, Sales Connect or RabbitMQ failed, so the package sends again).
    A client address (or org) sending more than --rate-limit requests a second is answered 429
    with Retry-After; the package retries a 429 like any passing failure.
    GET /healthz answers when it serves. Several ingress processes may run behind one address.
    """
    secrets = parse_secrets(settings["secret"] or "")
    if not secrets:
        raise click.UsageError(
            "give the signing secret with --secret or TASKSYNC_INGRESS_SECRET "
            "(several separated by commas while rotating)"
        )
    host: str = settings["host"]
    setup_logging(settings, "ingress", salesforce)
    data_dir: Path = settings["data_dir"]
    tls = _tls_files(settings["cert_file"], settings["key_file"], data_dir, host)
    try:
        sock = bind_socket(host, settings["port"])
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{settings['port']}: {exc.strerror or exc}"
        ) from None

    operations = start_operations(settings, "ingress")
    control = ProcessControl()
    control.install_signal_handlers()
    ledger_url = resolve_ledger_url(settings["ledger_url"], data_dir)
    try:
        ledger = retry_until_done(
            f"cannot open the ledger {redact_url(ledger_url)}",
            lambda: Ledger.open(ledger_url),
            control,
        )
    except Stopping:
        sock.close()
        operations.close()
        return
    session = SalesforceSession(salesforce)
    serving = _watch(operations.checks, session, ledger)
    salesconnect = SalesConnectClient(settings["salesconnect_url"])
    directory = SyncUserDirectory(salesconnect, max_age=DIRECTORY_MAX_AGE_SECONDS)
    _check_reachable(session, directory)
    publisher = Publisher(
        settings["amqp_url"],
        topology=build_topology(settings["shard_count"], settings["retry_tiers"]),
        name="salesforce ingress",
        app_id="tasksync ingress",
    )
    service = NotificationIngress(
        IngressSettings(
            secrets=secrets,
            timestamp_window_seconds=settings["timestamp_window"],
            max_body_bytes=settings["max_body_bytes"],
            rate_limit=RateLimit(settings["rate_limit"], settings["rate_burst"]),
        ),
        gateway=SalesforceTaskGateway(session),
        directory=directory,
        observer=SalesforceTaskObserver(KnownValues(ledger), directory),
        publisher=publisher,
    )
    bound_port = int(sock.getsockname()[1])
    info = {"component": "ingress", **ready_info(host, bound_port, tls)}
    ready_file: Path | None = settings["ready_file"]

    def started() -> None:
        # uvicorn gave its loggers handlers of their own; format and redact them like the rest.
        adopt_library_loggers("uvicorn", "uvicorn.error", "uvicorn.access")
        serving.set()
        write_ready_file(ready_file, info)
        log.info("listening on %s (CA: %s)", info["url"], info["ca_path"] or "the certificate's")

    def stopping() -> None:
        serving.clear()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
        log.info("stopping: finishing the requests in progress")

    try:
        served = serve(
            create_app(service),
            sock,
            tls,
            on_started=started,
            on_stopping=stopping,
            log_level="warning" if settings["log_level"] != "debug" else "debug",
        )
    finally:
        publisher.close()
        ledger.close()
        operations.close()
    if not served:
        raise SystemExit(3)


def _watch(checks: HealthChecks, session: SalesforceSession, ledger: Ledger) -> threading.Event:
    """Ready while it serves HTTPS (the returned flag) and Salesforce answers (a notification
    is read there)."""
    serving = threading.Event()
    checks.add_readiness(
        "serving", flag_check(serving, "serving notifications", "not serving (starting)")
    )
    checks.add_readiness("salesforce", SalesforceReachability(session).start().check)
    watch_ledger(ledger.sizes)
    return serving


def _tls_files(
    cert_file: Path | None, key_file: Path | None, data_dir: Path, host: str
) -> TlsFiles:
    if cert_file is not None and key_file is not None:
        tls = TlsFiles(cert_path=cert_file, key_path=key_file, ca_path=None)
    elif cert_file is None and key_file is None:
        tls = local_certificate(data_dir / "ingress", host)
    else:
        raise click.UsageError("give both --cert-file and --key-file, or neither")
    try:
        tls.server_context()
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot use the TLS certificate and key: {exc}") from None
    return tls


def _check_reachable(session: SalesforceSession, directory: SyncUserDirectory) -> None:
    """Say at once when a setting is wrong; the ingress serves anyway and answers 503 until
    the other side works (the package retries)."""
    try:
        _ = session.client
    except Exception as exc:
        log.warning(
            "cannot log in to Salesforce at %s: %s; notifications are answered 503 until it works",
            session.credentials.login_url,
            describe_failure(exc),
        )
    try:
        directory.refresh()
    except Exception as exc:
        log.warning(
            "cannot read the synced users from Sales Connect at %s: %s; notifications are "
            "answered 503 until it works",
            directory.client.base_url,
            describe_failure(exc),
        )
