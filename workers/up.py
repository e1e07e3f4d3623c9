"""`tasksync up`: the whole system on one machine, each component a supervised child process.

What it owns: which components make the system and how each is started (`COMPONENTS`,
`component_argv`, `BridgeSettings.variables`: the test harness in tests/support/system.py starts
them the same way), the data directory's layout, seeding the demo user once, pointing the
emulator's notification stand-in at the ingress, `endpoints.json`, and supervision: prefixed
logs, restarts with backoff, and a clean stop on Ctrl-C.

Layout of the data directory (kept between runs, so a second run resumes where the first
stopped): `salesforce-emulator/` (the org, its CA, emulator.json), `salesconnect.sqlite3`,
`ledger.sqlite3`, the ingress's TLS files, `run/` (ready files), `logs/<component>.log`,
`up-state.json` (the ingress secret, the Sales Connect service token and the seeded demo user;
mode 0600), `endpoints.json`
(mode 0600: it holds the development credentials) and `up.lock`.

A child that exits while the system runs is restarted after a pause that doubles from 1 s up to
30 s (reset once it has run for a minute); after five failures in a row that each ran less than a
minute, `up` stops everything and exits 1, since a component that cannot stay up means the
system is not running.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final, TypedDict
from urllib.parse import quote, urlsplit, urlunsplit

import click
import requests

from workers.options import (
    amqp_url_option,
    data_dir_option,
    ledger_url_option,
    management_url_option,
    topology_options,
)
from workers.wiring import EXIT_INVALID, EXIT_UNREACHABLE, resolve_ledger_url

HOST: Final = "127.0.0.1"
DEFAULT_EMULATOR_PORT: Final = 8443
DEFAULT_SALESCONNECT_PORT: Final = 8080
DEFAULT_INGRESS_PORT: Final = 8444
EMULATOR_DIR: Final = "salesforce-emulator"
EMULATOR_DISCOVERY_FILE: Final = "emulator.json"
ENDPOINTS_FILE: Final = "endpoints.json"
STATE_FILE: Final = "up-state.json"
LOCK_FILE: Final = "up.lock"
ENDPOINTS_FORMAT: Final = "tasksync-endpoints/1"
DEMO_USER_EMAIL: Final = "demo@tasksync.example"
DEMO_USER_NAME: Final = "Demo User"
SERVICE_TOKEN_VARIABLE: Final = "TASKSYNC_SALESCONNECT_SERVICE_TOKEN"  # noqa: S105 - a name
FIRST_RESTART_DELAY: Final = 1.0
MAX_RESTART_DELAY: Final = 30.0
STABLE_AFTER_SECONDS: Final = 60.0
MAX_QUICK_FAILURES: Final = 5
_PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True)
class ComponentSpec:
    """One process of the system: its short name (log prefix, `--without`), what it is, and
    the `tasksync` subcommand that runs it."""

    name: str
    title: str
    command: tuple[str, ...]
    port_option: str | None = None

    @property
    def command_line(self) -> str:
        return "tasksync " + " ".join(self.command)


EMULATOR: Final = ComponentSpec(
    "emulator", "Salesforce emulator", ("salesforce-emulator",), "--emulator-port"
)
SALESCONNECT: Final = ComponentSpec(
    "salesconnect", "Sales Connect service", ("salesconnect",), "--salesconnect-port"
)
INGRESS: Final = ComponentSpec("ingress", "Salesforce ingress", ("ingress",), "--ingress-port")
SALESCONNECT_PRODUCER: Final = ComponentSpec(
    "salesconnect-producer", "Sales Connect producer", ("producer", "salesconnect")
)
SALESFORCE_POLLER: Final = ComponentSpec(
    "salesforce-poller", "Salesforce poller", ("producer", "salesforce")
)
TO_SALESFORCE: Final = ComponentSpec(
    "to-salesforce", "to-salesforce worker", ("worker", "to-salesforce")
)
TO_SALESCONNECT: Final = ComponentSpec(
    "to-salesconnect", "to-salesconnect worker", ("worker", "to-salesconnect")
)
SERVICES: Final = (EMULATOR, SALESCONNECT)
BRIDGE_COMPONENTS: Final = (
    INGRESS,
    SALESCONNECT_PRODUCER,
    SALESFORCE_POLLER,
    TO_SALESFORCE,
    TO_SALESCONNECT,
)
COMPONENTS: Final = (*SERVICES, *BRIDGE_COMPONENTS)
COMPONENTS_BY_NAME: Final = {spec.name: spec for spec in COMPONENTS}


# -- how components are started (shared with tests/support/system.py) ----------------------


def tasksync_command() -> list[str]:
    """How to run `tasksync` in a child: the console script beside this interpreter."""
    script = Path(sys.executable).with_name("tasksync")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from workers.cli import main; main(prog_name='tasksync')"]


def component_argv(
    spec: ComponentSpec,
    *,
    ready_file: Path | None = None,
    port: int | None = None,
    data_dir: Path | None = None,
    host: str = HOST,
) -> list[str]:
    """The command line of one component; `data_dir` is the emulator's or the Sales Connect
    service's own. Settings shared by the bridge's processes travel in their environment
    (`BridgeSettings.variables`), so no secret is ever on a command line."""
    argv = [*tasksync_command(), *spec.command]
    if spec in SERVICES and data_dir is None:
        raise ValueError(f"the {spec.title} needs its data directory")
    if spec is EMULATOR:
        argv += ["--host", host, "--port", str(port or 0), "--data-dir", str(data_dir)]
        return argv
    if spec is SALESCONNECT:
        argv += ["--host", host, "--port", str(port or 0), "--data-dir", str(data_dir)]
        argv += ["--log-level", "warning"]
    elif spec is INGRESS:
        argv += ["--host", host, "--port", str(port or 0)]
    elif spec in (TO_SALESFORCE, TO_SALESCONNECT):
        argv += ["--shards", "all"]
    if ready_file is not None:
        argv += ["--ready-file", str(ready_file)]
    return argv


@dataclass(frozen=True)
class BridgeSettings:
    """What every bridge process is told, as TASKSYNC_* environment variables."""

    amqp_url: str
    ledger_url: str
    data_dir: Path
    shard_count: int
    retry_tiers: str
    management_url: str
    salesforce_login_url: str
    salesforce_username: str
    salesforce_password: str = field(repr=False)
    salesforce_client_id: str
    salesforce_client_secret: str = field(repr=False)
    salesforce_ca_bundle: str
    salesconnect_url: str
    ingress_secret: str = field(repr=False)
    salesconnect_token: str = field(default="", repr=False)

    def variables(self) -> dict[str, str]:
        token = {"TASKSYNC_SALESCONNECT_TOKEN": self.salesconnect_token}
        return {
            "TASKSYNC_AMQP_URL": self.amqp_url,
            "TASKSYNC_LEDGER_URL": self.ledger_url,
            "TASKSYNC_DATA_DIR": str(self.data_dir),
            "TASKSYNC_SHARD_COUNT": str(self.shard_count),
            "TASKSYNC_RETRY_TIERS": self.retry_tiers,
            "TASKSYNC_MANAGEMENT_URL": self.management_url,
            "TASKSYNC_SALESFORCE_LOGIN_URL": self.salesforce_login_url,
            "TASKSYNC_SALESFORCE_AUTH": "password",
            "TASKSYNC_SALESFORCE_USERNAME": self.salesforce_username,
            "TASKSYNC_SALESFORCE_PASSWORD": self.salesforce_password,
            "TASKSYNC_SALESFORCE_CLIENT_ID": self.salesforce_client_id,
            "TASKSYNC_SALESFORCE_CLIENT_SECRET": self.salesforce_client_secret,
            "TASKSYNC_SALESFORCE_CA_BUNDLE": self.salesforce_ca_bundle,
            "TASKSYNC_SALESCONNECT_URL": self.salesconnect_url,
            "TASKSYNC_INGRESS_SECRET": self.ingress_secret,
            **(token if self.salesconnect_token else {}),
        }

    @classmethod
    def for_emulator(
        cls,
        emulator: Mapping[str, Any],
        *,
        amqp_url: str,
        ledger_url: str,
        data_dir: Path,
        shard_count: int,
        retry_tiers: str,
        management_url: str,
        salesconnect_url: str,
        ingress_secret: str,
        salesconnect_token: str = "",
    ) -> BridgeSettings:
        """Settings that log in to the emulator (described by its emulator.json) as the
        integration user."""
        integration = emulator["integration_user"]
        return cls(
            amqp_url=amqp_url,
            ledger_url=ledger_url,
            data_dir=data_dir,
            shard_count=shard_count,
            retry_tiers=retry_tiers,
            management_url=management_url,
            salesforce_login_url=str(emulator["instance_url"]),
            salesforce_username=str(integration["username"]),
            salesforce_password=str(integration["password"]),
            salesforce_client_id=str(emulator["client_id"]),
            salesforce_client_secret=str(emulator["client_secret"]),
            salesforce_ca_bundle=str(emulator["ca_path"]),
            salesconnect_url=salesconnect_url,
            ingress_secret=ingress_secret,
            salesconnect_token=salesconnect_token,
        )


def read_ready_file(path: Path, pid: int | None = None) -> dict[str, Any] | None:
    """The JSON a component wrote once it serves, or None while it has not (or it is stale:
    written by another pid, when the file names one)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    if pid is not None and "pid" in info and info["pid"] != pid:
        return None
    return info


