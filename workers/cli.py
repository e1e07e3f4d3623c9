"""The `tasksync` command line: one group whose subcommands load only when used.

Each command lives in its own module; `COMMANDS` names them. Loading lazily keeps `tasksync
--help` quick and keeps one command's heavy imports (web servers, database drivers) out of the
others.
"""

from __future__ import annotations

import importlib
from typing import Final

import click

COMMANDS: Final[dict[str, str]] = {
    "bench": "bench.cli:bench",
    "ingress": "workers.ingress_command:ingress",
    "parked": "workers.parked_command:parked",
    "producer": "workers.producer_command:producer",
    "publish": "workers.publish_command:publish",
    "salesconnect": "salesconnect.cli:command",
    "salesforce-emulator": "salesforce_emulator.cli:command",
    "schema": "workers.schema_command:schema",
    "soak": "bench.cli:soak",
    "status": "workers.status_command:status",
    "topology": "workers.topology_command:topology",
    "up": "workers.up:up",
    "verify": "workers.verify_command:verify",
    "worker": "workers.worker_command:worker",
}


class LazyGroup(click.Group):
    """A click group that imports `module:attribute` for a subcommand only when it is needed."""

    def __init__(self, *args: object, lazy_commands: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="tasksync")
def main() -> None:
    """tasksync: two-way sync of reminder tasks between Sales Connect and Salesforce.

    Producers publish each task change onto RabbitMQ; workers apply it to the other side with
    retries, parking what needs a person, and a ledger that stops duplicates and echoes.
    Every setting can come from its TASKSYNC_* environment variable (see each command's
    --help).
    """
