"""`tasksync salesconnect`: run the Sales Connect service."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError

from salesconnect.app import ServiceConfig
from salesconnect.auth import ServiceTokenError, parse_service_tokens, read_token_file
from salesconnect.database import Database, DatabaseUrlError, normalise_url
from salesconnect.migrations import SchemaTooNewError, migrate
from salesconnect.server import serve


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'salesconnect.sqlite3').resolve()}"


@click.command("salesconnect")
@click.option(
    "--host",
    envvar="TASKSYNC_SALESCONNECT_HOST",
    show_envvar=True,
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    envvar="TASKSYNC_SALESCONNECT_PORT",
    show_envvar=True,
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on; 0 picks a free one (see --ready-file).",
)
@click.option(
    "--db",
    "database_url",
    envvar="TASKSYNC_SALESCONNECT_DB",
    show_envvar=True,
    default=None,
    help="Database URL: sqlite:///FILE or postgresql://USER@HOST:PORT/DB. "
    "[default: sqlite file salesconnect.sqlite3 in --data-dir]",
)
@click.option(
    "--data-dir",
    envvar="TASKSYNC_DATA_DIR",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".tasksync"),
    show_default=True,
    help="Where local state lives (holds the default SQLite database).",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Once serving, write {url, host, port, pid, database} as JSON to this file "
    "(atomically; removed on exit).",
)
@click.option(
    "--salesforce-record-url",
    envvar="TASKSYNC_SALESFORCE_RECORD_URL",
    show_envvar=True,
    default="",
    help="Link synced tasks to Salesforce: a URL with {id} for the Task id, e.g. "
    "https://example.my.salesforce.com/{id}. Empty shows the id without a link.",
)
@click.option(
    "--service-token",
    envvar="TASKSYNC_SALESCONNECT_SERVICE_TOKEN",
    show_envvar=True,
    default=None,
    help="The service credential the bridge (and operators) authenticate with: at least 32 "
    "characters; several separated by commas are all accepted (to rotate: add the new one, "
    "move the bridge to it, drop the old). Prefer --service-token-file.",
)
@click.option(
    "--service-token-file",
    envvar="TASKSYNC_SALESCONNECT_SERVICE_TOKEN_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File (owner-only, chmod 600) holding the service token(s) instead, one a line; "
    "read again whenever it changes, so tokens rotate without a restart.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much the server logs.",
)
def command(
    *,
    host: str,
    port: int,
    database_url: str | None,
    data_dir: Path,
    ready_file: Path | None,
    salesforce_record_url: str,
    service_token: str | None,
    service_token_file: Path | None,
    log_level: str,
) -> None:
    """Run the Sales Connect service: users' reminder tasks with a JSON API (described at
    /openapi.json), the change feed at /api/changes, and the Command Center and Settings
    pages at /users/USER_ID/command-center and /users/USER_ID/settings.

    Every API call needs `Authorization: Bearer TOKEN`: the service token (--service-token,
    required) for the bridge and operators, or a user's API token (made with the service token
    through POST /api/users/USER_ID/tokens) for that user's own data. Users sign in to the pages
    with their email and the password set through the API.

    The schema is created or migrated before serving. Prints "salesconnect: listening on URL" once
    it serves requests.
    """
    url = database_url or default_database_url(data_dir)
    try:
        normalise_url(url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--db") from None
    if salesforce_record_url and "{id}" not in salesforce_record_url:
        raise click.BadParameter(
            "must contain {id} where the Salesforce Task id goes",
            param_hint="--salesforce-record-url",
        )
    tokens = _service_tokens(service_token, service_token_file)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    database = Database(url)
    try:
        migrate(database)
    except SchemaTooNewError as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        raise click.ClickException(
            f"cannot use the database {database.describe()}: {exc.orig}"
        ) from None
    finally:
        database.dispose()
    serve(
        ServiceConfig(
            database_url=url,
            salesforce_record_url=salesforce_record_url,
            service_tokens=tokens,
            service_token_file=service_token_file.resolve() if service_token_file else None,
        ),
        host=host,
        port=port,
        ready_file=ready_file,
        log_level=log_level,
    )


def _service_tokens(value: str | None, file: Path | None) -> tuple[str, ...]:
    """The tokens given as a value (checked now; a file is checked now and read by the app)."""
    hint = "'--service-token' / TASKSYNC_SALESCONNECT_SERVICE_TOKEN"
    file_hint = "'--service-token-file' / TASKSYNC_SALESCONNECT_SERVICE_TOKEN_FILE"
    if value and file is not None:
        raise click.UsageError(f"give {hint} or {file_hint}, not both")
    try:
        if file is not None:
            read_token_file(file)
            return ()
        if value:
            return parse_service_tokens(value, "the service token")
    except ServiceTokenError as exc:
        raise click.BadParameter(str(exc), param_hint=file_hint if file else hint) from None
    raise click.UsageError(
        f"give the service credential with {hint} or {file_hint}: the bridge authenticates "
        "with it (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )
