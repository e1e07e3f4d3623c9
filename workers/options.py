"""Command-line options shared by several commands, each with its TASKSYNC_* variable.

Defined once here so every command spells a setting and its environment variable the same
way; the README's configuration table is checked against these by the tests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from bridge.salesforce.session import DEFAULT_API_VERSION, AuthFlow, SalesforceCredentials

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_MANAGEMENT_URL: Final = "http://guest:guest@127.0.0.1:15672"
DEFAULT_DATA_DIR: Final = Path(".tasksync")


def amqp_url_option(command: F) -> F:
    return click.option(
        "--amqp-url",
        envvar="TASKSYNC_AMQP_URL",
        show_envvar=True,
        default=DEFAULT_AMQP_URL,
        show_default=True,
        help="RabbitMQ connection URL (amqp:// or amqps://).",
    )(command)


def management_url_option(command: F) -> F:
    return click.option(
        "--management-url",
        envvar="TASKSYNC_MANAGEMENT_URL",
        show_envvar=True,
        default=DEFAULT_MANAGEMENT_URL,
        show_default=True,
        help="RabbitMQ management API base URL, with credentials.",
    )(command)


def data_dir_option(command: F) -> F:
    return click.option(
        "--data-dir",
        envvar="TASKSYNC_DATA_DIR",
        show_envvar=True,
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help="Where local state lives (ledger, emulator data, logs).",
    )(command)


DEFAULT_SHARD_COUNT: Final = 4
DEFAULT_RETRY_TIERS: Final = "5s,30s,5m,30m"


def ledger_url_option(command: F) -> F:
    return click.option(
        "--ledger-url",
        envvar="TASKSYNC_LEDGER_URL",
        show_envvar=True,
        default=None,
        help=(
            "Dedup ledger database: sqlite:///path or postgresql://user@host/db "
            "[default: sqlite file ledger.sqlite3 in the data dir]."
        ),
    )(command)


def _parse_retry_tiers(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from bridge.messaging.topology import parse_retry_tiers  # noqa: PLC0415 - keeps --help fast

    try:
        parse_retry_tiers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def topology_options(command: F) -> F:
    """`--shard-count` and `--retry-tiers`: must match across producers, workers and broker."""
    command = click.option(
        "--retry-tiers",
        envvar="TASKSYNC_RETRY_TIERS",
        show_envvar=True,
        default=DEFAULT_RETRY_TIERS,
        show_default=True,
        callback=_parse_retry_tiers,
        help="Retry delays, shortest first; each is a queue tasksync.<direction>.retry.<delay>.",
    )(command)
    return click.option(
        "--shard-count",
        envvar="TASKSYNC_SHARD_COUNT",
        show_envvar=True,
        type=click.IntRange(1, 64),
        default=DEFAULT_SHARD_COUNT,
        show_default=True,
        help="Shard queues per direction (one task always goes to the same shard).",
    )(command)


def shards_option(command: F) -> F:
    """A worker's shard selection; overlapping selections across processes are hot standbys."""
    return click.option(
        "--shards",
        envvar="TASKSYNC_SHARDS",
        show_envvar=True,
        default="all",
        show_default=True,
        help="Shards this worker consumes: all, 0-3, 0,2 or 1-2,5.",
    )(command)


DEFAULT_SALESFORCE_LOGIN_URL: Final = "https://login.salesforce.com"
DEFAULT_SALESCONNECT_URL: Final = "http://127.0.0.1:8080"

_SALESFORCE_OPTIONS: Final = (
    click.option(
        "--salesforce-login-url",
        envvar="TASKSYNC_SALESFORCE_LOGIN_URL",
        show_envvar=True,
        default=DEFAULT_SALESFORCE_LOGIN_URL,
        show_default=True,
        help="Where to log in: login/test.salesforce.com, a My Domain, or the local emulator's "
        "instance URL (any host not ending in .salesforce.com gets its token from "
        "{url}/services/oauth2/token).",
    ),
    click.option(
        "--salesforce-auth",
        envvar="TASKSYNC_SALESFORCE_AUTH",
        show_envvar=True,
        type=click.Choice([flow.value for flow in AuthFlow]),
        default=AuthFlow.PASSWORD.value,
        show_default=True,
        help="Login flow: password (username, password, optional security token or OAuth "
        "client), client_credentials (OAuth client), jwt (username, client id, private key).",
    ),
    click.option(
        "--salesforce-username",
        envvar="TASKSYNC_SALESFORCE_USERNAME",
        show_envvar=True,
        help="The integration user's username.",
    ),
    click.option(
        "--salesforce-password",
        envvar="TASKSYNC_SALESFORCE_PASSWORD",
        show_envvar=True,
        help="The integration user's password (prefer the environment variable: a command "
        "line is visible to every local user).",
    ),
    click.option(
        "--salesforce-security-token",
        envvar="TASKSYNC_SALESFORCE_SECURITY_TOKEN",
        show_envvar=True,
        help="Appended to the password for orgs that require it.",
    ),
    click.option(
        "--salesforce-client-id",
        envvar="TASKSYNC_SALESFORCE_CLIENT_ID",
        show_envvar=True,
        help="The connected app's consumer key.",
    ),
    click.option(
        "--salesforce-client-secret",
        envvar="TASKSYNC_SALESFORCE_CLIENT_SECRET",
        show_envvar=True,
        help="The connected app's consumer secret (prefer the environment variable).",
    ),
    click.option(
        "--salesforce-private-key-file",
        envvar="TASKSYNC_SALESFORCE_PRIVATE_KEY_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="PEM private key for the JWT bearer flow.",
    ),
    click.option(
        "--salesforce-ca-bundle",
        envvar="TASKSYNC_SALESFORCE_CA_BUNDLE",
        show_envvar=True,
        type=click.Path(dir_okay=False, exists=True),
        help="CA certificates to trust for Salesforce (the emulator's ca.pem locally); "
        "the system's by default.",
    ),
    click.option(
        "--salesforce-api-version",
        envvar="TASKSYNC_SALESFORCE_API_VERSION",
        show_envvar=True,
        default=DEFAULT_API_VERSION,
        show_default=True,
        help="REST API version.",
    ),
)


def salesforce_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """All Salesforce login settings, handed to the command as one `salesforce` argument of
    type `SalesforceCredentials`."""

    @functools.wraps(command)
    def with_credentials(*args: Any, **kwargs: Any) -> Any:
        flow = AuthFlow(kwargs.pop("salesforce_auth"))
        credentials = SalesforceCredentials(
            login_url=kwargs.pop("salesforce_login_url"),
            flow=flow,
            username=kwargs.pop("salesforce_username"),
            password=kwargs.pop("salesforce_password"),
            security_token=kwargs.pop("salesforce_security_token"),
            client_id=kwargs.pop("salesforce_client_id"),
            client_secret=kwargs.pop("salesforce_client_secret"),
            private_key_file=kwargs.pop("salesforce_private_key_file"),
            ca_bundle=kwargs.pop("salesforce_ca_bundle"),
            api_version=kwargs.pop("salesforce_api_version"),
        )
        missing = credentials.missing()
        if missing:
            names = ", ".join(f"--salesforce-{name.replace('_', '-')}" for name in missing)
            raise click.UsageError(f"the {flow.value} Salesforce login needs {names}")
        return command(*args, salesforce=credentials, **kwargs)

    decorated: Callable[..., Any] = with_credentials
    for option in reversed(_SALESFORCE_OPTIONS):
        decorated = option(decorated)
    return decorated


def salesconnect_url_option(command: F) -> F:
    return click.option(
        "--salesconnect-url",
        envvar="TASKSYNC_SALESCONNECT_URL",
        show_envvar=True,
        default=DEFAULT_SALESCONNECT_URL,
        show_default=True,
        help="Base URL of the Sales Connect service's JSON API.",
    )(command)
