"""The whole system on this machine for `tasksync bench` and `tasksync soak`: real processes,
real HTTP, a real RabbitMQ.

What it owns: starting and stopping every component as a child process exactly as `tasksync
up` starts it (`workers.up.component_argv`, `BridgeSettings.variables`), on a fresh vhost of a
broker (`Broker`: the shared one, or a node of its own, `PrivateBroker`, that the soak may stop);
killing and restarting any component by name; reading each process's CPU time and peak memory;
and the operator's checks: `tasksync verify --json`, queue depths and parked messages.

It never imports `tests/` (a product command cannot), so the test harness
(`tests/support/system.py`) could be built on it; see docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import requests

from bench.clients import BENCH_SERVICE_TOKEN, EmulatorAdmin, SalesConnectUser, salesforce_as
from bridge.messaging import Direction, ParkedMessage, ParkedQueue, Topology
from bridge.messaging.connection import connection_parameters
from bridge.messaging.management import ManagementApi
from workers.up import (
    BRIDGE_COMPONENTS,
    EMULATOR,
    EMULATOR_DISCOVERY_FILE,
    INGRESS,
    SALESCONNECT,
    SALESFORCE_POLLER,
    BridgeSettings,
    ComponentSpec,
    component_argv,
    declare_topology,
    point_notifications_at_ingress,
    read_ready_file,
    tasksync_command,
)
from workers.wiring import build_topology

T = TypeVar("T")

BRIDGE_NAMES: Final = tuple(spec.name for spec in BRIDGE_COMPONENTS)
WORKER_NAMES: Final = ("to-salesforce", "to-salesconnect")
INGRESS_SECRET: Final = "bench-ingress-secret"
POLL_INTERVAL_VARIABLE: Final = "TASKSYNC_POLL_INTERVAL"
DEFAULT_RABBITMQ_SERVER: Final = "/usr/lib/rabbitmq/bin/rabbitmq-server"
_PR_SET_PDEATHSIG: Final = 1


class ComponentError(RuntimeError):
    """A component could not start, or the system could not be checked."""


def wait_until(
    condition: Callable[[], T | None], *, timeout: float, interval: float = 0.05, what: str
) -> T:
    """Poll `condition` until it returns something truthy; raise ComponentError at the deadline.
    Exceptions count as "not yet"; the last one is named on failure."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
        except ComponentError:
            raise
        except Exception as exc:
            last, value = exc, None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last!r})" if last else ""
            raise ComponentError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once in the parent: a child between fork and exec must not load libraries.
_PRCTL: Final = _load_prctl()


def _exit_with_parent() -> None:
    """Run in the child before exec: the kernel sends SIGTERM when the thread that started it
    ends, even by kill -9, so a crashed bench or soak never leaves a system running. Hence
    components are only ever started from the main thread."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def hermetic_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without TASKSYNC_* settings (a developer's own must not
    leak into the measured system), unbuffered output, the Sales Connect service token the
    benchmarks' clients send (`BENCH_SERVICE_TOKEN`), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKSYNC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["TASKSYNC_SALESCONNECT_SERVICE_TOKEN"] = BENCH_SERVICE_TOKEN
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- processes ----------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_memory_kib(pid: int) -> dict[str, int]:
    """`VmHWM` (peak resident set since the process started) and `VmRSS`, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            found[name] = int(value.split()[0])
    return found


