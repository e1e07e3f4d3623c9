"""`tasksync salesconnect`: run the Sales Connect service."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError

from salesconnect.app import ServiceConfig
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
    log_level: str,
) -> None:
    """Run the Sales Connect service: users' reminder tasks with a JSON API (described at
    /openapi.json), the change feed at /api/changes, and the Command Center and Settings
    pages at /users/USER_ID/command-center and /users/USER_ID/settings.

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
        ServiceConfig(database_url=url, salesforce_record_url=salesforce_record_url),
        host=host,
        port=port,
        ready_file=ready_file,
        log_level=log_level,
    )