def unavailable_components(
    specs: Sequence[ComponentSpec], group: click.Group | None = None
) -> list[tuple[ComponentSpec, str]]:
    """Each component this build cannot run, with why: its command is missing, or it takes no
    `--ready-file` (so nobody could tell when it serves)."""
    if group is None:
        from workers.cli import main  # noqa: PLC0415 - the CLI imports this module lazily

        group = main
    missing: list[tuple[ComponentSpec, str]] = []
    for spec in specs:
        command: click.Command = group
        ctx = click.Context(group)
        reason = None
        for part in spec.command:
            if not isinstance(command, click.Group):
                reason = f"`{spec.command_line}` is not in this build"
                break
            try:
                found = command.get_command(ctx, part)
            except (ImportError, AttributeError, TypeError) as exc:
                reason = f"`{spec.command_line}` cannot be loaded: {exc}"
                break
            if found is None:
                reason = f"`{spec.command_line}` is not in this build"
                break
            command = found
        if reason is None and spec is not EMULATOR:
            options = {opt for param in command.params for opt in getattr(param, "opts", ())}
            if "--ready-file" not in options:
                reason = f"`{spec.command_line}` has no --ready-file option"
        if reason is not None:
            missing.append((spec, reason))
    return missing


# -- endpoints.json ------------------------------------------------------------------------


