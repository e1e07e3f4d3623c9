"""Secrets from files (`--x-file` / TASKSYNC_X_FILE), through the real `tasksync` command.

A Sales Connect producer and a to-salesforce worker run as child processes against the
Salesforce emulator, the Sales Connect service, a RabbitMQ user and a PostgreSQL ledger of this
test's own, with every secret they use given only as a file: the integration user's password
and security token (the emulator's password is their concatenation, so both files must be read
and joined), the OAuth client secret, the RabbitMQ password (with characters the URL must
percent-encode) and the ledger password. A task created in Sales Connect reaching Salesforce
proves each secret worked; none of them may appear in the processes' debug logs.

Files others may read, missing or empty files, and a secret given both ways stop the command
at start with exit status 2 and a message naming the option and the file (never the secret).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final
from urllib.parse import quote

import click
import pytest
import requests
from click.testing import CliRunner

from tests.support.databases import fresh_postgres_database
from tests.support.rabbitmq import SHARED_MANAGEMENT_URL, Management, fresh_vhost
from tests.support.system import ComponentProcess, RunningSystem, running_system
from tests.support.waiting import wait_for
from workers.options import INGRESS_SECRET_FILE, secret_file_option
from workers.up import COMPONENTS_BY_NAME

ROOT: Final = Path(__file__).resolve().parents[1]
TASKSYNC: Final = Path(sys.executable).with_name("tasksync")

TOKEN: Final = secrets.token_hex(6)
SALESFORCE_PASSWORD: Final = f"Sf-Integration-Pass-{TOKEN}"
SECURITY_TOKEN: Final = f"SecTok{TOKEN}Z9"
CLIENT_SECRET: Final = f"oauth-client-secret-{TOKEN}"
AMQP_PASSWORD: Final = f"amqp/pass+word {TOKEN}"  # "/", "+" and " " are percent-encoded
LEDGER_PASSWORD: Final = f"ledger-pass-{TOKEN}"
SECRETS: Final = {
    "Salesforce password": SALESFORCE_PASSWORD,
    "security token": SECURITY_TOKEN,
    "password and token": SALESFORCE_PASSWORD + SECURITY_TOKEN,
    "OAuth client secret": CLIENT_SECRET,
    "RabbitMQ password": AMQP_PASSWORD,
    "RabbitMQ password, URL-encoded": quote(AMQP_PASSWORD, safe=""),
    "ledger password": LEDGER_PASSWORD,
}
# What the to-salesforce worker and the Sales Connect producer are told in the environment;
# they must not be given any of these.
SECRET_VARIABLES: Final = (
    "TASKSYNC_SALESFORCE_PASSWORD",
    "TASKSYNC_SALESFORCE_SECURITY_TOKEN",
    "TASKSYNC_SALESFORCE_CLIENT_SECRET",
    "TASKSYNC_INGRESS_SECRET",
)


def secret_file(directory: Path, name: str, content: str, mode: int = 0o600) -> Path:
    """`content` in `directory/name` with a final newline (as `echo` writes it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(content + "\n")
    path.chmod(mode)
    return path


# -- the happy path --------------------------------------------------------------------------


@contextlib.contextmanager
def amqp_user(system: RunningSystem) -> Iterator[str]:
    """A RabbitMQ user of this test's own with AMQP_PASSWORD, on the system's vhost."""
    assert system.vhost is not None
    management = Management(SHARED_MANAGEMENT_URL)
    name = f"tasksync-secret-files-{uuid.uuid4().hex[:8]}"
    management.request(
        "PUT", f"users/{quote(name, safe='')}", json={"password": AMQP_PASSWORD, "tags": ""}
    )
    try:
        management.request(
            "PUT",
            f"permissions/{quote(system.vhost.name, safe='')}/{quote(name, safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        yield name
    finally:
        with contextlib.suppress(requests.HTTPError):
            management.request("DELETE", f"users/{quote(name, safe='')}")


def start_with_files(
    system: RunningSystem, component: str, files: dict[str, Path], amqp_url: str
) -> ComponentProcess:
    env = system.bridge_environment(component)
    for variable in SECRET_VARIABLES:
        env.pop(variable, None)
    env.update({variable: str(path) for variable, path in files.items()})
    env["TASKSYNC_AMQP_URL"] = amqp_url
    process = ComponentProcess(
        COMPONENTS_BY_NAME[component],
        system.workdir / component,
        env,
        ("--log-level", "debug", "--log-format", "text"),
    )
    system.bridge[component] = process
    process.start()
    process.wait_ready(60)
    return process


def test_every_secret_from_a_file_works_and_stays_out_of_the_logs(tmp_path: Path) -> None:
    secret_dir = tmp_path / "secrets"
    files = {
        "TASKSYNC_SALESFORCE_PASSWORD_FILE": secret_file(
            secret_dir, "salesforce-password", SALESFORCE_PASSWORD
        ),
        "TASKSYNC_SALESFORCE_SECURITY_TOKEN_FILE": secret_file(
            secret_dir, "salesforce-token", SECURITY_TOKEN, 0o400
        ),
        "TASKSYNC_SALESFORCE_CLIENT_SECRET_FILE": secret_file(
            secret_dir, "client-secret", CLIENT_SECRET
        ),
        "TASKSYNC_AMQP_PASSWORD_FILE": secret_file(secret_dir, "amqp-password", AMQP_PASSWORD),
        "TASKSYNC_LEDGER_PASSWORD_FILE": secret_file(
            secret_dir, "ledger-password", LEDGER_PASSWORD
        ),
    }
    with (
        fresh_postgres_database("secretfiles") as ledger_url,
        running_system(
            tmp_path / "system",
            components=frozenset(),
            ledger_url=ledger_url,
            emulator_args=("--client-secret", CLIENT_SECRET),
        ) as system,
        amqp_user(system) as user,
    ):
        assert system.vhost is not None
        integration = system.emulator.info["integration_user"]
        system.admin.update_user(integration["id"], password=SALESFORCE_PASSWORD + SECURITY_TOKEN)
        amqp_url = f"amqp://{user}@127.0.0.1:5672/{quote(system.vhost.name, safe='')}"
        worker = start_with_files(system, "to-salesforce", files, amqp_url)
        producer = start_with_files(
            system,
            "salesconnect-producer",
            {
                key: files[key]
                for key in ("TASKSYNC_AMQP_PASSWORD_FILE", "TASKSYNC_LEDGER_PASSWORD_FILE")
            },
            amqp_url,
        )

        synced = system.create_synced_user("Secret Files", wait_first_sync=False)
        task = system.salesconnect.create_task(synced.user_id, "Call the vault", "2026-12-01")
        linked = wait_for(
            lambda: system.salesconnect.get_task(task["id"]).get("salesforce_task_id"),
            timeout=60,
            what="the task to reach Salesforce through the producer and worker",
        )
        record = synced.salesforce().Task.get(linked)
        assert record["Subject"] == "Call the vault"
        logs = {"to-salesforce": worker.log(), "salesconnect-producer": producer.log()}

    assert "DEBUG" in logs["to-salesforce"], "the worker should have logged at debug level"
    for name, text in logs.items():
        for what, secret in SECRETS.items():
            assert secret not in text, f"the {what} appears in the {name} log"


# -- refusals --------------------------------------------------------------------------------


def tasksync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKSYNC_")}
    environment.update(env)
    return subprocess.run(
        [str(TASKSYNC), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


WORKER: Final = ("worker", "to-salesforce", "--salesforce-username", "integration@example.com")


@pytest.mark.parametrize(
    ("mode", "content", "problem"),
    [
        (0o640, SALESFORCE_PASSWORD, "others than its owner may read or write it (mode 0640)"),
        (0o604, SALESFORCE_PASSWORD, "others than its owner may read or write it (mode 0604)"),
        (0o600, " \n\t", "empty"),
        (None, "", "no such file"),
    ],
    ids=["group-readable", "world-readable", "empty", "missing"],
)
def test_a_bad_secret_file_stops_the_command_naming_the_option(
    tmp_path: Path, mode: int | None, content: str, problem: str
) -> None:
    path = tmp_path / "salesforce-password"
    if mode is not None:
        secret_file(tmp_path, path.name, content, mode)
    result = tasksync(*WORKER, env={"TASKSYNC_SALESFORCE_PASSWORD_FILE": str(path)})
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert (
        "Invalid value for '--salesforce-password-file' / TASKSYNC_SALESFORCE_PASSWORD_FILE: "
        f"{path}: {problem}" in said
    ), said
    if mode is not None and mode & 0o077:
        assert f"chmod 600 {path}" in said
    assert SALESFORCE_PASSWORD not in result.stdout + result.stderr


def test_a_secret_given_both_ways_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "client-secret", CLIENT_SECRET)
    result = tasksync(
        *WORKER,
        env={
            "TASKSYNC_SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
            "TASKSYNC_SALESFORCE_CLIENT_SECRET_FILE": str(path),
        },
    )
    assert result.returncode == 2, result.stderr
    assert (
        "give --salesforce-client-secret (TASKSYNC_SALESFORCE_CLIENT_SECRET) or "
        "--salesforce-client-secret-file (TASKSYNC_SALESFORCE_CLIENT_SECRET_FILE), not both"
    ) in " ".join(result.stderr.split())
    assert CLIENT_SECRET not in result.stdout + result.stderr


def test_url_password_files_need_a_url_naming_only_the_user(tmp_path: Path) -> None:
    password = secret_file(tmp_path, "password", AMQP_PASSWORD)
    with_password = tasksync(
        *WORKER,
        env={
            "TASKSYNC_AMQP_URL": "amqp://worker:inline-password@127.0.0.1:5672/%2F",
            "TASKSYNC_AMQP_PASSWORD_FILE": str(password),
        },
    )
    assert with_password.returncode == 2, with_password.stderr
    said = " ".join(with_password.stderr.split())
    assert "--amqp-url amqp://worker:***@127.0.0.1:5672/%2F holds a password already" in said
    assert "inline-password" not in said

    sqlite_ledger = tasksync(
        *WORKER,
        "--ledger-url",
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        env={"TASKSYNC_LEDGER_PASSWORD_FILE": str(password)},
    )
    assert sqlite_ledger.returncode == 2, sqlite_ledger.stderr
    assert "--ledger-password-file is for a PostgreSQL ledger" in sqlite_ledger.stderr


def test_the_jwt_private_key_must_be_private_too(tmp_path: Path) -> None:
    key = secret_file(tmp_path, "jwt.key", "-----BEGIN PRIVATE KEY-----", 0o644)
    result = tasksync(
        *WORKER,
        "--salesforce-auth",
        "jwt",
        "--salesforce-client-id",
        "app",
        env={"TASKSYNC_SALESFORCE_PRIVATE_KEY_FILE": str(key)},
    )
    assert result.returncode == 2, result.stderr
    assert (
        "Invalid value for '--salesforce-private-key-file' / "
        f"TASKSYNC_SALESFORCE_PRIVATE_KEY_FILE: {key}: others than its owner may read"
    ) in " ".join(result.stderr.split())


def test_a_password_file_completes_a_url_naming_only_the_user(tmp_path: Path) -> None:
    """`tasksync topology declare` with the password in a file; the same password in the URL
    too (a child of `tasksync up` inherits both) is accepted, another one refused."""
    password = secret_file(tmp_path, "guest-password", "guest")
    with fresh_vhost("tasksync-secret-files") as vhost:
        base = f"amqp://guest@127.0.0.1:5672/{quote(vhost.name, safe='')}"
        for url in (base, base.replace("guest@", "guest:guest@")):
            result = tasksync(
                "topology",
                "declare",
                env={"TASKSYNC_AMQP_URL": url, "TASKSYNC_AMQP_PASSWORD_FILE": str(password)},
            )
            assert result.returncode == 0, result.stderr
            assert f"in vhost {vhost.name!r}" in result.stdout
        result = tasksync("topology", "declare", env={"TASKSYNC_AMQP_URL": base})
        assert result.returncode == 2, result.stderr
        assert "names the user guest but no password" in result.stderr
        other = secret_file(tmp_path, "other-password", "not-guests-password")
        result = tasksync(
            "topology",
            "declare",
            env={
                "TASKSYNC_AMQP_URL": base.replace("guest@", "guest:guest@"),
                "TASKSYNC_AMQP_PASSWORD_FILE": str(other),
            },
        )
        assert result.returncode == 2, result.stderr
        assert "holds a password already" in result.stderr
        assert "not-guests-password" not in result.stderr


def test_the_ingress_secret_file_variant_takes_one_secret_a_line(tmp_path: Path) -> None:
    """`secret_file_option(INGRESS_SECRET_FILE)`, ready for `tasksync ingress`: a file with the
    new and the old secret on two lines gives the rotation list `new,old`."""
    seen: dict[str, str | None] = {}

    @click.command()
    @click.option("--secret", envvar="TASKSYNC_INGRESS_SECRET")
    @secret_file_option(INGRESS_SECRET_FILE)
    def command(secret: str | None) -> None:
        seen["secret"] = secret

    path = secret_file(tmp_path, "ingress-secret", f"new-{TOKEN}\n\nold-{TOKEN}  ")
    result = CliRunner().invoke(command, [], env={"TASKSYNC_INGRESS_SECRET_FILE": str(path)})
    assert result.exit_code == 0, result.output
    assert seen["secret"] == f"new-{TOKEN},old-{TOKEN}"
    both = CliRunner().invoke(command, ["--secret", "x", "--secret-file", str(path)])
    assert both.exit_code == 2
    assert "give --secret (TASKSYNC_INGRESS_SECRET) or --secret-file" in both.output
