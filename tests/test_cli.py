"""The command line: every command exists, helps, and every setting is in the README."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from workers.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def walk(
    group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, click.Context(command, parent=ctx), (*path, name))


def all_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    return list(walk(main, click.Context(main)))  # type: ignore[arg-type]


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s", result.output, re.MULTILINE), name


@pytest.mark.parametrize(
    ("path", "command"), all_commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_has_useful_help(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help and len(command.help.split()) >= 5, f"{' '.join(path)} needs a real --help"


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).with_name("tasksync")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Commands:" in result.stdout


def test_readme_configuration_table_lists_every_environment_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\|\s*`(TASKSYNC_[A-Z0-9_]+)`", readme, re.MULTILINE))
    used = {
        param.envvar
        for _, command in all_commands()
        for param in command.params
        if isinstance(param.envvar, str)
    }
    assert used <= documented, (
        f"add to the README's configuration table: {sorted(used - documented)}"
    )
    assert documented <= used, f"README documents settings no command reads: {documented - used}"


def test_schema_export_check_passes_on_the_committed_files() -> None:
    result = CliRunner().invoke(main, ["schema", "export", "--check"])
    assert result.exit_code == 0, result.output


def test_schema_export_check_fails_on_drift(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "export", "--check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "out of date" in result.output