class DemoUser(TypedDict):
    name: str
    email: str
    password: str
    api_token: str
    salesconnect_user_id: str
    salesforce_user_id: str
    salesforce_username: str
    salesforce_password: str
    command_center_url: str
    settings_url: str
    sign_in_url: str


def management_ui_url(management_url: str) -> str:
    """The management URL without its credentials: what a person opens."""
    parts = urlsplit(management_url)
    netloc = parts.hostname or HOST
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") or "", "", ""))


def endpoints_document(
    *,
    data_dir: Path,
    emulator: Mapping[str, Any],
    salesconnect_url: str,
    salesconnect_service_token: str,
    ingress: Mapping[str, Any] | None,
    amqp_url: str,
    management_url: str,
    ledger_url: str,
    demo_users: Sequence[DemoUser],
    components: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The shape of `endpoints.json` (docs/running-locally.md documents every key)."""
    vhost = urlsplit(amqp_url).path.lstrip("/") or "%2F"
    return {
        "format": ENDPOINTS_FORMAT,
        "data_dir": str(data_dir),
        "salesforce": {
            "instance_url": emulator["instance_url"],
            "login_url": emulator["instance_url"],
            "token_url": emulator["token_url"],
            "admin_url": emulator["admin_url"],
            "ca_path": emulator["ca_path"],
            "api_version": emulator["api_version"],
            "org_id": emulator["org_id"],
            "oauth_client": {
                "client_id": emulator["client_id"],
                "client_secret": emulator["client_secret"],
            },
            "integration_user": dict(emulator["integration_user"]),
            "sales_rep": dict(emulator["sales_rep"]),
        },
        "salesconnect": {
            "url": salesconnect_url,
            "api_url": f"{salesconnect_url}/api",
            "openapi_url": f"{salesconnect_url}/openapi.json",
            "changes_url": f"{salesconnect_url}/api/changes",
            "service_token": salesconnect_service_token,
        },
        "ingress": (
            {"url": ingress.get("url"), "ca_path": ingress.get("ca_path")}
            if ingress is not None
            else None
        ),
        "rabbitmq": {
            "amqp_url": amqp_url,
            "vhost": vhost,
            "management_url": management_ui_url(management_url),
        },
        "ledger_url": ledger_url,
        "demo_users": [dict(user) for user in demo_users],
        "components": {name: dict(info) for name, info in components.items()},
    }


def endpoints_defaults(document: Mapping[str, Any]) -> dict[str, str]:
    """Option defaults (by parameter name) for commands that talk to the system `up` runs."""
    salesforce = document["salesforce"]
    return {
        "salesforce_login_url": str(salesforce["login_url"]),
        "salesforce_auth": "password",
        "salesforce_username": str(salesforce["integration_user"]["username"]),
        "salesforce_password": str(salesforce["integration_user"]["password"]),
        "salesforce_client_id": str(salesforce["oauth_client"]["client_id"]),
        "salesforce_client_secret": str(salesforce["oauth_client"]["client_secret"]),
        "salesforce_ca_bundle": str(salesforce["ca_path"]),
        "salesconnect_url": str(document["salesconnect"]["url"]),
        "salesconnect_token": str(document["salesconnect"].get("service_token") or ""),
    }


def write_private_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write atomically, readable by the owner only (the documents hold credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


# -- ports, broker, lock -------------------------------------------------------------------


def port_in_use(host: str, port: int) -> OSError | None:
    """Why `port` cannot be bound on `host` now, or None when it is free (0 always is)."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Servers set SO_REUSEADDR, so a port held only by TIME_WAIT connections counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def declare_topology(amqp_url: str, shard_count: int, retry_tiers: str) -> None:
    """What `tasksync topology declare` does; raises pika's AMQPError on failure."""
    import pika  # noqa: PLC0415 - keeps `tasksync --help` quick

    from bridge.messaging.connection import connection_parameters  # noqa: PLC0415
    from workers.wiring import build_topology  # noqa: PLC0415

    connection = pika.BlockingConnection(connection_parameters(amqp_url, name="tasksync up"))
    try:
        build_topology(shard_count, retry_tiers).declare(connection.channel())
    finally:
        if connection.is_open:
            connection.close()


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold off a second `tasksync up` on the same data directory."""
    path = data_dir / LOCK_FILE
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise click.ClickException(
                f"another tasksync up runs on {data_dir} ({holder}); stop it first or pass "
                "another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def local_time_zone() -> str:
    """The machine's IANA time zone name, so the demo Command Center's "today" is the user's."""
    configured = os.environ.get("TZ", "").lstrip(":")
    if "/" in configured and not configured.startswith("/"):
        return configured
    with contextlib.suppress(OSError):
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    with contextlib.suppress(OSError):
        name = Path("/etc/timezone").read_text().strip()
        if name:
            return name
    return "UTC"


# -- child processes -----------------------------------------------------------------------


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once in the parent: a child between fork and exec must not load libraries.
_PRCTL: Final = _load_prctl()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if `up` itself dies (even by kill -9)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Console:
    """Everyone's lines on one stdout, each prefixed with who said it, and in a log file per
    component."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def line(self, who: str, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(f"[{who}] {text}\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                pass

    def say(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self.line("up", part)


@dataclass
class Child:
    """One supervised component process."""

    spec: ComponentSpec
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_path: Path
    console: Console
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None
    ready_info: dict[str, Any] | None = None
    _pump: threading.Thread | None = None

    def start(self) -> None:
        if self.spec is not EMULATOR:
            self.ready_path.unlink(missing_ok=True)
        self.ready_info = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches `up` only; it stops children in order
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        self._pump = threading.Thread(
            target=self._copy_output,
            args=(self.process,),
            name=f"log {self.spec.name}",
            daemon=True,
        )
        self._pump.start()

    def _copy_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_path.open("ab") as log:
            for raw in iter(process.stdout.readline, b""):
                log.write(raw)
                log.flush()
                self.console.line(self.spec.name, raw.decode("utf-8", "replace").rstrip())

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def check_ready(self) -> dict[str, Any] | None:
        if self.ready_info is None and self.running:
            self.ready_info = read_ready_file(self.ready_path, self.pid)
        return self.ready_info

    def signal(self, signum: int) -> None:
        if self.running and self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def reap(self) -> None:
        if self.process is not None and self._pump is not None:
            self._pump.join(timeout=2)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class StartupError(click.ClickException):
    exit_code = EXIT_INVALID


class Supervisor:
    """Starts children, waits for their ready files, restarts the ones that exit, and stops
    them all: the bridge first, then the two systems, SIGTERM and then SIGKILL."""

    def __init__(self, console: Console, stop: threading.Event, stop_timeout: float) -> None:
        self.console = console
        self.stop_event = stop
        self.stop_timeout = stop_timeout
        self.children: dict[str, Child] = {}
        self.on_ready: Callable[[Child], None] = lambda child: None

    def start(self, children: Sequence[Child], timeout: float) -> None:
        """Start these together and wait until each serves; a child exiting first fails it."""
        for child in children:
            self.children[child.spec.name] = child
            child.start()
        deadline = time.monotonic() + timeout
        waiting = list(children)
        while waiting:
            for child in list(waiting):
                if child.check_ready() is not None:
                    waiting.remove(child)
                elif not child.running:
                    child.reap()
                    raise StartupError(
                        f"the {child.spec.title} (`{child.spec.command_line}`) exited with "
                        f"code {child.exit_code()} while starting; its last lines "
                        f"({child.log_path}):\n{child.log_tail()}"
                    )
            if not waiting:
                break
            if time.monotonic() > deadline:
                names = ", ".join(child.spec.title for child in waiting)
                raise StartupError(
                    f"not serving after {timeout:.0f} s: {names} (see {waiting[0].log_path})"
                )
            if self.stop_event.wait(0.05):
                raise click.Abort()

    def supervise(self) -> None:
        """Until asked to stop: restart children that exit, with backoff; give up on one that
        keeps failing (StartupError)."""
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            for child in self.children.values():
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self.console.say(f"restarting the {child.spec.title}")
                        child.start()
                    continue
                if child.running:
                    if child.ready_info is None and child.check_ready() is not None:
                        self.on_ready(child)
                    if now - child.started_at >= STABLE_AFTER_SECONDS:
                        child.quick_failures = 0
                    continue
                self._schedule_restart(child, now)

    def _schedule_restart(self, child: Child, now: float) -> None:
        child.reap()
        code = child.exit_code()
        ran = now - child.started_at
        child.quick_failures = child.quick_failures + 1 if ran < STABLE_AFTER_SECONDS else 1
        if child.quick_failures > MAX_QUICK_FAILURES:
            raise StartupError(
                f"the {child.spec.title} exited {MAX_QUICK_FAILURES + 1} times in a row, each "
                f"within a minute (last exit code {code}); stopping everything. Its last lines "
                f"({child.log_path}):\n{child.log_tail()}"
            )
        delay = min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2 ** (child.quick_failures - 1))
        self.console.say(
            f"the {child.spec.title} exited unexpectedly (code {code}, after {ran:.1f} s); "
            f"restarting it in {delay:.0f} s"
        )
        child.restart_at = now + delay
        child.ready_info = None

    def stop_all(self, hurry: threading.Event) -> None:
        bridge = [c for c in self.children.values() if c.spec not in SERVICES]
        services = [c for c in self.children.values() if c.spec in SERVICES]
        deadline = time.monotonic() + self.stop_timeout
        for group in (bridge, services):
            running = [child for child in group if child.running]
            for child in running:
                child.restart_at = None
                child.signal(signal.SIGTERM)
            while any(child.running for child in running):
                if hurry.is_set() or time.monotonic() > deadline:
                    for child in running:
                        if child.running:
                            self.console.say(
                                f"the {child.spec.title} did not stop in time: SIGKILL"
                            )
                            child.signal(signal.SIGKILL)
                    break
                time.sleep(0.05)
        for child in self.children.values():
            if child.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(5)
            child.reap()


# -- seeding and the emulator's notification settings ------------------------------------


@dataclass
class UpState:
    """What `up` keeps between runs: the ingress secret, the Sales Connect service token (the
    bridge's credential, which `up` also uses to seed) and the seeded demo user."""

    path: Path
    ingress_secret: str = field(repr=False)
    service_token: str = field(repr=False)
    demo_user: DemoUser | None = None

    @classmethod
    def load(cls, path: Path) -> UpState:
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            body = {}
        except (OSError, ValueError) as exc:
            raise click.ClickException(
                f"cannot read {path}: {exc} (remove it to start over)"
            ) from None
        state = cls(
            path=path,
            ingress_secret=str(body.get("ingress_secret") or secrets.token_urlsafe(32)),
            service_token=str(body.get("service_token") or secrets.token_urlsafe(32)),
            demo_user=body.get("demo_user"),
        )
        state.save()
        return state

    def save(self) -> None:
        write_private_json(
            self.path,
            {
                "ingress_secret": self.ingress_secret,
                "service_token": self.service_token,
                "demo_user": self.demo_user,
            },
        )


def _sc_request(
    method: str,
    url: str,
    *,
    token: str,
    json_body: Any = None,
    params: Mapping[str, Any] | None = None,
) -> requests.Response:
    return requests.request(
        method,
        url,
        json=json_body,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _find_user(
    salesconnect_url: str, token: str, *, email: str, salesforce_user_id: str
) -> str | None:
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"after": after} if after else {})}
        response = _sc_request("GET", f"{salesconnect_url}/api/users", token=token, params=params)
        response.raise_for_status()
        body = response.json()
        for user in body.get("users", []):
            if user.get("email") == email or user.get("salesforce_user_id") == salesforce_user_id:
                return str(user["id"])
        after = body.get("next_after")
        if not after:
            return None


