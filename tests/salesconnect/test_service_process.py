"""The `tasksync salesconnect` process: options, ready file, restart, migrations."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from salesconnect.cli import command
from tests.support.salesconnect import (
    ROOT,
    SERVICE_TOKEN_VARIABLE,
    TEST_SERVICE_TOKEN,
    postgres_database,
    running_salesconnect,
    stop_process,
    tasksync_executable,
)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--db", "mysql://u@h/db"], "unsupported database"),
        (["--db", "sqlite://"], "needs a file"),
        (["--salesforce-record-url", "https://x.my.salesforce.com/"], "{id}"),
        (["--port", "70000"], "70000"),
    ],
)
def test_bad_options_are_refused_before_starting(args: list[str], words: str) -> None:
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2
    assert words in result.output


def test_restarting_keeps_the_data_and_migrates_once(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'restart.sqlite3'}"
    with running_salesconnect(database_url, tmp_path) as first:
        client = first.client()
        user = client.create_user()
        task = client.create_task(user["id"], "Survives a restart", None)
        ready_files = list(tmp_path.glob("*.ready.json"))
        assert len(ready_files) == 1
    assert first.process.returncode in (0, -signal.SIGTERM)
    assert "salesconnect: stopped" in first.log(), "no graceful shutdown"
    assert not ready_files[0].exists(), "the ready file outlives the process"
    with running_salesconnect(database_url, tmp_path) as second:
        assert second.client().get_task(task["id"]) == task
        assert second.client().head_seq() == 1
    with sqlite3.connect(tmp_path / "restart.sqlite3") as raw:
        versions = raw.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert versions.fetchall() == [(1,), (2,)]


def test_a_database_from_a_newer_build_is_refused(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    with running_salesconnect(database_url, tmp_path):
        pass
    with sqlite3.connect(tmp_path / "newer.sqlite3") as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
    with (
        pytest.raises(RuntimeError, match="newer than this build"),
        running_salesconnect(database_url, tmp_path),
    ):
        pass


def test_processes_starting_together_on_a_new_postgres_database_migrate_once(
    tmp_path: Path,
) -> None:
    with postgres_database("tasksync_salesconnect_migrate") as database_url:

        def start(index: int) -> str:
            with running_salesconnect(database_url, tmp_path / str(index)) as service:
                return service.client().create_user()["id"]

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            users = list(pool.map(start, range(3)))
        assert len(set(users)) == 3


def test_the_process_prints_where_it_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            str(tasksync_executable()),
            "salesconnect",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("salesconnect: listening on http://127.0.0.1:"), line
    finally:
        stop_process(process)
    assert process.returncode in (0, -signal.SIGTERM)
    assert (tmp_path / "salesconnect.sqlite3").exists(), "the default database is in --data-dir"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), SERVICE_TOKEN_VARIABLE: TEST_SERVICE_TOKEN}
