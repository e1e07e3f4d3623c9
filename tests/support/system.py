"""The whole system for end-to-end tests, the soak and benchmarks: real processes, real HTTP,
the real RabbitMQ.

`start_system(workdir, SystemOptions(...))` (or the `running_system` context manager, or the
`system` / `system_factory` fixtures) brings up, as fast as the machine allows:

* a fresh vhost on the shared RabbitMQ with the topology declared, and a fresh SQLite ledger
  (or `ledger_url=`), in parallel with
* the Salesforce emulator (`EmulatorProcess`) and the Sales Connect service, then
* the Sales Connect service accepts `TEST_SERVICE_TOKEN`, and the bridge's processes are given
  it (`TASKSYNC_SALESCONNECT_TOKEN`, and as the password of `TASKSYNC_SALESCONNECT_URL`);
* the ingress, both producers and both workers together (any subset: `components=`), each a
  `tasksync` subprocess started exactly as `tasksync up` starts it (`workers.up`), told its
  settings through TASKSYNC_* variables, and waited on through its `--ready-file`;
* the emulator's notification stand-in pointed at the ingress (unless `notifications=False`;
  `notification_drop_share=1.0` makes it drop everything, so only the poller carries
  Salesforce changes).

`RunningSystem` then offers the clients a test needs (Sales Connect's API with the service
token, its pages signed in as a user (`pages(user_id)`), the emulator's admin API,
simple-salesforce as a synced user), `create_synced_user()`, `kill`/`stop`/`start`/
`restart` of any component by name, write counters on both sides (`counts()`), and `verify()` /
`wait_until_consistent()`, which run `tasksync verify --json`.

Component names: `emulator`, `salesconnect`, `ingress`, `salesconnect-producer`,
`salesforce-poller`, `to-salesforce`, `to-salesconnect`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
from simple_salesforce.api import Salesforce

from tests.support.emulator import EmulatorAdmin, EmulatorProcess, EmulatorUser
from tests.support.rabbitmq import BrokerVhost, fresh_vhost
from tests.support.salesconnect import (
    SERVICE_TOKEN_VARIABLE,
    TEST_SERVICE_TOKEN,
    ChangeJson,
    PageSession,
    SalesConnectClient,
    UserJson,
    url_with_token,
)
from tests.support.waiting import wait_for
from workers.up import (
    BRIDGE_COMPONENTS,
    COMPONENTS_BY_NAME,
    EMULATOR,
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

ROOT: Final = Path(__file__).resolve().parents[2]
ALL_BRIDGE_COMPONENTS: Final = frozenset(spec.name for spec in BRIDGE_COMPONENTS)
BRIDGE_CLIENT: Final = "tasksync"
SALES_REP_CLIENT: Final = "sales-rep"
USER_CLIENT: Final = "user"
INGRESS_SECRET: Final = "system-test-ingress-secret"
POLL_INTERVAL_VARIABLE: Final = "TASKSYNC_POLL_INTERVAL"


class SystemStartError(RuntimeError):
    """A component could not start, or exited while starting."""


@dataclass(frozen=True)
class SystemOptions:
    """What to start and how; the defaults start everything, tuned for fast tests.

    * `components`: which bridge processes run (the emulator and Sales Connect always do).
    * `notifications`: point the emulator's stand-in at the ingress; `notification_drop_share`
      makes it drop that share of notifications (1.0: the poller alone carries Salesforce).
    * `emulator_args`: more `tasksync salesforce-emulator` flags (`--latency-ms 50`, faults).
    * `shard_count`, `retry_tiers`: the topology, the same for every process.
    * `ledger_url`: default a SQLite file in the work directory; `salesconnect_db`: default
      SQLite in the service's directory (a PostgreSQL URL for either).
    * `extra_args`, `extra_env`: per component name, more flags and TASKSYNC_* variables.
    * `poll_interval`: the poller's TASKSYNC_POLL_INTERVAL (None: its own default).
    """

    components: frozenset[str] = ALL_BRIDGE_COMPONENTS
    notifications: bool = True
    notification_drop_share: float = 0.0
    emulator_args: tuple[str, ...] = ()
    shard_count: int = 2
    retry_tiers: str = "1s,5s,30s"
    ledger_url: str | None = None
    salesconnect_db: str | None = None
    extra_args: Mapping[str, Sequence[str]] = field(default_factory=dict)
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    poll_interval: float | None = 1.0
    start_timeout: float = 60.0

    def __post_init__(self) -> None:
        unknown = set(self.components) - ALL_BRIDGE_COMPONENTS
        if unknown:
            raise ValueError(
                f"components: unknown {sorted(unknown)}; "
                f"choose from {sorted(ALL_BRIDGE_COMPONENTS)}"
            )


def hermetic_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any TASKSYNC_* setting (a developer's own settings
    must not leak into a test's processes), with the project importable and output unbuffered."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKSYNC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ComponentProcess:
    """One `tasksync` component as a child process: its log file, ready file and life cycle. A
    restart keeps the port the first start got, so URLs handed out stay true."""

    def __init__(
        self,
        spec: ComponentSpec,
        workdir: Path,
        env: Mapping[str, str],
        extra_args: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.workdir = workdir
        self.env = dict(env)
        self.extra_args = tuple(extra_args)
        self.ready_file = workdir / "run" / f"{spec.name}.json"
        self.log_path = workdir / "logs" / f"{spec.name}.log"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def argv(self) -> list[str]:
        return [
            *component_argv(
                self.spec,
                ready_file=self.ready_file,
                port=self.port or 0,
                data_dir=self.workdir / self.spec.name,
            ),
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.is_running:
            raise SystemStartError(f"{self.spec.name} is already running")
        self.ready_file.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.spec is SALESCONNECT:
            (self.workdir / self.spec.name).mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
            )
        self.info = {}

    def poll_ready(self) -> dict[str, Any] | None:
        """The ready file's JSON once it serves; raises if the process exited first."""
        process = self.process
        if process is None:
            raise SystemStartError(f"{self.spec.name} was never started")
        if process.poll() is not None:
            raise SystemStartError(
                f"`{self.spec.command_line}` exited with {process.returncode} while starting; "
                f"its log ({self.log_path}):\n{self.log()[-3000:]}"
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
        return _wait_until_ready([self], timeout)[0]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, and SIGKILL if it has not exited in time."""
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
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        return str(self.info["url"]).rstrip("/")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _wait_until_ready(
    processes: Sequence[ComponentProcess], timeout: float
) -> list[dict[str, Any]]:
    """Wait for all at once: a fast start is bounded by the slowest component, not the sum."""
    pending = list(processes)
    failure: list[SystemStartError] = []

    def all_ready() -> bool:
        for process in list(pending):
            try:
                if process.poll_ready() is not None:
                    pending.remove(process)
            except SystemStartError as exc:
                failure.append(exc)
                return True
        return not pending

    try:
        wait_for(all_ready, timeout=timeout, interval=0.02, what="components to serve")
    except AssertionError:
        names = ", ".join(f"{p.spec.name} (log {p.log_path})" for p in pending)
        raise SystemStartError(f"not serving after {timeout} s: {names}") from None
    if failure:
        raise failure[0]
    return [process.info for process in processes]


@dataclass(frozen=True)
class SyncedUser:
    """A Sales Connect user connected to a Salesforce user of their own, with sync on."""

    salesconnect: UserJson
    salesforce_user: EmulatorUser
    emulator: EmulatorProcess

    @property
    def user_id(self) -> str:
        return self.salesconnect["id"]

    @property
    def salesforce_user_id(self) -> str:
        return self.salesforce_user.id

    def salesforce(self, client: str = USER_CLIENT) -> Salesforce:
        """simple-salesforce logged in as this user (their own edits in Salesforce)."""
        return self.emulator.salesforce(self.salesforce_user, client=client)


@dataclass(frozen=True)
class WriteCounts:
    """Writes on both sides so far: what "one edit, exactly one write the other way" counts.

    Salesforce: records written (create, update, delete, undelete) by the bridge's client
    (`Sforce-Call-Options: client=tasksync`), its API calls, and records written by anyone
    else. Sales Connect: task changes in the feed by the bridge (`origin: salesforce`) and by
    users; the bridge's link-only updates (setting `salesforce_task_id` on a task it pushed)
    are counted apart, since they change nothing a user sees."""

    salesforce_records_by_bridge: int
    salesforce_calls_by_bridge: int
    salesforce_records_by_others: int
    salesconnect_changes_by_bridge: int
    salesconnect_changes_by_users: int
    salesconnect_links_by_bridge: int = 0

    def __sub__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            *(
                getattr(self, name) - getattr(other, name)
                for name in WriteCounts.__dataclass_fields__
            )
        )


@dataclass(frozen=True)
class VerifyOutcome:
    exit_code: int
    report: dict[str, Any]
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def differences(self) -> list[dict[str, Any]]:
        return list(self.report.get("differences", []))

    @property
    def explained(self) -> list[dict[str, Any]]:
        return list(self.report.get("explained", []))

    def kinds(self) -> list[str]:
        return sorted(str(finding["kind"]) for finding in self.differences)


class RunningSystem:
    """A started system; `stop()` ends every process and deletes the vhost."""

    def __init__(self, workdir: Path, options: SystemOptions) -> None:
        self.workdir = workdir
        self.options = options
        self._cleanup = contextlib.ExitStack()
        self.vhost: BrokerVhost | None = None
        self.emulator = EmulatorProcess(
            workdir / EMULATOR.name,
            *options.emulator_args,
            *(
                ("--notification-drop-share", str(options.notification_drop_share))
                if options.notification_drop_share
                else ()
            ),
            start_timeout=options.start_timeout,
        )
        self.ledger_url = options.ledger_url or f"sqlite:///{workdir / 'ledger.sqlite3'}"
        self.salesconnect_process = ComponentProcess(
            SALESCONNECT,
            workdir,
            hermetic_environment(
                {
                    SERVICE_TOKEN_VARIABLE: TEST_SERVICE_TOKEN,
                    **(
                        {"TASKSYNC_SALESCONNECT_DB": options.salesconnect_db}
                        if options.salesconnect_db
                        else {}
                    ),
                }
            ),
        )
        self.bridge: dict[str, ComponentProcess] = {}
        self._salesconnect: SalesConnectClient | None = None
        self._pages: dict[str, PageSession] = {}
        self._admin: EmulatorAdmin | None = None
        self._feed_seen = 0
        self._feed_tally: Counter[str] = Counter()

    # -- starting and stopping -------------------------------------------------------------

    def start(self) -> RunningSystem:
        try:
            with ThreadPoolExecutor(max_workers=3) as pool:
                broker = pool.submit(self._start_broker)
                emulator = pool.submit(self.emulator.start)
                self.salesconnect_process.start()
                self.salesconnect_process.wait_ready(self.options.start_timeout)
                emulator.result()
                broker.result()
            self._start_bridge()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_broker(self) -> None:
        self.vhost = self._cleanup.enter_context(fresh_vhost("tasksync-system"))
        declare_topology(self.vhost.amqp_url, self.options.shard_count, self.options.retry_tiers)

    def bridge_settings(self) -> BridgeSettings:
        assert self.vhost is not None
        return BridgeSettings.for_emulator(
            self.emulator.info,
            amqp_url=self.vhost.amqp_url,
            ledger_url=self.ledger_url,
            data_dir=self.workdir / "bridge",
            shard_count=self.options.shard_count,
            retry_tiers=self.options.retry_tiers,
            management_url=self.vhost.management_url,
            # The token twice: as the URL's password too, so a URL handed on (an endpoints
            # file a test writes from these settings) still carries the bridge's credential.
            salesconnect_url=url_with_token(self.salesconnect_url, TEST_SERVICE_TOKEN),
            ingress_secret=INGRESS_SECRET,
            salesconnect_token=TEST_SERVICE_TOKEN,
        )

    def bridge_environment(self, name: str | None = None) -> dict[str, str]:
        """What a bridge process (or `tasksync verify`) is told; `name` adds its extra_env."""
        extra: dict[str, str] = {}
        if name == SALESFORCE_POLLER.name and self.options.poll_interval is not None:
            extra[POLL_INTERVAL_VARIABLE] = str(self.options.poll_interval)
        if name:
            extra.update(self.options.extra_env.get(name, {}))
        return hermetic_environment({**self.bridge_settings().variables(), **extra})

    def _start_bridge(self) -> None:
        chosen = [spec for spec in BRIDGE_COMPONENTS if spec.name in self.options.components]
        for spec in chosen:
            self.bridge[spec.name] = ComponentProcess(
                spec,
                self.workdir,
                self.bridge_environment(spec.name),
                self.options.extra_args.get(spec.name, ()),
            )
            self.bridge[spec.name].start()
        _wait_until_ready(list(self.bridge.values()), self.options.start_timeout)
        self._point_notifications()

    def _point_notifications(self) -> None:
        ingress = self.bridge.get(INGRESS.name)
        if ingress is None or not self.options.notifications or not ingress.is_running:
            return
        point_notifications_at_ingress(self.emulator.info, ingress.info, INGRESS_SECRET)

    def stop(self) -> None:
        for process in self.bridge.values():
            if process.is_running and process.process is not None:
                process.process.send_signal(signal.SIGTERM)
        for process in self.bridge.values():
            process.stop()
        self.salesconnect_process.stop()
        self.emulator.stop()
        if self._salesconnect is not None:
            self._salesconnect.close()
        for pages in self._pages.values():
            pages.close()
        self._cleanup.close()

    def __enter__(self) -> RunningSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one component ----------------------------------------------------------------------

    def component(self, name: str) -> ComponentProcess:
        if name == SALESCONNECT.name:
            return self.salesconnect_process
        if name not in self.bridge:
            known = ["emulator", "salesconnect", *self.bridge]
            raise KeyError(f"no running component {name!r}; this system has {known}")
        return self.bridge[name]

    def kill(self, name: str) -> None:
        """kill -9 one component."""
        if name == EMULATOR.name:
            self.emulator.kill()
        else:
            self.component(name).kill()

    def stop_component(self, name: str) -> None:
        """SIGTERM one component and wait for it to exit."""
        if name == EMULATOR.name:
            self.emulator.stop()
        else:
            self.component(name).stop()

    def start_component(self, name: str) -> None:
        """Start a stopped or killed component again (same port) and wait until it serves."""
        if name == EMULATOR.name:
            self.emulator.start()
            self._point_notifications()  # the emulator forgets them on restart
            return
        process = self.component(name)
        process.start()
        process.wait_ready(self.options.start_timeout)
        if name == INGRESS.name:
            self._point_notifications()

    def restart(self, name: str, *, kill: bool = False) -> None:
        if kill:
            self.kill(name)
        else:
            self.stop_component(name)
        self.start_component(name)

    # -- clients ----------------------------------------------------------------------------

    @property
    def salesconnect_url(self) -> str:
        return self.salesconnect_process.url

    @property
    def salesconnect(self) -> SalesConnectClient:
        """The Sales Connect API with the service token and no X-Sync-Origin (so its writes are
        the users' own); one keep-alive client."""
        if self._salesconnect is None:
            self._salesconnect = SalesConnectClient(self.salesconnect_url)
        return self._salesconnect

    def pages(self, user_id: str) -> PageSession:
        """The Command Center and Settings pages, signed in as the user (once per user)."""
        if user_id not in self._pages:
            self._pages[user_id] = self.salesconnect.pages_as(user_id)
        return self._pages[user_id]

    @property
    def admin(self) -> EmulatorAdmin:
        if self._admin is None:
            self._admin = self.emulator.admin
        return self._admin

    def sales_rep(self) -> Salesforce:
        """simple-salesforce as the emulator's sales rep (client `sales-rep` in the stats)."""
        return self.emulator.salesforce("sales_rep", client=SALES_REP_CLIENT)

    def create_synced_user(
        self,
        name: str = "Synced User",
        *,
        subject_template: str | None = None,
        time_zone: str = "UTC",
        sync: bool = True,
        wait_first_sync: bool | None = None,
        timeout: float = 30.0,
    ) -> SyncedUser:
        """A Salesforce user of its own and a Sales Connect user connected to it (sync on unless
        `sync=False`). By default waits for the first sync to be done when the poller runs."""
        tag = uuid.uuid4().hex[:10]
        salesforce_user = self.admin.create_user(
            f"rep-{tag}@tasksync.example", f"Rep-{tag}-Passw0rd", f"{name} {tag}"
        )
        client = self.salesconnect
        user = client.create_user(
            name=name, time_zone=time_zone, salesforce_user_id=salesforce_user.id
        )
        if subject_template is not None:
            client.update_settings(user["id"], activity_subject_template=subject_template)
        if sync:
            client.update_settings(user["id"], task_sync="on")
            if wait_first_sync is None:
                wait_first_sync = SALESFORCE_POLLER.name in self.bridge
            if wait_first_sync:
                self.wait_first_sync(user["id"], timeout=timeout)
        return SyncedUser(user, salesforce_user, self.emulator)

    def wait_first_sync(self, user_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            settings = self.salesconnect.settings(user_id)
            state = settings["first_sync"]["state"]
            if state == "failed":
                raise AssertionError(f"the first sync failed: {settings['first_sync']}")
            return settings if state == "done" else None

        settings: dict[str, Any] = _wait(
            done, timeout=timeout, interval=0.05, what=f"the first sync of {user_id}"
        )
        return settings

    # -- counting writes --------------------------------------------------------------------

    def salesforce_stats(self) -> dict[str, Any]:
        return self.admin.stats()

    def salesforce_writes(self, client: str = BRIDGE_CLIENT) -> dict[str, int]:
        """Records `client` wrote, by operation (create, update, delete, undelete)."""
        by_client = self.salesforce_stats().get("by_client", {})
        written = by_client.get(client, {}).get("records_written", {})
        return {str(op): int(count) for op, count in written.items()}

    def salesconnect_changes(
        self, *, origin: str | None = None, user_id: str | None = None, after: int = 0
    ) -> list[ChangeJson]:
        """Feed entries (committed changes) after `after`, optionally of one origin (`user`,
        `salesforce` for the bridge's writes) and one user."""
        return [
            change
            for change in self.salesconnect.all_changes(after)
            if (origin is None or change["origin"] == origin)
            and (user_id is None or change["user_id"] == user_id)
        ]

    def counts(self) -> WriteCounts:
        stats = self.salesforce_stats().get("by_client", {})

        def records(client_stats: Mapping[str, Any]) -> int:
            return sum(int(n) for n in client_stats.get("records_written", {}).values())

        bridge = stats.get(BRIDGE_CLIENT, {})
        feed = self._count_feed()
        return WriteCounts(
            salesforce_records_by_bridge=records(bridge),
            salesforce_calls_by_bridge=int(bridge.get("total", 0)),
            salesforce_records_by_others=sum(
                records(value) for name, value in stats.items() if name != BRIDGE_CLIENT
            ),
            salesconnect_changes_by_bridge=feed["bridge"],
            salesconnect_changes_by_users=feed["user"],
            salesconnect_links_by_bridge=feed["link"],
        )

    def _count_feed(self) -> Counter[str]:
        """Task changes in the feed by who made them, read on from where the last count ended
        (the feed never changes behind its head), so counting stays cheap in a long soak."""
        for change in self.salesconnect.all_changes(self._feed_seen):
            self._feed_seen = max(self._feed_seen, int(change["seq"]))
            if change["task_id"] is None:
                continue
            if change["origin"] != "salesforce":
                self._feed_tally["user"] += 1
            elif change["op"] == "task_updated" and set(change["changed"]) == {
                "salesforce_task_id"
            }:
                self._feed_tally["link"] += 1
            else:
                self._feed_tally["bridge"] += 1
        return self._feed_tally

    # -- verifying --------------------------------------------------------------------------

    def verify(self, user_id: str | None = None, *, strict_subjects: bool = False) -> VerifyOutcome:
        """`tasksync verify --json` against this system (its reads are counted under the client
        `tasksync-verify`, never as the bridge's)."""
        command = [*tasksync_command(), "verify", "--json"]
        if user_id is not None:
            command += ["--user", user_id]
        if strict_subjects:
            command.append("--strict-subjects")
        result = subprocess.run(
            command,
            env=self.bridge_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            report = json.loads(result.stdout) if result.stdout.strip() else {}
        except ValueError:
            report = {"unparsed_output": result.stdout}
        return VerifyOutcome(result.returncode, report, result.stderr)

    def wait_until_consistent(
        self,
        user_id: str | None = None,
        *,
        timeout: float = 30.0,
        strict_subjects: bool = False,
    ) -> VerifyOutcome:
        """Run verify until it finds no difference; on the deadline, fail with what it found."""
        last: list[VerifyOutcome] = []

        def consistent() -> VerifyOutcome | None:
            outcome = self.verify(user_id, strict_subjects=strict_subjects)
            last[:] = [outcome]
            if outcome.exit_code not in (0, 1):
                raise AssertionError(f"verify failed ({outcome.exit_code}): {outcome.stderr}")
            return outcome if outcome.ok else None

        try:
            outcome: VerifyOutcome = _wait(
                consistent, timeout=timeout, interval=0.2, what="both sides to agree"
            )
        except AssertionError as exc:
            found = json.dumps(last[0].report.get("differences"), indent=2) if last else "?"
            raise AssertionError(f"{exc}\nlast differences:\n{found}") from None
        return outcome

    def logs(self, name: str) -> str:
        if name == EMULATOR.name:
            return self.emulator.log_text()
        return self.component(name).log()


class _Never(BaseException):
    """Carries an AssertionError through wait_for, which treats exceptions as "not yet"."""

    def __init__(self, error: AssertionError) -> None:
        super().__init__(str(error))
        self.error = error


def _wait(condition: Callable[[], Any], *, timeout: float, interval: float, what: str) -> Any:
    """wait_for, except that an AssertionError from `condition` fails at once."""

    def checked() -> Any:
        try:
            return condition()
        except AssertionError as exc:
            raise _Never(exc) from exc

    try:
        return wait_for(checked, timeout=timeout, interval=interval, what=what)
    except _Never as never:
        raise never.error from None


def start_system(workdir: Path, options: SystemOptions | None = None) -> RunningSystem:
    workdir.mkdir(parents=True, exist_ok=True)
    return RunningSystem(workdir, options or SystemOptions()).start()


@contextlib.contextmanager
def running_system(workdir: Path, **options: Any) -> Iterator[RunningSystem]:
    system = start_system(workdir, SystemOptions(**options))
    try:
        yield system
    finally:
        system.stop()


def component_names() -> list[str]:
    return list(COMPONENTS_BY_NAME)


# -- pytest fixtures -------------------------------------------------------------------------


@pytest.fixture
def system_factory(tmp_path: Path) -> Iterator[Callable[..., RunningSystem]]:
    """Call with `SystemOptions` fields to start a system; every one is stopped afterwards."""
    started: list[RunningSystem] = []

    def start(**options: Any) -> RunningSystem:
        system = start_system(tmp_path / f"system-{len(started)}", SystemOptions(**options))
        started.append(system)
        return system

    yield start
    for system in started:
        system.stop()


@pytest.fixture
def system(system_factory: Callable[..., RunningSystem]) -> RunningSystem:
    """The whole system with every component."""
    return system_factory()