def seed_demo_user(
    state: UpState, salesconnect_url: str, emulator: Mapping[str, Any]
) -> tuple[DemoUser, bool]:
    """The demo Sales Connect user connected to the emulator's sales rep with sync on, created
    the first time only (a user who later turns sync off keeps it off), with a page password
    and an API token (made again if revoked). True when created now."""
    rep = emulator["sales_rep"]
    token = state.service_token
    known = dict(state.demo_user or {})
    password = str(known.get("password") or f"demo-{secrets.token_urlsafe(12)}")
    if state.demo_user is not None:
        user_id = state.demo_user["salesconnect_user_id"]
        existing = _sc_request("GET", f"{salesconnect_url}/api/users/{quote(user_id)}", token=token)
        if existing.status_code == 200:
            if not known.get("password"):  # seeded by a build without sign-in
                _set_demo_password(salesconnect_url, token, user_id, password)
            api_token = _demo_api_token(salesconnect_url, token, user_id, known.get("api_token"))
            demo = _demo_user(salesconnect_url, user_id, rep, password, api_token)
            if demo != state.demo_user:
                state.demo_user = demo
                state.save()
            return demo, False
    created = _sc_request(
        "POST",
        f"{salesconnect_url}/api/users",
        token=token,
        json_body={
            "email": DEMO_USER_EMAIL,
            "name": DEMO_USER_NAME,
            "time_zone": local_time_zone(),
            "salesforce_user_id": rep["id"],
            "password": password,
        },
    )
    if created.status_code == 201:
        user_id = str(created.json()["id"])
    elif created.status_code == 409:
        found = _find_user(
            salesconnect_url, token, email=DEMO_USER_EMAIL, salesforce_user_id=rep["id"]
        )
        if found is None:
            raise click.ClickException(f"cannot seed the demo user: {created.text}")
        user_id = found
        _set_demo_password(salesconnect_url, token, user_id, password)
    else:
        raise click.ClickException(
            f"cannot seed the demo user: Sales Connect answered {created.status_code} "
            f"{created.text}"
        )
    enabled = _sc_request(
        "PUT",
        f"{salesconnect_url}/api/users/{quote(user_id)}/settings",
        token=token,
        json_body={"task_sync": "on"},
    )
    if enabled.status_code != 200:
        raise click.ClickException(
            f"cannot turn sync on for the demo user: {enabled.status_code} {enabled.text}"
        )
    api_token = _demo_api_token(salesconnect_url, token, user_id, None)
    demo = _demo_user(salesconnect_url, user_id, rep, password, api_token)
    state.demo_user = demo
    state.save()
    return demo, True


