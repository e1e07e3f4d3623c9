"""`tasksync verify`: read both sides and print every difference the mapping does not explain."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import requests
from simple_salesforce.exceptions import SalesforceError

from bridge.errors import SalesConnectApiError
from bridge.salesconnect.client import SalesConnectClient
from bridge.salesforce.session import SalesforceCredentials
from bridge.salesforce.tasks import SalesforceTaskGateway
from bridge.verify import (
    Finding,
    SnapshotReader,
    UserNotFoundError,
    VerifierSalesforceSession,
    VerifyReport,
    compare,
)
from workers.options import salesconnect_url_option, salesforce_options
from workers.wiring import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREACHABLE


def _defaults_from_endpoints(
    ctx: click.Context, _param: click.Parameter, value: Path | None
) -> Path | None:
    """Make the endpoints file's values the defaults of the login and URL options (eager, so it
    runs before they are read; options and environment variables still win)."""
    if value is None:
        return None
    from workers.up import endpoints_defaults  # noqa: PLC0415 - only with --endpoints

    try:
        defaults = endpoints_defaults(json.loads(value.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise click.BadParameter(
            f"cannot read {value} as tasksync up's endpoints.json: {exc}"
        ) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _fail(side: str, exc: BaseException, as_json: bool) -> NoReturn:
    text = f"{side} unreachable or refusing: {exc}"
    if as_json:
        click.echo(json.dumps({"ok": False, "error": text, "unreachable": side}))
    click.echo(f"verify: {text}", err=True)
    raise SystemExit(EXIT_UNREACHABLE)


def _side_of(exc: BaseException, salesconnect_url: str) -> str:
    if isinstance(exc, SalesConnectApiError):
        return "Sales Connect"
    if isinstance(exc, requests.RequestException) and exc.request is not None:
        url = str(exc.request.url or "")
        if url.startswith(salesconnect_url.rstrip("/")):
            return "Sales Connect"
    return "Salesforce"


def _ids(finding: Finding) -> str:
    parts = [f"user {finding.user_id}"]
    if finding.salesconnect_task_ids:
        parts.append("task " + ",".join(finding.salesconnect_task_ids))
    if finding.salesforce_task_ids:
        parts.append("Task " + ",".join(finding.salesforce_task_ids))
    return " ".join(parts)


def _print_report(report: VerifyReport, echo: Callable[[str], None]) -> None:
    pairs = sum(user.pairs for user in report.users)
    echo(f"compared {len(report.users)} user(s) with sync on: {pairs} task pair(s)")
    for user in report.users:
        notes = []
        if user.first_sync_state != "done":
            notes.append(f"first sync {user.first_sync_state}: differences are expected until done")
        if user.salesconnect_out_of_scope:
            notes.append(
                f"{user.salesconnect_out_of_scope} Sales Connect task(s) from before sync was on"
            )
        if user.salesforce_out_of_scope:
            notes.append(f"{user.salesforce_out_of_scope} Salesforce Task(s) out of scope")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        echo(f"  {user.user_id} <-> {user.salesforce_user_id}: {user.pairs} pair(s){suffix}")
    for skipped in report.skipped_users:
        echo(f"  {skipped.user_id}: not compared, {skipped.reason}")
    if report.explained:
        echo(f"explained, not differences ({len(report.explained)}):")
        for finding in report.explained:
            echo(f"  {finding.kind.value}: {finding.message}")
    if report.differences:
        echo(f"DIFFERENCES ({len(report.differences)}):")
        for finding in report.differences:
            echo(f"  {finding.kind.value}: {finding.message} [{_ids(finding)}]")
    else:
        echo("no differences")


@click.command()
@click.option(
    "--user",
    "user_id",
    metavar="ID",
    default=None,
    help="Compare only this Sales Connect user (default: every user with sync on).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
@click.option(
    "--strict-subjects",
    is_flag=True,
    help="Count a Subject that differs from the rendered name as a difference (for runs in "
    "which no one renames Tasks in Salesforce).",
)
@click.option(
    "--endpoints",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_defaults_from_endpoints,
    help="Take the Salesforce login and Sales Connect URL from the endpoints.json `tasksync "
    "up` writes (options and environment variables still win).",
)
@salesforce_options
@salesconnect_url_option
def verify(
    *,
    user_id: str | None,
    as_json: bool,
    strict_subjects: bool,
    salesforce: SalesforceCredentials,
    salesconnect_url: str,
) -> None:
    """Read both sides and print every difference the mapping does not explain: a task
    missing on one side, an extra or duplicated one, one deleted on one side only, a link to a
    Task that does not exist, and mapped fields that differ.

    Only users with sync on and a Salesforce user are compared, within the sync's scope (tasks
    from before sync was turned on, and Salesforce Tasks outside the import window, are not
    differences). Values that are not synced (Salesforce In Progress, Low, ...) and Subjects
    that differ from the rendered name (a Salesforce rename does not flow back) are listed as
    explained. Changes still in flight show up as differences: run it on a quiet system.

    Exit codes: 0 no difference; 1 differences found; 3 Salesforce or Sales Connect
    unreachable or refusing (login included); 4 --user names no Sales Connect user.
    """
    reader = SnapshotReader(
        SalesConnectClient(salesconnect_url),
        SalesforceTaskGateway(VerifierSalesforceSession(salesforce)),
    )
    try:
        snapshot = reader.read(user_id)
    except UserNotFoundError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc)}))
        click.echo(f"verify: {exc}", err=True)
        raise SystemExit(EXIT_NOT_FOUND) from None
    except (SalesConnectApiError, SalesforceError, requests.RequestException) as exc:
        _fail(_side_of(exc, salesconnect_url), exc, as_json)
    report = compare(snapshot, strict_subjects=strict_subjects)
    if as_json:
        body: dict[str, Any] = report.to_json()
        click.echo(json.dumps(body, indent=2, default=str))
    else:
        _print_report(report, click.echo)
    raise SystemExit(EXIT_OK if report.ok else EXIT_INVALID)
