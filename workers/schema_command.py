"""`tasksync schema`: the message contracts' JSON Schema files."""

from __future__ import annotations

from pathlib import Path

import click

from schemas.jsonschema import JSON_DIR, export_all


@click.group()
def schema() -> None:
    """The message contracts (TaskChange, the Salesforce notification) as JSON Schema."""


@schema.command("export")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=JSON_DIR,
    show_default=True,
    help="Where the .json files go.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if any file differs from the marshmallow definitions.",
)
def export(directory: Path, check: bool) -> None:
    """Regenerate the JSON Schema files from the marshmallow schemas."""
    stale = export_all(directory, check=check)
    if check and stale:
        for path in stale:
            click.echo(f"out of date: {path} (run `tasksync schema export`)", err=True)
        raise SystemExit(1)
    verb = "wrote" if stale else "up to date:"
    click.echo(f"{verb} {', '.join(str(p) for p in stale) or str(directory)}")