def _set_demo_password(salesconnect_url: str, token: str, user_id: str, password: str) -> None:
    response = _sc_request(
        "PUT",
        f"{salesconnect_url}/api/users/{quote(user_id)}/password",
        token=token,
        json_body={"password": password},
    )
    if response.status_code != 204:
        raise click.ClickException(
            f"cannot set the demo user's password: {response.status_code} {response.text}"
        )


def _demo_api_token(salesconnect_url: str, token: str, user_id: str, known: object) -> str:
    """The demo user's API token: the one made before while it still works, else a new one."""
    if isinstance(known, str) and known:
        check = _sc_request("GET", f"{salesconnect_url}/api/me", token=known)
        if check.status_code == 200 and check.json().get("user_id") == user_id:
            return known
    created = _sc_request(
        "POST",
        f"{salesconnect_url}/api/users/{quote(user_id)}/tokens",
        token=token,
        json_body={"name": "tasksync up demo"},
    )
    if created.status_code != 201:
        raise click.ClickException(
            f"cannot make the demo user's API token: {created.status_code} {created.text}"
        )
    return str(created.json()["token"])


def _demo_user(
    salesconnect_url: str,
    user_id: str,
    rep: Mapping[str, Any],
    password: str,
    api_token: str,
) -> DemoUser:
    return DemoUser(
        name=DEMO_USER_NAME,
        email=DEMO_USER_EMAIL,
        password=password,
        api_token=api_token,
        salesconnect_user_id=user_id,
        salesforce_user_id=str(rep["id"]),
        salesforce_username=str(rep["username"]),
        salesforce_password=str(rep["password"]),
        command_center_url=f"{salesconnect_url}/users/{user_id}/command-center",
        settings_url=f"{salesconnect_url}/users/{user_id}/settings",
        sign_in_url=f"{salesconnect_url}/sign-in",
    )