class Component:
    """One component as a child process: its command, log, ready file and life cycle. A
    restart keeps the port the first start got, so URLs handed out stay true."""

    def __init__(
        self,
        spec: ComponentSpec,
        workdir: Path,
        env: Mapping[str, str],
        extra_args: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.workdir = workdir
        self.env = dict(env)
        self.extra_args = tuple(extra_args)
        self.data_dir = workdir / spec.name
        self.log_path = workdir / "logs" / f"{spec.name}.log"
        if spec is EMULATOR:
            self.ready_file = self.data_dir / EMULATOR_DISCOVERY_FILE
        else:
            self.ready_file = workdir / "run" / f"{spec.name}.json"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.started_at = 0.0

    def argv(self) -> list[str]:
        data_dir = self.data_dir if self.spec in (EMULATOR, SALESCONNECT) else None
        ready_file = None if self.spec is EMULATOR else self.ready_file
        argv = component_argv(self.spec, ready_file=ready_file, port=self.port, data_dir=data_dir)
        return [*argv, *self.extra_args]

    def start(self) -> None:
        if self.is_running:
            raise ComponentError(f"{self.name} is already running")
        self.ready_file.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
                preexec_fn=_exit_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )
        self.started_at = time.monotonic()
        self.info = {}

    def poll_ready(self) -> dict[str, Any] | None:
        """The ready file's JSON once it serves; raises if the process exited first."""
        process = self.process
        if process is None:
            raise ComponentError(f"{self.name} was never started")
        if process.poll() is not None:
            raise ComponentError(
                f"`{self.spec.command_line}` exited with {process.returncode} while starting; "
                f"its log ({self.log_path}):\n{self.log_tail()}"
            )
        info = read_ready_file(self.ready_file, process.pid)
        if info is None:
            return None
        self.info = info
        port = info.get("port")
        if port is None and isinstance(info.get("url"), str):
            port = urlsplit(info["url"]).port
        if port:
            self.port = int(port)
        return info

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        return wait_ready([self], timeout)[0]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self.process = None

    def kill(self) -> None:
        """kill -9: no chance to finish a batch, flush or clean up."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(15)
        self.process = None

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ComponentError(f"{self.name} is not running")
        return self.process.pid

    @property
    def url(self) -> str:
        return str(self.info["url"]).rstrip("/")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        return process_memory_kib(self.pid)

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""


def wait_ready(components: Sequence[Component], timeout: float) -> list[dict[str, Any]]:
    """Wait for all at once: a start is bounded by the slowest component, not the sum."""
    pending = list(components)

    def all_ready() -> bool:
        for component in list(pending):
            if component.poll_ready() is not None:
                pending.remove(component)
        return not pending

    try:
        wait_until(all_ready, timeout=timeout, interval=0.02, what="components to serve")
    except ComponentError as exc:
        if not pending or "timed out" not in str(exc):
            raise
        names = ", ".join(f"{c.name} (log {c.log_path})" for c in pending)
        raise ComponentError(f"not serving after {timeout:.0f} s: {names}") from None
    return [component.info for component in components]


# -- RabbitMQ -----------------------------------------------------------------------------------


def _with_vhost(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


@dataclass(frozen=True)
class Vhost:
    """A vhost the run owns: its AMQP URL and the broker's management API."""

    name: str
    amqp_url: str
    management_url: str

    def ready_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Ready messages per queue, exact and at once (passive declares)."""
        connection = pika.BlockingConnection(connection_parameters(self.amqp_url, name="bench"))
        try:
            channel = connection.channel()
            return {
                queue: int(channel.queue_declare(queue=queue, passive=True).method.message_count)
                for queue in queues
            }
        finally:
            if connection.is_open:
                connection.close()

    def queue_totals(self) -> dict[str, int]:
        """Messages (ready and unacknowledged) per tasksync queue, from the management API
        (its figures lag by up to its collection interval, 5 s by default)."""
        queues = ManagementApi(self.management_url, timeout=30).queues(self.name)
        return {queue.name: queue.messages for queue in queues}


@dataclass(frozen=True)
class Broker:
    """A RabbitMQ broker to make vhosts on: its AMQP URL (any vhost, with credentials) and
    its management API URL (with credentials)."""

    amqp_url: str
    management_url: str

    def _management(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        api = ManagementApi(self.management_url)
        response = requests.request(
            method, f"{api.base_url}/api/{path}", auth=api.auth, timeout=30, **kwargs
        )
        response.raise_for_status()
        return response

    def version(self) -> dict[str, str]:
        overview = self._management("GET", "overview").json()
        return {
            "rabbitmq": str(overview.get("rabbitmq_version")),
            "erlang": str(overview.get("erlang_version")),
        }

    def node_pid(self) -> int | None:
        """The broker's OS process id when it runs on this machine (for its CPU time)."""
        try:
            nodes = self._management("GET", "nodes").json()
            pid = nodes[0].get("os_pid")
            return int(pid) if pid else None
        except (requests.RequestException, ValueError, IndexError, KeyError):
            return None

    @contextlib.contextmanager
    def fresh_vhost(self, prefix: str) -> Iterator[Vhost]:
        """A new vhost with full permissions for the URL's user; deleted afterwards."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        user = urlsplit(self.amqp_url).username or "guest"
        encoded = quote(name, safe="")
        self._management("PUT", f"vhosts/{encoded}")
        self._management(
            "PUT",
            f"permissions/{encoded}/{quote(user, safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        try:
            yield Vhost(name, _with_vhost(self.amqp_url, name), self.management_url)
        finally:
            with contextlib.suppress(requests.RequestException):
                self._management("DELETE", f"vhosts/{encoded}")


class PrivateBroker:
    """A RabbitMQ node of the run's own (own node name, ports, data, cookie and plugins), so the
    soak can stop and start it without touching anyone else's broker."""

    def __init__(self, base_dir: Path, server: str = DEFAULT_RABBITMQ_SERVER) -> None:
        self.base_dir = base_dir
        self.server = server
        self.node_name = f"tasksync-soak-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_port = free_port()
        self.management_port = free_port()
        self.dist_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("home", "mnesia", "log"):
            (base_dir / sub).mkdir(parents=True, exist_ok=True)
        (base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (base_dir / "rabbitmq.conf").write_text(
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )
        (base_dir / "rabbitmq-env.conf").write_text("")

    @property
    def broker(self) -> Broker:
        return Broker(
            f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F",
            f"http://guest:guest@127.0.0.1:{self.management_port}",
        )

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base_dir / "home"),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, timeout: float = 120.0) -> None:
        self.launch()
        self.wait_started(timeout)

    def launch(self) -> None:
        """Start the node's process (from the main thread: see `_exit_with_parent`)."""
        if self.process is not None and self.process.poll() is None:
            return
        if not Path(self.server).exists() and shutil.which(self.server) is None:
            raise ComponentError(
                f"no rabbitmq-server at {self.server}: install Debian's rabbitmq-server or "
                "pass --rabbitmq-server"
            )
        with (self.base_dir / "log" / "console.log").open("ab") as output:
            self.process = subprocess.Popen(
                [self.server],
                env=self.environment(),
                cwd=self.base_dir,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_exit_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )

    def wait_started(self, timeout: float = 120.0) -> None:
        """Until the node takes AMQP connections and its management API answers."""
        wait_until(self._ready, timeout=timeout, interval=0.2, what=f"{self.node_name} to start")

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            log = (self.base_dir / "log" / "console.log").read_text(errors="replace")[-2000:]
            raise ComponentError(f"{self.node_name} exited while starting:\n{log}")
        response = requests.get(
            f"http://127.0.0.1:{self.management_port}/api/overview",
            auth=("guest", "guest"),
            timeout=2,
        )
        if response.status_code != 200:
            return False
        with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=2):
            return True

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node gracefully, as `systemctl stop` would."""
        self._signal(signal.SIGTERM)
        self._wait_exit(timeout)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self._wait_exit(30.0)

    def _signal(self, signum: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _wait_exit(self, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of the process group

        def port_closed() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.amqp_port)) != 0

        wait_until(port_closed, timeout=30, what=f"{self.node_name} to release its port")

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)


# -- the system ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemSettings:
    """What to start and how. The defaults are production's (`tasksync up`'s)."""

    workdir: Path
    broker: Broker
    bridge: frozenset[str] = frozenset(BRIDGE_NAMES)
    emulator_args: tuple[str, ...] = ()
    shard_count: int = 4
    retry_tiers: str = "5s,30s,5m,30m"
    poll_interval: float | None = None
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    start_timeout: float = 90.0


@dataclass(frozen=True)
class SyncedUser:
    """A Sales Connect user connected to a Salesforce user of their own, with sync on."""

    user_id: str
    salesforce_user_id: str
    username: str
    password: str


@dataclass(frozen=True)
class VerifyOutcome:
    exit_code: int
    report: dict[str, Any]
    stderr: str

    @property
    def differences(self) -> list[dict[str, Any]]:
        return list(self.report.get("differences", []))


class System:
    """A started system; `stop()` ends every process and deletes the vhost."""

    def __init__(self, settings: SystemSettings) -> None:
        self.settings = settings
        self.workdir = settings.workdir
        self.topology: Topology = build_topology(settings.shard_count, settings.retry_tiers)
        self.ledger_url = f"sqlite:///{self.workdir / 'ledger.sqlite3'}"
        self._vhost_context: contextlib.AbstractContextManager[Vhost] | None = None
        self.vhost: Vhost | None = None
        self.emulator = Component(
            EMULATOR, self.workdir, hermetic_environment(), settings.emulator_args
        )
        self.salesconnect = Component(SALESCONNECT, self.workdir, hermetic_environment())
        self.bridge: dict[str, Component] = {}
        self._admin: EmulatorAdmin | None = None
        self._user_api: SalesConnectUser | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, *, broker_ready: Callable[[], None] | None = None) -> System:
        """Start everything; `broker_ready` (run while the two systems start) waits for a
        broker that is still starting."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                broker = pool.submit(self._start_vhost, broker_ready)
                self.emulator.start()
                self.salesconnect.start()
                wait_ready([self.emulator, self.salesconnect], self.settings.start_timeout)
                broker.result()
            for spec in BRIDGE_COMPONENTS:
                if spec.name in self.settings.bridge:
                    self.bridge[spec.name] = Component(
                        spec, self.workdir, self.bridge_environment(spec.name)
                    )
            for component in self.bridge.values():
                component.start()
            wait_ready(list(self.bridge.values()), self.settings.start_timeout)
            self.point_notifications()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_vhost(self, broker_ready: Callable[[], None] | None) -> None:
        if broker_ready is not None:
            broker_ready()
        self._vhost_context = self.settings.broker.fresh_vhost("tasksync-bench")
        self.vhost = self._vhost_context.__enter__()
        declare_topology(self.vhost.amqp_url, self.settings.shard_count, self.settings.retry_tiers)

    def stop(self) -> None:
        for component in self.bridge.values():
            if component.is_running and component.process is not None:
                component.process.send_signal(signal.SIGTERM)
        for component in self.bridge.values():
            component.stop()
        self.salesconnect.stop()
        self.emulator.stop()
        if self._user_api is not None:
            self._user_api.close()
        if self._vhost_context is not None:
            with contextlib.suppress(Exception):
                self._vhost_context.__exit__(None, None, None)
            self._vhost_context = None

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- settings -------------------------------------------------------------------------------

    def bridge_settings(self) -> BridgeSettings:
        if self.vhost is None:
            raise ComponentError("the vhost is not made yet")
        return BridgeSettings.for_emulator(
            self.emulator.info,
            amqp_url=self.vhost.amqp_url,
            ledger_url=self.ledger_url,
            data_dir=self.workdir / "bridge",
            shard_count=self.settings.shard_count,
            retry_tiers=self.settings.retry_tiers,
            management_url=self.vhost.management_url,
            salesconnect_url=self.salesconnect.url,
            ingress_secret=INGRESS_SECRET,
            salesconnect_token=BENCH_SERVICE_TOKEN,
        )

    def bridge_environment(self, name: str | None = None) -> dict[str, str]:
        """What a bridge process (or `tasksync verify`) is told."""
        extra: dict[str, str] = {}
        if name == SALESFORCE_POLLER.name and self.settings.poll_interval is not None:
            extra[POLL_INTERVAL_VARIABLE] = str(self.settings.poll_interval)
        if name:
            extra.update(self.settings.extra_env.get(name, {}))
        return hermetic_environment({**self.bridge_settings().variables(), **extra})

    def point_notifications(self) -> None:
        """The emulator forgets where the ingress is when either restarts."""
        ingress = self.bridge.get(INGRESS.name)
        if ingress is not None and ingress.is_running and ingress.info:
            point_notifications_at_ingress(self.emulator.info, ingress.info, INGRESS_SECRET)

    # -- components -----------------------------------------------------------------------------

    def component(self, name: str) -> Component:
        if name == EMULATOR.name:
            return self.emulator
        if name == SALESCONNECT.name:
            return self.salesconnect
        if name not in self.bridge:
            raise KeyError(f"no component {name!r}; this system has {sorted(self.bridge)}")
        return self.bridge[name]

    def kill(self, name: str) -> None:
        self.component(name).kill()

    def stop_component(self, name: str) -> None:
        self.component(name).stop()

    def start_component(self, name: str, *, wait: bool = True) -> None:
        """Start a stopped or killed component (same port); with `wait`, until it serves."""
        component = self.component(name)
        component.start()
        if wait:
            component.wait_ready(self.settings.start_timeout)
            if name in (EMULATOR.name, INGRESS.name):
                self.point_notifications()

    # -- clients --------------------------------------------------------------------------------

    @property
    def admin(self) -> EmulatorAdmin:
        if self._admin is None:
            self._admin = EmulatorAdmin(
                self.emulator.info["admin_url"], self.emulator.info["ca_path"]
            )
        return self._admin

    @property
    def users_api(self) -> SalesConnectUser:
        """Sales Connect's API as its users use it (shared; use `new_users_api` per thread)."""
        if self._user_api is None:
            self._user_api = SalesConnectUser(self.salesconnect.url)
        return self._user_api

    def new_users_api(self) -> SalesConnectUser:
        return SalesConnectUser(self.salesconnect.url)

    def salesforce_as(self, user: SyncedUser, client: str = "user") -> Any:
        return salesforce_as(self.emulator.info, user.username, user.password, client=client)

    def create_synced_user(
        self, name: str, *, subject_template: str | None = None, wait_first_sync: bool = True
    ) -> SyncedUser:
        """A Salesforce user of its own and a Sales Connect user connected to it, sync on."""
        tag = uuid.uuid4().hex[:10]
        username, password = f"rep-{tag}@tasksync.example", f"Rep-{tag}-Passw0rd"
        salesforce_user_id = self.admin.create_user(username, password, f"{name} {tag}")
        api = self.users_api
        user = api.create_user(
            email=f"{tag}@bench.example", name=name, salesforce_user_id=salesforce_user_id
        )
        if subject_template is not None:
            api.update_settings(user["id"], activity_subject_template=subject_template)
        api.update_settings(user["id"], task_sync="on")
        if wait_first_sync and SALESFORCE_POLLER.name in self.bridge:
            self.wait_first_sync(user["id"])
        return SyncedUser(user["id"], salesforce_user_id, username, password)

    def wait_first_sync(self, user_id: str, timeout: float = 60.0) -> None:
        def done() -> bool:
            state = self.users_api.settings(user_id)["first_sync"]
            if state["state"] == "failed":
                raise ComponentError(f"the first sync of {user_id} failed: {state}")
            return bool(state["state"] == "done")

        wait_until(done, timeout=timeout, interval=0.1, what=f"the first sync of {user_id}")

    # -- checks ---------------------------------------------------------------------------------

    def verify(self, *, strict_subjects: bool = False) -> VerifyOutcome:
        """`tasksync verify --json` against this system (its Salesforce reads are counted
        under the client `tasksync-verify`, never as the bridge's)."""
        command = [*tasksync_command(), "verify", "--json"]
        if strict_subjects:
            command.append("--strict-subjects")
        result = subprocess.run(
            command,
            env=self.bridge_environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        try:
            report = json.loads(result.stdout) if result.stdout.strip() else {}
        except ValueError:
            report = {"unparsed_output": result.stdout[-2000:]}
        return VerifyOutcome(result.returncode, report, result.stderr[-4000:])

    def work_queues(self, direction: Direction) -> list[str]:
        """A direction's shard and retry queues: where its unfinished messages wait."""
        return [
            *self.topology.shard_queues(direction),
            *(self.topology.retry_queue(direction, tier) for tier in self.topology.retry_tiers),
        ]

    def ready_messages(self, direction: Direction, *, retries: bool = True) -> int:
        if self.vhost is None:
            raise ComponentError("the vhost is not made yet")
        queues = self.work_queues(direction) if retries else self.topology.shard_queues(direction)
        return sum(self.vhost.ready_counts(queues).values())

    def parked(self) -> list[ParkedMessage]:
        if self.vhost is None:
            raise ComponentError("the vhost is not made yet")
        return ParkedQueue(self.vhost.amqp_url, topology=self.topology).browse()

    def processes(self) -> dict[str, int]:
        """Every running component's pid, by name."""
        found = {}
        for component in (self.emulator, self.salesconnect, *self.bridge.values()):
            if component.is_running:
                found[component.name] = component.pid
        return found
