"""Running the Salesforce emulator for tests, benchmarks and the soak: a real child process.

`EmulatorProcess` starts `tasksync salesforce-emulator --port 0 --data-dir <dir>`, waits (with
a deadline) for the `emulator.json` it writes once it serves, and hands out what clients need:
the instance URL, the CA path, the default credentials, an admin client, and
`salesforce(user=...)`, a `simple_salesforce.Salesforce` on a `requests.Session` that trusts
the emulator's CA. It can stop, restart (same port, so existing clients keep working) and
`kill -9` the process.

Note: `requests` lets the REQUESTS_CA_BUNDLE environment variable (set on this machine)
override `Session.verify` unless `Session.trust_env` is False; `http_session()` sets it.

Fixtures: `emulator_session` (one emulator for the whole test session), `emulator` (that one,
reset to a fresh org before the test) and `fresh_emulator` (a process of the test's own, for
restarts and kills). Import them into a conftest.py to use them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DISCOVERY_FILE = "emulator.json"
DEFAULT_CLIENT = "tests"


@dataclass(frozen=True)
class EmulatorUser:
    id: str
    username: str
    password: str


class EmulatorError(RuntimeError):
    pass


def http_session(ca_path: str | Path, client: str | None = None) -> requests.Session:
    """A requests session that trusts the emulator's CA (and names its client, if given)."""
    session = requests.Session()
    session.verify = str(ca_path)
    session.trust_env = False
    if client:
        session.headers["Sforce-Call-Options"] = f"client={client}"
    return session