def emulator_session(emulator: Mapping[str, Any]) -> requests.Session:
    session = requests.Session()
    session.verify = str(emulator["ca_path"])
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override `verify`
    return session


def point_notifications_at_ingress(
    emulator: Mapping[str, Any], ingress: Mapping[str, Any], secret: str
) -> None:
    """Make the emulator's stand-in for the Salesforce-side package POST to the ingress. The
    emulator keeps these settings only until it restarts, so this runs after every start of
    either."""
    body: dict[str, Any] = {"ingress_url": ingress["url"], "ingress_secret": secret}
    if ingress.get("ca_path"):
        body["ingress_ca_path"] = str(ingress["ca_path"])
    response = emulator_session(emulator).put(
        f"{emulator['admin_url']}/notifications", json=body, timeout=30
    )
    if response.status_code != 200:
        raise click.ClickException(
            f"the emulator refused the ingress settings: {response.status_code} {response.text}"
        )


# -- the command ---------------------------------------------------------------------------


def _port_option(name: str, envvar: str, default: int, what: str) -> Callable[[Any], Any]:
    return click.option(
        name,
        envvar=envvar,
        show_envvar=True,
        type=click.IntRange(0, 65535),
        default=default,
        show_default=True,
        help=f"Port of the {what} (0: any free port).",
    )


@dataclass
class _Run:
    """One `tasksync up` run: its settings and what has been started."""

    data_dir: Path
    amqp_url: str
    management_url: str
    ledger_url: str
    shard_count: int
    retry_tiers: str
    ports: dict[str, int]
    selected: tuple[ComponentSpec, ...]
    console: Console
    supervisor: Supervisor
    state: UpState
    emulator: dict[str, Any] = field(default_factory=dict)
    salesconnect_url: str = ""
    demo_users: list[DemoUser] = field(default_factory=list)

    def child(self, spec: ComponentSpec, env: Mapping[str, str]) -> Child:
        ready = (
            self.data_dir / EMULATOR_DIR / EMULATOR_DISCOVERY_FILE
            if spec is EMULATOR
            else self.data_dir / "run" / f"{spec.name}.json"
        )
        return Child(
            spec=spec,
            argv=component_argv(
                spec,
                ready_file=ready,
                port=self.ports.get(spec.name),
                data_dir=self.data_dir / EMULATOR_DIR if spec is EMULATOR else self.data_dir,
            ),
            env=dict(env),
            log_path=self.data_dir / "logs" / f"{spec.name}.log",
            ready_path=ready,
            console=self.console,
        )

    def start_services(self, base_env: Mapping[str, str], timeout: float) -> None:
        """The emulator and Sales Connect together, then the demo user (once)."""
        service_env = {**base_env, SERVICE_TOKEN_VARIABLE: self.state.service_token}
        service_env.pop(f"{SERVICE_TOKEN_VARIABLE}_FILE", None)
        services = [self.child(EMULATOR, base_env), self.child(SALESCONNECT, service_env)]
        self.console.say("starting the Salesforce emulator and the Sales Connect service")
        self.supervisor.start(services, timeout)
        for child in services:
            self.pin_port(child)
        self.emulator = dict(services[0].ready_info or {})
        self.salesconnect_url = str((services[1].ready_info or {})["url"]).rstrip("/")
        demo, created = seed_demo_user(self.state, self.salesconnect_url, self.emulator)
        self.demo_users = [demo]
        if created:
            self.console.say(f"seeded the demo user {demo['salesconnect_user_id']} with sync on")

    def start_bridge(self, base_env: Mapping[str, str], timeout: float) -> None:
        """Every selected bridge process together, then the emulator's notifications."""
        settings = BridgeSettings.for_emulator(
            self.emulator,
            amqp_url=self.amqp_url,
            ledger_url=self.ledger_url,
            data_dir=self.data_dir,
            shard_count=self.shard_count,
            retry_tiers=self.retry_tiers,
            management_url=self.management_url,
            salesconnect_url=self.salesconnect_url,
            ingress_secret=self.state.ingress_secret,
            salesconnect_token=self.state.service_token,
        )
        env = {**base_env, **settings.variables()}
        env.pop("TASKSYNC_SALESCONNECT_TOKEN_FILE", None)
        bridge = [self.child(spec, env) for spec in BRIDGE_COMPONENTS if spec in self.selected]
        if not bridge:
            return
        self.console.say("starting " + ", ".join(child.spec.title for child in bridge))
        self.supervisor.start(bridge, timeout)
        for child in bridge:
            self.pin_port(child)
        ingress = self.supervisor.children.get(INGRESS.name)
        if ingress is not None and ingress.ready_info is not None:
            point_notifications_at_ingress(
                self.emulator, ingress.ready_info, self.state.ingress_secret
            )

    def pin_port(self, child: Child) -> None:
        """A restart keeps the port the first start got, so every URL handed out stays true."""
        info = child.ready_info or {}
        port = info.get("port") or _port_of(info.get("url") or info.get("instance_url"))
        if port and child.spec.name in self.ports:
            self.ports[child.spec.name] = int(port)
            child.argv = self.child(child.spec, child.env).argv

    def on_ready(self, child: Child) -> None:
        self.console.say(f"the {child.spec.title} serves again")
        if child.spec is EMULATOR:
            self.emulator = child.ready_info or self.emulator
        ingress = self.supervisor.children.get(INGRESS.name)
        if child.spec in (EMULATOR, INGRESS) and ingress is not None and ingress.ready_info:
            emulator = self.supervisor.children[EMULATOR.name]
            if emulator.ready_info:
                try:
                    point_notifications_at_ingress(
                        emulator.ready_info, ingress.ready_info, self.state.ingress_secret
                    )
                except (requests.RequestException, click.ClickException) as exc:
                    self.console.say(f"could not point the emulator at the ingress: {exc}")
        self.write_endpoints()

    def write_endpoints(self) -> Path:
        ingress = self.supervisor.children.get(INGRESS.name)
        path = self.data_dir / ENDPOINTS_FILE
        write_private_json(
            path,
            endpoints_document(
                data_dir=self.data_dir,
                emulator=self.emulator,
                salesconnect_url=self.salesconnect_url,
                salesconnect_service_token=self.state.service_token,
                ingress=ingress.ready_info if ingress is not None else None,
                amqp_url=self.amqp_url,
                management_url=self.management_url,
                ledger_url=self.ledger_url,
                demo_users=self.demo_users,
                components={
                    name: {
                        "title": child.spec.title,
                        "pid": child.pid,
                        "log": str(child.log_path),
                        **_metrics_of(child.ready_info),
                    }
                    for name, child in self.supervisor.children.items()
                },
            ),
        )
        return path


