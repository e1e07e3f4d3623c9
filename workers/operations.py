"""What every long-running bridge command (workers, producers, ingress) shares for operations:
the `--metrics-port`, `--metrics-host` and `--log-format` options, logging set up with the
process's secrets redacted, and the operations endpoint (/metrics, /healthz, /readyz) with the
labels that tell this process's series apart from its siblings'.

docs/operations.md is the operators' view: ports, probes, metric names and how to scrape them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

import click
from prometheus_client import REGISTRY, CollectorRegistry

from bridge.observability import metrics
from bridge.observability.health import HealthChecks
from bridge.observability.logs import LOG_FORMATS, SECRETS, configure_logging
from bridge.observability.metrics import ProcessLabelled
from bridge.observability.server import OperationsServer
from bridge.salesforce.session import SalesforceCredentials
from workers.readiness import EXTRA_READY_INFO

DEFAULT_METRICS_HOST: Final = "127.0.0.1"
# Settings whose whole value is a secret; any URL setting's password is one too.
_SECRET_SETTINGS: Final = ("secret", "password", "token", "client_secret")


def _metrics_port(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A port number, 0 for any free one, or `off` (also empty) for no endpoint."""
    text = (value or "").strip().lower()
    if text in ("", "off"):
        return None
    if not text.isdigit() or int(text) > 65535:
        raise click.BadParameter(
            f"{value!r}: must be a port number 0-65535 (0: any free port) or off", param=param
        )
    return int(text)


def operations_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--metrics-port`, `--metrics-host`, `--log-format`."""
    for option in reversed(
        (
            click.option(
                "--metrics-port",
                envvar="TASKSYNC_METRICS_PORT",
                show_envvar=True,
                metavar="PORT|off",
                default=None,
                show_default="off",
                callback=_metrics_port,
                help="Serve /metrics, /healthz and /readyz on this port (0: any free port, "
                "named in the ready file as metrics_url). Every process on a machine needs "
                "its own.",
            ),
            click.option(
                "--metrics-host",
                envvar="TASKSYNC_METRICS_HOST",
                show_envvar=True,
                default=DEFAULT_METRICS_HOST,
                show_default=True,
                help="Address the metrics and health endpoint listens on (0.0.0.0 for a "
                "Prometheus on another machine).",
            ),
            click.option(
                "--log-format",
                envvar="TASKSYNC_LOG_FORMAT",
                show_envvar=True,
                type=click.Choice(LOG_FORMATS),
                default="json",
                show_default=True,
                help="json: one JSON object per line, for log pipelines; text: one readable "
                "line per event (what tasksync up shows).",
            ),
        )
    ):
        command = option(command)
    return command


def protect_secrets(
    settings: Mapping[str, Any], credentials: SalesforceCredentials | None = None
) -> None:
    """Tell the log formatters every secret this process was configured with."""
    for name, value in settings.items():
        if not isinstance(value, str):
            continue
        if any(marker in name for marker in _SECRET_SETTINGS):
            SECRETS.add(value)
            for part in value.split(","):  # rotation lists: several secrets
                SECRETS.add(part.strip())
        SECRETS.add_url_password(value)
    if credentials is not None:
        SECRETS.add(credentials.password)
        SECRETS.add(credentials.security_token)
        SECRETS.add(credentials.client_secret)
        if credentials.password and credentials.security_token:
            SECRETS.add(credentials.password + credentials.security_token)


def setup_logging(
    settings: Mapping[str, Any],
    component: str,
    credentials: SalesforceCredentials | None = None,
    *,
    quiet_pika: bool = True,
) -> None:
    protect_secrets(settings, credentials)
    configure_logging(
        settings["log_level"], component, settings["log_format"], quiet_pika=quiet_pika
    )


@dataclass
class Operations:
    """This process's checks, and its endpoint when it serves one."""

    checks: HealthChecks
    server: OperationsServer | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def start_operations(
    settings: Mapping[str, Any],
    component: str,
    *,
    shards: str | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> Operations:
    """Serve /metrics, /healthz and /readyz on `--metrics-port` (if set) and name the URL in
    the ready file; add checks to the returned `Operations.checks` as the parts come up.

    Every sample carries `component`, `shards` (workers) and `process` (`<host>:<port>`)."""
    checks = HealthChecks()
    port: int | None = settings["metrics_port"]
    if port is None:
        return Operations(checks)
    labels = {"component": component}
    if shards is not None:
        labels["shards"] = shards
    labelled = ProcessLabelled(registry, labels)
    served = CollectorRegistry(auto_describe=False)
    served.register(labelled)
    host: str = settings["metrics_host"]
    try:
        server = OperationsServer(host, port, served, checks)
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose another "
            "--metrics-port (TASKSYNC_METRICS_PORT): every process on a machine needs its own"
        ) from None
    labelled.labels["process"] = f"{socket.gethostname()}:{server.port}"
    metrics.BUILD_INFO.labels(_version()).set(1)
    EXTRA_READY_INFO.update(metrics_url=server.url, metrics_port=server.port)
    return Operations(checks, server.start())


def _version() -> str:
    try:
        return metadata.version("tasksync")
    except metadata.PackageNotFoundError:
        return "unknown"