def instant(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EmulatorAdmin:
    """The emulator's /_emulator API; every method raises EmulatorError on an unexpected status."""

    def __init__(self, admin_url: str, session: requests.Session) -> None:
        self.url = admin_url
        self.session = session

    def request(
        self, method: str, path: str, body: Any = None, *, expect: Sequence[int] = (200, 201)
    ) -> Any:
        response = self.session.request(
            method, f"{self.url}/{path.lstrip('/')}", json=body, timeout=30
        )
        if response.status_code not in expect:
            raise EmulatorError(
                f"{method} /_emulator/{path} answered {response.status_code}: {response.text}"
            )
        return response.json()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "health")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "stats")
        return result

    def clear_stats(self) -> None:
        self.request("DELETE", "stats")

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "faults")
        return result

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", "faults", changes)
        return result

    def expire_sessions(self) -> int:
        return int(self.request("POST", "expire-sessions")["expired"])

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "users")
        return result

    def create_user(self, username: str, password: str, name: str, **extra: Any) -> EmulatorUser:
        created = self.request(
            "POST", "users", {"username": username, "password": password, "name": name, **extra}
        )
        return EmulatorUser(created["Id"], username, password)

    def update_user(self, user_id: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PATCH", f"users/{user_id}", changes)
        return result

    def undelete(self, task_id: str, user_id: str | None = None) -> dict[str, Any]:
        body = {} if user_id is None else {"user_id": user_id}
        result: dict[str, Any] = self.request("POST", f"tasks/{task_id}/undelete", body)
        return result

    def backdate(self, task_id: str, **stamps: datetime | str) -> dict[str, Any]:
        """Set CreatedDate, LastModifiedDate, SystemModstamp and/or DeletedDate."""
        body = {name: instant(value) for name, value in stamps.items()}
        result: dict[str, Any] = self.request("PATCH", f"tasks/{task_id}", body)
        return result

    def purge_recycle_bin(self) -> int:
        return int(self.request("POST", "recycle-bin/purge")["purged"])

    def validation_rules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "validation-rules")
        return result

    def set_validation_rules(self, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("PUT", "validation-rules", list(rules))
        return result

    def notifications(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "notifications")
        return result

    def configure_notifications(self, **settings: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", "notifications", settings)
        return result

    def set_external_id(
        self, *, unique: bool | None = None, case_sensitive: bool | None = None
    ) -> dict[str, bool]:
        """Make Sales_Connect_Id__c (non-)unique and/or (in)sensitive to case."""
        body = {
            name: value
            for name, value in (("unique", unique), ("case_sensitive", case_sensitive))
            if value is not None
        }
        result: dict[str, bool] = self.request("PUT", "external-id", body)
        return result

    def reset(self) -> None:
        self.request("POST", "reset")


class EmulatorProcess:
    """A `tasksync salesforce-emulator` child process on its own data directory."""

    def __init__(self, data_dir: Path, *args: str, start_timeout: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self.args = tuple(args)
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._port: int | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self, *extra_args: str) -> EmulatorProcess:
        if self.is_running:
            raise EmulatorError("the emulator is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        discovery = self.data_dir / DISCOVERY_FILE
        discovery.unlink(missing_ok=True)
        port = str(self._port) if self._port is not None else "0"
        command = [
            str(Path(sys.executable).with_name("tasksync")),
            "salesforce-emulator",
            "--port",
            port,
            "--data-dir",
            str(self.data_dir),
            *self.args,
            *extra_args,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with (
            (self.data_dir / "emulator.out.log").open("ab") as out,
            (self.data_dir / "emulator.err.log").open("ab") as err,
        ):
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        process = self.process

        def ready() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise EmulatorError(
                    f"the emulator exited with {process.returncode}: {self.log_text()[-2000:]}"
                )
            try:
                info: dict[str, Any] = json.loads(discovery.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == process.pid else None

        try:
            self.info = wait_for(
                _raising(ready), timeout=self.start_timeout, what="the emulator to serve"
            )
        except _Abort as aborted:
            self.kill()
            raise aborted.error from None
        except BaseException:
            self.kill()
            raise
        self._port = int(self.info["port"])
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, and wait for a clean exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None

    def kill(self) -> None:
        """kill -9: no chance to flush or clean up."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(15)
        self.process = None

    def restart(self, *extra_args: str, kill: bool = False, same_port: bool = True) -> None:
        if kill:
            self.kill()
        else:
            self.stop()
        if not same_port:
            self._port = None
        self.start(*extra_args)

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> EmulatorProcess:
        return self.start() if not self.is_running else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        parts = []
        for name in ("emulator.out.log", "emulator.err.log"):
            path = self.data_dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    # -- what clients need -------------------------------------------------------------------

    @property
    def instance_url(self) -> str:
        return str(self.info["instance_url"])

    @property
    def admin_url(self) -> str:
        return str(self.info["admin_url"])

    @property
    def token_url(self) -> str:
        return str(self.info["token_url"])

    @property
    def ca_path(self) -> str:
        return str(self.info["ca_path"])

    @property
    def org_id(self) -> str:
        return str(self.info["org_id"])

    @property
    def client_id(self) -> str:
        return str(self.info["client_id"])

    @property
    def client_secret(self) -> str:
        return str(self.info["client_secret"])

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def integration_user(self) -> EmulatorUser:
        return _user(self.info["integration_user"])

    @property
    def sales_rep(self) -> EmulatorUser:
        return _user(self.info["sales_rep"])

    def http_session(self, client: str | None = None) -> requests.Session:
        return http_session(self.ca_path, client)

    @property
    def admin(self) -> EmulatorAdmin:
        return EmulatorAdmin(self.admin_url, self.http_session())

    def resolve_user(self, user: str | EmulatorUser) -> EmulatorUser:
        if isinstance(user, EmulatorUser):
            return user
        if user in ("integration", "integration_user"):
            return self.integration_user
        if user == "sales_rep":
            return self.sales_rep
        raise EmulatorError(f"unknown user {user!r}: pass 'integration', 'sales_rep' or a user")

    def access_token(self, user: str | EmulatorUser = "integration") -> str:
        """An OAuth access token (password grant) for `user`."""
        account = self.resolve_user(user)
        response = self.http_session().post(
            self.token_url,
            data={
                "grant_type": "password",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "username": account.username,
                "password": account.password,
            },
            timeout=30,
        )
        if response.status_code != 200:
            raise EmulatorError(f"login as {account.username} failed: {response.text}")
        return str(response.json()["access_token"])

    def salesforce(
        self,
        user: str | EmulatorUser = "integration",
        *,
        client: str | None = DEFAULT_CLIENT,
        version: str = "59.0",
    ) -> Salesforce:
        """simple-salesforce, unchanged, logged in as `user` through OAuth."""
        return Salesforce(
            instance_url=self.instance_url,
            session_id=self.access_token(user),
            session=self.http_session(client),
            version=version,
        )


def _user(raw: Mapping[str, Any]) -> EmulatorUser:
    return EmulatorUser(str(raw["id"]), str(raw["username"]), str(raw["password"]))


def _raising(condition: Any) -> Any:
    """Let an EmulatorError (the process died) end the wait at once instead of timing out."""

    def checked() -> Any:
        try:
            return condition()
        except EmulatorError as exc:
            raise _Abort(exc) from exc

    return checked


class _Abort(BaseException):
    def __init__(self, error: EmulatorError) -> None:
        super().__init__(str(error))
        self.error = error


# -- pytest fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for the whole test session."""
    process = EmulatorProcess(tmp_path_factory.mktemp("salesforce-emulator"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def emulator(emulator_session: EmulatorProcess) -> EmulatorProcess:
    """The session's emulator, reset to a fresh org (default users, no Tasks, no faults)."""
    if not emulator_session.is_running:
        emulator_session.start()
    emulator_session.admin.reset()
    return emulator_session


@pytest.fixture
def fresh_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """An emulator process of the test's own, not started yet: set `.args`, then `.start()`."""
    process = EmulatorProcess(tmp_path / "salesforce-emulator")
    yield process
    process.stop()