def _metrics_of(ready_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The component's /metrics, /healthz and /readyz base URL, when it serves one."""
    url = (ready_info or {}).get("metrics_url")
    return {"metrics_url": url} if url else {}


def _port_of(url: object) -> int | None:
    if not isinstance(url, str) or not url:
        return None
    return urlsplit(url).port


@click.command()
@data_dir_option
@amqp_url_option
@management_url_option
@ledger_url_option
@topology_options
@_port_option(
    "--emulator-port", "TASKSYNC_EMULATOR_PORT", DEFAULT_EMULATOR_PORT, "Salesforce emulator"
)
@_port_option(
    "--salesconnect-port",
    "TASKSYNC_SALESCONNECT_PORT",
    DEFAULT_SALESCONNECT_PORT,
    "Sales Connect service",
)
@_port_option(
    "--ingress-port", "TASKSYNC_INGRESS_PORT", DEFAULT_INGRESS_PORT, "Salesforce ingress (HTTPS)"
)
@click.option(
    "--without",
    "left_out",
    multiple=True,
    type=click.Choice([spec.name for spec in BRIDGE_COMPONENTS]),
    help="Leave this bridge component out (repeatable), e.g. to run it yourself in a debugger.",
)
@click.option(
    "--start-timeout",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds each group of components may take to serve.",
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds children get to stop after SIGTERM before SIGKILL.",
)
def up(
    *,
    data_dir: Path,
    amqp_url: str,
    management_url: str,
    ledger_url: str | None,
    shard_count: int,
    retry_tiers: str,
    emulator_port: int,
    salesconnect_port: int,
    ingress_port: int,
    left_out: tuple[str, ...],
    start_timeout: float,
    stop_timeout: float,
) -> None:
    """Run the whole system locally until Ctrl-C: the Salesforce emulator, the Sales Connect
    service, the ingress, both producers and both workers, as child processes whose output is
    prefixed with their name (and kept in DATA_DIR/logs/).

    Declares the RabbitMQ topology, makes the Sales Connect service token the bridge uses,
    seeds once a demo Sales Connect user connected to the emulator's sales rep with sync on
    (with a page password and an API token), points the emulator's notifications at the
    ingress, prints what to open (and how to sign in) and writes DATA_DIR/endpoints.json (every
    URL and credential, for scripts). A child that exits is restarted with a growing pause; one
    that keeps failing stops everything. Ctrl-C or SIGTERM stops the children (SIGTERM, then
    SIGKILL after --stop-timeout); running it again resumes with the data kept in DATA_DIR.

    Exit codes: 0 stopped by Ctrl-C/SIGTERM; 1 a component cannot start (not in this build,
    busy port, crashed while starting) or kept failing; 3 RabbitMQ unreachable or refusing.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    console = Console(sys.stdout)
    selected = tuple(spec for spec in COMPONENTS if spec.name not in left_out)
    missing = unavailable_components(selected)
    if missing:
        click.echo("tasksync up cannot start these components (not in this build):", err=True)
        for spec, reason in missing:
            click.echo(f"  - {spec.title}: {reason}", err=True)
        names = " ".join(
            f"--without {spec.name}" for spec, _ in missing if spec in BRIDGE_COMPONENTS
        )
        if names:
            click.echo(f"Run the rest with: tasksync up {names}", err=True)
        raise SystemExit(EXIT_INVALID)
    ports = {EMULATOR.name: emulator_port, SALESCONNECT.name: salesconnect_port}
    if INGRESS in selected:
        ports[INGRESS.name] = ingress_port
    for name, port in ports.items():
        busy = port_in_use(HOST, port)
        if busy is not None:
            spec = COMPONENTS_BY_NAME[name]
            raise StartupError(
                f"port {port} for the {spec.title} is busy ({busy.strerror}): stop what uses "
                f"it, or choose another with {spec.port_option} (or 0 for any free port)"
            )
    with data_dir_lock(data_dir):
        _run(
            data_dir=data_dir,
            amqp_url=amqp_url,
            management_url=management_url,
            ledger_url=resolve_ledger_url(ledger_url, data_dir),
            shard_count=shard_count,
            retry_tiers=retry_tiers,
            ports=ports,
            selected=selected,
            console=console,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        )


def _run(
    *,
    data_dir: Path,
    amqp_url: str,
    management_url: str,
    ledger_url: str,
    shard_count: int,
    retry_tiers: str,
    ports: dict[str, int],
    selected: tuple[ComponentSpec, ...],
    console: Console,
    start_timeout: float,
    stop_timeout: float,
) -> None:
    import pika.exceptions  # noqa: PLC0415 - keeps `tasksync --help` quick

    from bridge.messaging.connection import redact_url  # noqa: PLC0415

    try:
        declare_topology(amqp_url, shard_count, retry_tiers)
    except (pika.exceptions.AMQPError, OSError) as exc:
        click.echo(
            f"RabbitMQ at {redact_url(amqp_url)} is unreachable or refused the topology: "
            f"{exc!r}. Start it (scripts/start does) or pass --amqp-url.",
            err=True,
        )
        raise SystemExit(EXIT_UNREACHABLE) from None
    console.say(f"declared the RabbitMQ topology ({shard_count} shards per direction)")

    stop = threading.Event()
    hurry = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(console, stop, stop_timeout)
    run = _Run(
        data_dir=data_dir,
        amqp_url=amqp_url,
        management_url=management_url,
        ledger_url=ledger_url,
        shard_count=shard_count,
        retry_tiers=retry_tiers,
        ports=ports,
        selected=selected,
        console=console,
        supervisor=supervisor,
        state=UpState.load(data_dir / STATE_FILE),
    )
    supervisor.on_ready = run.on_ready
    try:
        # Readable lines in the prefixed view, and every bridge process's metrics on a free
        # port (named in endpoints.json), unless the environment says otherwise.
        base_env = {
            "TASKSYNC_LOG_FORMAT": "text",
            "TASKSYNC_METRICS_PORT": "0",
            **os.environ,
            "PYTHONUNBUFFERED": "1",
        }
        run.start_services(base_env, start_timeout)
        run.start_bridge(base_env, start_timeout)
        endpoints = run.write_endpoints()
        console.say(_banner(run, endpoints))
        supervisor.supervise()
        console.say("stopping")
    except click.Abort:
        console.say("stopping (interrupted while starting)")
    except StartupError as exc:
        console.say(exc.format_message())
        raise SystemExit(EXIT_INVALID) from None
    except requests.RequestException as exc:
        console.say(f"a component stopped answering while starting: {exc}")
        raise SystemExit(EXIT_INVALID) from None
    finally:
        supervisor.stop_all(hurry)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.say("stopped")


def _banner(run: _Run, endpoints: Path) -> str:
    sf = run.emulator
    lines = ["tasksync is running; Ctrl-C stops everything. Open:"]
    for user in run.demo_users:
        lines += [
            f"  Command Center   {user['command_center_url']}  ({user['name']})",
            f"  Settings         {user['settings_url']}",
            f"                   sign in as {user['email']} / {user['password']}",
        ]
    lines += [
        f"  Sales Connect    {run.salesconnect_url}/  (users; API described at /openapi.json)",
        f"  Salesforce       {sf['instance_url']}  (emulator: REST API, admin API at "
        f"{sf['admin_url']}, CA {sf['ca_path']})",
        f"                   sales rep {sf['sales_rep']['username']} / "
        f"{sf['sales_rep']['password']}",
    ]
    ingress = run.supervisor.children.get(INGRESS.name)
    if ingress is not None and ingress.ready_info:
        lines.append(f"  Ingress          {ingress.ready_info.get('url')}")
    lines += [
        f"  RabbitMQ         {management_ui_url(run.management_url)}  (management UI)",
        f"  Endpoints        {endpoints}",
        f"  Check the sync   tasksync verify --endpoints {endpoints}",
    ]
    left_out = [spec.title for spec in BRIDGE_COMPONENTS if spec not in run.selected]
    if left_out:
        lines.append(f"  Not started      {', '.join(left_out)} (--without)")
    return "\n".join(lines)
